//! Notifications for admins.

use actix_web::web;
use serde::Serialize;

use super::{Page, anyhow_internal, render};
use crate::admin::{HeldOperation, NotificationRow};
use crate::auth::Role;
use crate::http::AppState;
use crate::http::session::UiUser;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/notifications", web::get().to(list_notifications));
}

async fn list_notifications(state: web::Data<AppState>, user: UiUser) -> Page {
    let rows = state.store.recent_notifications(200).await.map_err(anyhow_internal)?;
    let held = state.store.held_operations().await.map_err(anyhow_internal)?;
    let ctx = NotificationsPage { rows, held, csrf: &user.0.csrf, is_admin: user.0.can(Role::Admin) };
    render(&state, &user.0, "admin/notifications.html", "Notifications", "notifications", ctx)
}

/// Recent notifications, and the operations waiting for an admin's approval.
#[derive(Serialize)]
struct NotificationsPage<'a> {
    rows: Vec<NotificationRow>,
    held: Vec<HeldOperation>,
    csrf: &'a str,
    is_admin: bool,
}
