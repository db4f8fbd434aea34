//! MLP family.
