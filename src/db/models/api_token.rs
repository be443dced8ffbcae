//! The `api_token` table.
