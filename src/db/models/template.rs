//! The `template` table.
