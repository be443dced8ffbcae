//! What the admin VPS page shares with the customer's portal: portal links (issue — the URL
//! is shown once, only its digest is stored —, revoke, renew) and the usage graphs.

use serde::Serialize;

use super::{Page, anyhow_internal, redirect_msg, shown_once};
use crate::auth::Role;
use crate::http::AppState;
use crate::http::session::{CsrfForm, UiUser, check_csrf};
use crate::lifecycle::VpsId;
use crate::portal::{self, PortalLinkId};
use actix_web::web;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/vps/{id}/portal-link", web::post().to(issue))
        .route("/portal-links/{id}/revoke", web::post().to(revoke))
        .route("/portal-links/{id}/renew", web::post().to(renew))
        .route("/vps/{id}/usage", web::get().to(usage));
}

/// The context of `admin/vps_usage.html`.
#[derive(Serialize)]
struct UsagePage {
    id: VpsId,
    name: String,
    week: bool,
    charts: Option<crate::http::usage::UsageCharts>,
}

#[derive(serde::Deserialize)]
struct UsageQuery {
    #[serde(default)]
    range: Option<String>,
}

async fn usage(state: web::Data<AppState>, user: UiUser, id: web::Path<String>, q: web::Query<UsageQuery>) -> Page {
    use crate::http::usage::{Span, charts_for};
    let id = VpsId::from(id.into_inner());
    let Some(vps) = state.store.vps_detail(&id).await.map_err(anyhow_internal)? else {
        return Err(crate::http::session::UiError::status(
            actix_web::http::StatusCode::NOT_FOUND,
            "There is no VPS with this id.",
        ));
    };
    let span = Span::parse(q.range.as_deref());
    let charts = match &vps.row.server_id {
        Some(server) if vps.row.state.is_live() => Some(charts_for(&state, &vps.row.id, server, span, false).await),
        _ => None,
    };
    let name = if vps.row.name.is_empty() { id.to_string() } else { vps.row.name.clone() };
    let title = format!("Usage · {name}");
    let ctx = UsagePage { id, name, week: span == Span::Week, charts };
    super::render(&state, &user.0, "admin/vps_usage.html", &title, "vps", ctx)
}

/// A portal link as the VPS page lists it.
#[derive(Serialize)]
pub(super) struct PortalLinkRow {
    id: PortalLinkId,
    state: &'static str,
    issued_by: String,
    expires_at: String,
    seen_at: Option<String>,
}

/// The links of a VPS for its page, newest first.
pub(super) async fn rows(state: &AppState, vps: &VpsId) -> Vec<PortalLinkRow> {
    let now = chrono::Utc::now();
    state
        .store
        .portal_links_of_vps(vps)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|l| PortalLinkRow {
            state: l.state(now),
            expires_at: l.expires_at.to_rfc3339(),
            seen_at: l.seen_at.map(|t| t.to_rfc3339()),
            id: l.id,
            issued_by: l.issued_by,
        })
        .collect()
}

async fn issue(state: web::Data<AppState>, user: UiUser, id: web::Path<String>, form: web::Form<CsrfForm>) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    let id = VpsId::from(id.into_inner());
    let back = format!("/vps/{id}");
    match portal::issue(&state.store, &state.config, &state.sealer, &id, &p.actor()).await {
        Ok(link) => shown_once(
            &state,
            p,
            "Portal link",
            "The customer's own page (give it to the customer; it is shown here once):",
            &link.url,
            &back,
        ),
        Err(e) => Ok(redirect_msg(&back, false, &format!("{e:#}"))),
    }
}

async fn back_to_vps(state: &AppState, id: &PortalLinkId) -> anyhow::Result<String> {
    Ok(state.store.portal_link(id).await?.map_or_else(|| "/vps".to_string(), |l| format!("/vps/{}", l.vps)))
}

async fn revoke(state: web::Data<AppState>, user: UiUser, id: web::Path<String>, form: web::Form<CsrfForm>) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    let id = PortalLinkId::from(id.into_inner());
    let back = back_to_vps(&state, &id).await.map_err(anyhow_internal)?;
    match portal::revoke(&state.store, &id, &p.actor()).await {
        Ok(true) => Ok(redirect_msg(&back, true, "Portal link revoked; its console session ends too.")),
        Ok(false) => Ok(redirect_msg(&back, false, "There is no such portal link.")),
        Err(e) => Ok(redirect_msg(&back, false, &format!("{e:#}"))),
    }
}

async fn renew(state: web::Data<AppState>, user: UiUser, id: web::Path<String>, form: web::Form<CsrfForm>) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    let id = PortalLinkId::from(id.into_inner());
    let back = back_to_vps(&state, &id).await.map_err(anyhow_internal)?;
    match portal::renew(&state.store, &state.config, &id, &p.actor()).await {
        Ok(Some(until)) => {
            Ok(redirect_msg(&back, true, &format!("Portal link renewed until {}.", until.format("%Y-%m-%d"))))
        }
        Ok(None) => Ok(redirect_msg(&back, false, "There is no such portal link.")),
        Err(e) => Ok(redirect_msg(&back, false, &format!("{e:#}"))),
    }
}
