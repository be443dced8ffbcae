//! The `payment` table.
