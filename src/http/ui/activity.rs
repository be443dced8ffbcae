//! The activity log.

use actix_web::web;
use serde::Serialize;

use super::{Page, anyhow_internal, render, serde_urlencoded};
use crate::admin::{self, ActivityQuery, ActivityRow};
use crate::http::AppState;
use crate::http::session::UiUser;
use crate::lifecycle::Level;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/activity", web::get().to(list_activity));
}

async fn list_activity(state: web::Data<AppState>, user: UiUser, q: web::Query<ActivityQuery>) -> Page {
    let mut q = q.into_inner();
    if Level::parse(&q.level).is_none() {
        q.level.clear(); // an unknown level in a hand-made address lists every level
    }
    let page = state.store.activity_page(&q).await.map_err(anyhow_internal)?;
    let mut base = q.clone();
    base.page = 0;
    let ctx = ActivityPage {
        qs: serde_urlencoded(&base),
        prev: (page.page > 1).then(|| page.page - 1),
        next: (page.page < page.pages).then(|| page.page + 1),
        page,
        q,
    };
    render(&state, &user.0, "admin/activity.html", "Activity", "activity", ctx)
}

/// One page of the activity log with its filter.
#[derive(Serialize)]
struct ActivityPage {
    page: admin::Page<ActivityRow>,
    q: ActivityQuery,
    /// The filter as a query string, for the pager's links.
    qs: String,
    prev: Option<u64>,
    next: Option<u64>,
}
