//! DLRM family.
