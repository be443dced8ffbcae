//! The `upgrade_link` table.
