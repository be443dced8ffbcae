//! The `vps` table.
