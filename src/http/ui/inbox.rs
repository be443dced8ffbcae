//! The webhook inbox: every delivery, one delivery's request and outcome, replay.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Flash, Page, anyhow_internal, flash, redirect_msg, render};
use crate::admin::{self, InboxEntry, InboxKey, InboxSummary};
use crate::auth::Role;
use crate::http::AppState;
use crate::http::session::{CsrfForm, UiError, UiUser, check_csrf};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/inbox", web::get().to(list_inbox))
        .route("/inbox/{id}", web::get().to(show_inbox_event))
        .route("/inbox/{id}/replay", web::post().to(replay_inbox_event));
}

#[derive(Deserialize)]
struct InboxQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    page: u64,
}

async fn list_inbox(state: web::Data<AppState>, user: UiUser, q: web::Query<InboxQuery>) -> Page {
    let page = state.store.inbox_page(&q.status, q.page).await.map_err(anyhow_internal)?;
    let ctx = InboxPage {
        status: &q.status,
        statuses: STATUSES,
        prev: (page.page > 1).then(|| page.page - 1),
        next: (page.page < page.pages).then(|| page.page + 1),
        page,
    };
    render(&state, &user.0, "admin/inbox.html", "Webhook inbox", "inbox", ctx)
}

/// The outcomes the inbox list filters by.
const STATUSES: [&str; 6] = ["processed", "parked", "failed", "rejected", "stale", "pending"];

/// One page of the inbox with its filter.
#[derive(Serialize)]
struct InboxPage<'a> {
    page: admin::Page<InboxSummary>,
    /// The outcome filtered by (empty for all).
    status: &'a str,
    statuses: [&'static str; 6],
    prev: Option<u64>,
    next: Option<u64>,
}

async fn show_inbox_event(state: web::Data<AppState>, user: UiUser, id: web::Path<String>, req: HttpRequest) -> Page {
    let id = InboxKey::from(id.into_inner());
    let Some(mut ev) = state.store.inbox_event(&id).await.map_err(anyhow_internal)? else {
        return Err(UiError::status(StatusCode::NOT_FOUND, "There is no inbox event with this id."));
    };
    if !user.0.can(Role::Admin) {
        admin::hide_raw_request(&mut ev);
    }
    let ctx = InboxEventPage {
        ev: InboxEventView::of(ev),
        csrf: &user.0.csrf,
        can_operate: user.0.can(Role::Operator),
        flash: flash(&req),
    };
    render(&state, &user.0, "admin/inbox_event.html", "Inbox event", "inbox", ctx)
}

/// One inbox row, its replay button for operators.
#[derive(Serialize)]
struct InboxEventPage<'a> {
    ev: InboxEventView,
    csrf: &'a str,
    can_operate: bool,
    flash: Flash,
}

/// An inbox row with its request, events and outcomes pretty-printed for the page.
#[derive(Serialize)]
struct InboxEventView {
    #[serde(flatten)]
    entry: InboxEntry,
    /// The body as indented JSON when it is JSON, as received otherwise.
    body_pretty: String,
    /// Bytes of the body kept (0 when it is hidden or gone).
    body_kept: usize,
    headers_pretty: String,
    outcomes_pretty: String,
    events_pretty: String,
}

impl InboxEventView {
    fn of(entry: InboxEntry) -> Self {
        let body_pretty = match &entry.body {
            Some(s) => serde_json::from_str::<Value>(s).map_or_else(|_| s.clone(), |v| pretty(&v)),
            None => pretty(&Value::Null),
        };
        Self {
            body_pretty,
            body_kept: entry.body.as_ref().map_or(0, String::len),
            headers_pretty: pretty(&entry.headers),
            outcomes_pretty: pretty(&entry.outcomes),
            events_pretty: pretty(&entry.events),
            entry,
        }
    }
}

/// Indented JSON, the keys of every object sorted.
fn pretty<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).and_then(|v| serde_json::to_string_pretty(&v)).unwrap_or_default()
}

async fn replay_inbox_event(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    let id = InboxKey::from(id.into_inner());
    let back = format!("/inbox/{id}");
    Ok(match crate::http::replay_inbox(&state, &id, &p.actor()).await {
        Ok(outcomes) => {
            let summary: Vec<String> = outcomes.iter().map(|o| format!("{}: {}", o.status, o.detail)).collect();
            redirect_msg(&back, true, &format!("Replayed: {}", summary.join("; ")))
        }
        Err(e) => redirect_msg(&back, false, &format!("Replay failed: {e:#}")),
    })
}
