//! Live updates for the admin UI: `GET /events` is a server-sent-event stream of VPS state
//! changes (`event: vps`), operation progress (`event: operation`) and new notifications
//! (`event: notification`), read from the store
//! once a second, so every change shows whoever made it (a webhook, an operation, another
//! admin). `ui/app.js` applies them to the page; without JavaScript pages simply do not move.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use bytes::Bytes;
use chrono::Utc;

use super::AppState;
use super::session::UiUser;
use crate::admin;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/events", web::get().to(events));
}

const TICK: Duration = Duration::from_secs(1);

async fn events(state: web::Data<AppState>, _user: UiUser) -> HttpResponse {
    let since = Utc::now();
    let stream = futures::stream::unfold((state, since, true), |(state, since, first)| async move {
        if !first {
            tokio::time::sleep(TICK).await;
        }
        let mut out = String::new();
        if first {
            out.push_str("retry: 3000\n: connected\n\n");
        }
        let mut newest = since;
        let store = &state.store;
        let batches = [
            ("vps", "updated_at", admin::vps_changes(store, since).await),
            ("operation", "updated_at", admin::operation_changes(store, since).await),
            ("notification", "at", admin::notifications_since(store, since).await),
        ];
        for (event, time_field, rows) in batches {
            for r in rows.unwrap_or_default() {
                if let Some(t) = r[time_field].as_str().and_then(|s| s.parse::<chrono::DateTime<Utc>>().ok()) {
                    newest = newest.max(t);
                }
                out.push_str(&format!("event: {event}\ndata: {r}\n\n"));
            }
        }
        if out.is_empty() {
            // A comment keeps proxies from closing an idle stream and notices a gone client.
            out.push_str(": tick\n\n");
        }
        Some((Ok::<_, actix_web::Error>(Bytes::from(out)), (state, newest, false)))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}
