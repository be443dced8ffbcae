//! Notifications for admins.

use actix_web::web;
use serde_json::json;

use super::{Page, anyhow_internal, render};
use crate::auth::Role;
use crate::http::AppState;
use crate::http::session::UiUser;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/notifications", web::get().to(list_notifications));
}

async fn list_notifications(state: web::Data<AppState>, user: UiUser) -> Page {
    let rows = state.store.recent_notifications(200).await.map_err(anyhow_internal)?;
    let held = state.store.held_operations().await.map_err(anyhow_internal)?;
    let ctx = json!({ "rows": rows, "held": held, "csrf": user.0.csrf, "is_admin": user.0.can(Role::Admin) });
    render(&state, &user.0, "admin/notifications.html", "Notifications", "notifications", ctx)
}
