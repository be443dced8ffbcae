//! The `webhook_event` table.
