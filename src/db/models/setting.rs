//! The `setting` table.
