//! The `admin_user` table.
