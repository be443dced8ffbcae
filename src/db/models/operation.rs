//! The `operation` table.
