//! Live updates for the admin UI: `GET /events` is a server-sent-event stream of VPS state
//! changes (`event: vps`), operation progress (`event: operation`) and new notifications
//! (`event: notification`), read from the store
//! once a second, so every change shows whoever made it (a webhook, an operation, another
//! admin). `ui/app.js` applies them to the page; without JavaScript pages simply do not move.
//!
//! A stream ends when its session does (logout, logout everywhere, the user disabled): the
//! session is looked at every few seconds, without keeping it alive. A user has at most
//! [`MAX_STREAMS_PER_USER`] streams open; one more is answered 429.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AppState;
use super::session::UiUser;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/events", web::get().to(events));
}

const TICK: Duration = Duration::from_secs(1);
/// Ticks between two looks at the session.
const SESSION_CHECK_TICKS: u32 = 5;
/// Open streams per user: several tabs, and pages left faster than a closed stream is noticed
/// (at its next write, within a second).
pub const MAX_STREAMS_PER_USER: usize = 16;

/// Open streams per user.
pub type StreamCounts = Arc<parking_lot::Mutex<HashMap<String, usize>>>;

/// One open stream, counted until it is dropped.
struct Open {
    counts: StreamCounts,
    user: String,
}

impl Open {
    fn new(counts: &StreamCounts, user: &str) -> Option<Self> {
        let mut c = counts.lock();
        let n = c.entry(user.to_string()).or_insert(0);
        if *n >= MAX_STREAMS_PER_USER {
            return None;
        }
        *n += 1;
        Some(Self { counts: counts.clone(), user: user.to_string() })
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        if let Some(n) = c.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.user);
            }
        }
    }
}

async fn events(state: web::Data<AppState>, user: UiUser) -> HttpResponse {
    let Some(open) = Open::new(&state.event_streams, &user.0.username) else {
        return HttpResponse::TooManyRequests().content_type("text/plain; charset=utf-8").body(format!(
            "{MAX_STREAMS_PER_USER} live-update streams are open for this user already: close other vmauto tabs."
        ));
    };
    let since = Utc::now();
    let session = user.0.session_hash.clone();
    let start = (state, since, 0u32, session, open);
    let stream = futures::stream::unfold(start, |(state, since, n, session, open)| async move {
        let first = n == 0;
        if !first {
            tokio::time::sleep(TICK).await;
        }
        if n > 0 && n.is_multiple_of(SESSION_CHECK_TICKS) && !state.auth.session_stands(&session).await.unwrap_or(true)
        {
            // The session ended: so does the stream (and its count, with `open`).
            return None;
        }
        let mut out = String::new();
        if first {
            out.push_str("retry: 3000\n: connected\n\n");
        }
        let mut newest = since;
        let store = &state.store;
        let vps = store.vps_changes(since).await;
        let operations = store.operation_changes(since).await;
        let notifications = store.notifications_since(since).await;
        emit(&mut out, &mut newest, "vps", vps, |r| &r.updated_at);
        emit(&mut out, &mut newest, "operation", operations, |r| &r.updated_at);
        emit(&mut out, &mut newest, "notification", notifications, |r| &r.at);
        if out.is_empty() {
            // A comment keeps proxies from closing an idle stream and notices a gone client.
            out.push_str(": tick\n\n");
        }
        Some((Ok::<_, actix_web::Error>(Bytes::from(out)), (state, newest, n + 1, session, open)))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}

/// Appends one `event` per row to `out` (none when the read failed); `newest` moves up to the
/// latest change time `at` gives.
fn emit<T: Serialize>(
    out: &mut String,
    newest: &mut DateTime<Utc>,
    event: &str,
    rows: anyhow::Result<Vec<T>>,
    at: impl Fn(&T) -> &str,
) {
    for r in rows.unwrap_or_default() {
        if let Ok(t) = at(&r).parse::<DateTime<Utc>>() {
            *newest = (*newest).max(t);
        }
        if let Ok(data) = serde_json::to_string(&r) {
            out.push_str(&format!("event: {event}\ndata: {data}\n\n"));
        }
    }
}
