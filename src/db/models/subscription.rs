//! The `subscription` table.
