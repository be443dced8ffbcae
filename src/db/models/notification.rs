//! The `notification` table.
