//! The `activity` table.
