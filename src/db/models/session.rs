//! The `session` table.
