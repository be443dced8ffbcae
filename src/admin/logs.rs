//! The activity log, the webhook inbox, notifications, and the changes live pages follow.

pub use crate::db::models::activity::{ActivityQuery, ActivityRow};
pub use crate::db::models::notification::{NotificationQuery, NotificationRow};
pub use crate::db::models::operation::{FailedOperation, HeldOperation};
pub use crate::db::models::webhook_event::{InboxEntry, InboxKey, InboxSummary};

/// Removes what only admins may read from an inbox row: the request's headers and body (a
/// sender may put secrets there that vmauto does not know to redact).
pub fn hide_raw_request(ev: &mut InboxEntry) {
    ev.headers = None;
    ev.body = None;
    ev.raw_hidden = true;
}
