//! The activity log, the webhook inbox, notifications, and the changes live pages follow.

use serde_json::{Value, json};

pub use crate::db::models::activity::ActivityQuery;
pub use crate::db::models::notification::NotificationQuery;

/// Removes what only admins may read from an inbox row: the request's headers and body (a
/// sender may put secrets there that vmauto does not know to redact).
pub fn hide_raw_request(ev: &mut Value) {
    if let Some(o) = ev.as_object_mut() {
        o.remove("headers");
        o.remove("body");
        o.insert("raw_hidden".into(), json!(true));
    }
}
