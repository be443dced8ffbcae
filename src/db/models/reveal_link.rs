//! The `reveal_link` table.
