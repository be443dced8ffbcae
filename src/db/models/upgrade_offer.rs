//! The `upgrade_offer` table.
