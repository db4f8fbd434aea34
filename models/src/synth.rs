//! Synthetic model repositories with seeded random weights (`cohost gen`).
