//! The customer's portal pages, `/my/<token>` (see `portal`):
//!
//! - `GET /my/{token}`: the VPS (state, addresses, spec, template, power, what is running
//!   now) and what the customer may do; `portal.js` keeps it live from `…/status`;
//! - `GET /my/{token}/status`: the same as JSON;
//! - `GET /my/{token}/usage?range=24h|7d`: CPU, memory and network graphs (see `usage`);
//! - `GET /my/{token}/console` (and its WebSocket, `…/console/ws`): the VM's screen, relayed
//!   (see `console`);
//! - `POST /my/{token}/power|reinstall|password|password/show|upgrade|restore`: actions (forms carry
//!   the link's form token), each an operation `requested_by = customer:<link id>`, answered
//!   303 back to the page with a message code (never data) in the query.
//!
//! A revoked or expired link gets a page that says so and nothing else (410); an unknown one
//! 404. Every page has its own strict CSP (scripts and styles from vmauto only, no framing,
//! no referrer), is never cached or indexed, and shows no admin field. Requests are limited
//! per link and per client address (`portal.requests_per_minute`).

mod actions;
pub mod console;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use crate::db::models::operation::{OpKind, OpState, PowerAction};
use crate::db::models::portal_link::{PortalOperation, PortalVps};
use crate::lifecycle::VpsState;
use crate::portal::{self, Opened, PortalLink};

/// Mounts the portal.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/my/{token}", web::get().to(get_page))
        .route("/my/{token}/status", web::get().to(get_status))
        .route("/my/{token}/usage", web::get().to(get_usage));
    actions::routes(cfg);
    console::routes(cfg);
}

/// The portal's headers: its own CSP (no inline script or style; `connect-src 'self'` for
/// the status poll and the console's WebSocket), never cached, indexed, framed or referred.
pub(crate) fn portal_response(status: StatusCode, html: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header(("X-Robots-Tag", "noindex, nofollow"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .body(html)
}

/// The portal's content security policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The context of `pages/portal_message.html`.
#[derive(Serialize)]
struct MessagePage<'a> {
    heading: &'a str,
    message: &'a str,
}

fn message(state: &AppState, status: StatusCode, heading: &str, text: &str) -> HttpResponse {
    match state.templates.render("pages/portal_message.html", &MessagePage { heading, message: text }) {
        Ok(html) => portal_response(status, html),
        Err(_) => {
            HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(format!("{heading}\n\n{text}\n"))
        }
    }
}

fn unavailable(state: &AppState, e: &anyhow::Error) -> HttpResponse {
    tracing::error!(error = %format!("{e:#}"), "a portal page could not be built");
    message(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again",
        "Your server's page cannot be shown right now. Try this link again in a few minutes.",
    )
}

/// The page for a link that opens nothing.
fn closed(state: &AppState, opened: &Opened) -> HttpResponse {
    match opened {
        Opened::Expired => message(
            state,
            StatusCode::GONE,
            "This link has expired",
            "Links to your server's page are valid for a limited time. Ask your provider for a new link.",
        ),
        Opened::Revoked => message(
            state,
            StatusCode::GONE,
            "This link was withdrawn",
            "Your provider has withdrawn this link. Ask them for a new one.",
        ),
        _ => message(
            state,
            StatusCode::NOT_FOUND,
            "Link not found",
            "This link is not valid. Check that you copied the whole address.",
        ),
    }
}

/// The link `token` opens and the budget check, or the response to give instead.
pub(crate) async fn admit(state: &AppState, req: &HttpRequest, token: &str) -> Result<PortalLink, HttpResponse> {
    let link = match portal::open(&state.store, &state.sealer, token).await {
        Ok(Opened::Active(link)) => link,
        Ok(other) => return Err(closed(state, &other)),
        Err(e) => return Err(unavailable(state, &e)),
    };
    if !state.portal_requests.allow(link.id.as_str(), state.client_ip(req)) {
        return Err(message(
            state,
            StatusCode::TOO_MANY_REQUESTS,
            "Please slow down",
            "This page was used very often in the last minute. Wait a minute, then open it again.",
        ));
    }
    Ok(link)
}

/// What the page says after an action (`?m=`): fixed texts, so a URL never carries data.
fn notice_text(code: &str) -> Option<(bool, &'static str)> {
    Some(match code {
        "power" => (true, "Done: your request was sent. The status below changes when the server has done it."),
        "reinstall" => (true, "Reinstall started. The server is rebuilt from the image; this takes a few minutes."),
        "password" => (true, "A new root password is being set. It appears here, once, when it is ready."),
        "busy" => (false, "Your server is busy with another task. Wait until it has finished, then try again."),
        "confirm" => (false, "To reinstall, type the server's name exactly as shown."),
        "inactive" => (false, "This is possible only while your server is active."),
        "image" => (false, "Choose one of the images offered for your server."),
        "form" => (false, "That request did not come from this page. Reload the page and try again."),
        "shown" => (false, "That password was already shown once. Ask for a new one if you did not keep it."),
        "failed" => (false, "Your request could not be queued. Try again in a minute; your provider has been told."),
        "restore_paid" => {
            (true, "Thank you. Once your payment is confirmed your server is started again; this takes a few minutes.")
        }
        "restore_cancelled" => (false, "The payment was cancelled. Nothing was charged."),
        "restore_unavailable" => (false, "Restoring is not offered for your server now. Contact your provider."),
        "restore_failed" => {
            (false, "The payment could not be started. Nothing was charged. Try again in a few minutes.")
        }
        _ => return None,
    })
}

/// A spec as the customer reads it.
#[derive(Debug, Serialize)]
struct SpecView {
    cores: u32,
    memory: String,
    disk_gb: u64,
}

fn memory_text(mb: u64) -> String {
    if mb.is_multiple_of(1024) { format!("{} GB", mb / 1024) } else { format!("{:.1} GB", mb as f64 / 1024.0) }
}

/// An operation as the customer reads it.
#[derive(Debug, Serialize)]
struct OpView {
    what: String,
    state: &'static str,
    at: String,
    mine: bool,
}

fn op_what(op: &PortalOperation) -> String {
    match op.kind {
        OpKind::Power => op
            .params
            .get("action")
            .and_then(|a| a.as_str())
            .and_then(PowerAction::parse)
            .map_or("Power", PowerAction::label)
            .to_string(),
        OpKind::Create => "Setting up".into(),
        OpKind::Suspend => "Suspending".into(),
        OpKind::Resume => "Resuming".into(),
        OpKind::Delete => "Deleting".into(),
        OpKind::Reset => "Power cycle and new password".into(),
        OpKind::Rebuild => "Reinstall".into(),
        OpKind::Resize => "Resize".into(),
        OpKind::SetPassword => "New root password".into(),
        OpKind::Restore => "Restore".into(),
    }
}

fn op_state(op: &PortalOperation) -> &'static str {
    if op.scheduled {
        return "scheduled";
    }
    match op.state {
        OpState::Queued | OpState::Held => "waiting",
        OpState::Running | OpState::WaitingTask => "running",
        OpState::Succeeded => "done",
        OpState::Dead => "failed",
        OpState::Cancelled => "cancelled",
    }
}

/// Waiting or running now (one scheduled for later is neither).
fn is_open(op: &PortalOperation) -> bool {
    !op.scheduled && matches!(op.state, OpState::Queued | OpState::Held | OpState::Running | OpState::WaitingTask)
}

fn op_view(op: &PortalOperation) -> OpView {
    OpView {
        what: op_what(op),
        state: op_state(op),
        at: op.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        mine: op.mine,
    }
}

/// What the status poll answers (and the page starts from).
#[derive(Debug, Serialize)]
pub struct Status {
    pub state: VpsState,
    /// `on`, `off` or `unknown`.
    pub power: &'static str,
    pub ips: Vec<String>,
    /// What runs now, in words (`None`: nothing).
    pub current: Option<String>,
    /// A new root password is ready to be shown.
    pub password_ready: bool,
}

/// Everything a page or a status answer reads, once.
pub(crate) struct Seen {
    pub vps: PortalVps,
    pub ops: Vec<PortalOperation>,
    pub password_ready: bool,
}

pub(crate) async fn look(state: &AppState, link: &PortalLink) -> anyhow::Result<Seen> {
    let who = portal::actor(&link.id);
    let vps = state.store.portal_vps(&link.vps).await?.ok_or_else(|| anyhow::anyhow!("VPS {} is gone", link.vps))?;
    let ops = state.store.portal_operations(&link.vps, &who, 8).await?;
    let password_ready = state.store.password_to_show(&link.vps, &who).await?.is_some();
    Ok(Seen { vps, ops, password_ready })
}

impl Seen {
    fn status(&self) -> Status {
        Status {
            state: self.vps.state,
            power: self.vps.power.map_or("unknown", |p| p.as_str()),
            ips: self.vps.ips.clone(),
            current: self.ops.iter().find(|o| is_open(o)).map(op_what),
            password_ready: self.password_ready,
        }
    }

    /// Whether an operation is waiting or running.
    pub(crate) fn busy(&self) -> bool {
        self.ops.iter().any(is_open)
    }
}

/// The context of `pages/portal.html`.
#[derive(Serialize)]
struct PortalPage {
    base: String,
    form_token: String,
    name: String,
    state: VpsState,
    power: &'static str,
    ips: Vec<String>,
    spec: SpecView,
    template: String,
    image: Option<String>,
    images: Vec<ImageChoice>,
    delete_after: Option<String>,
    active: bool,
    suspended: bool,
    /// Pay to restore, offered while the VPS is suspended because its subscription lapsed.
    restore: Option<RestoreView>,
    /// Paid upgrades are on (Stripe).
    upgrades: bool,
    current: Option<String>,
    recent: Vec<OpView>,
    password_ready: bool,
    power_actions: Vec<PowerChoice>,
    notice: Option<String>,
    error: Option<String>,
}

/// An image a reinstall may choose: its SCP id, and the template's alias for it when it has
/// one (what the customer ordered by).
#[derive(Serialize)]
struct ImageChoice {
    id: String,
    label: String,
    current: bool,
}

#[derive(Serialize)]
struct RestoreView {
    price: String,
    /// A payment for this suspension is recorded: the restore is under way.
    paid: bool,
}

#[derive(Serialize)]
struct PowerChoice {
    value: &'static str,
    label: &'static str,
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default)]
    m: Option<String>,
}

async fn get_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
    query: web::Query<PageQuery>,
) -> HttpResponse {
    let link = match admit(&state, &req, &token).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    let seen = match look(&state, &link).await {
        Ok(s) => s,
        Err(e) => return unavailable(&state, &e),
    };
    // When the customer last opened the page (not on every status poll).
    let _ = state.store.touch_portal_link(&link.id).await;
    let status = seen.status();
    let (notice, error) = match query.m.as_deref().and_then(notice_text) {
        Some((true, t)) => (Some(t.to_string()), None),
        Some((false, t)) => (None, Some(t.to_string())),
        None => (None, None),
    };
    let v = &seen.vps;
    let restore = if v.state == VpsState::Suspended {
        match crate::upgrade::restore::offer_for(&state.store, &state.config, &link.vps).await {
            Ok(offer) => offer.map(|o| RestoreView { price: o.price_text(), paid: o.paid }),
            Err(e) => return unavailable(&state, &e),
        }
    } else {
        None
    };
    let page = PortalPage {
        base: format!("/my/{}", token.as_str()),
        form_token: portal::form_token(&state.sealer, &link.id),
        name: if v.name.is_empty() { "Your server".into() } else { v.name.clone() },
        state: v.state,
        power: status.power,
        ips: v.ips.clone(),
        spec: SpecView { cores: v.spec.cores, memory: memory_text(v.spec.memory_mb), disk_gb: v.spec.disk_gb },
        template: v.template.to_string(),
        image: v.image_id.clone(),
        images: v
            .images
            .iter()
            .map(|id| ImageChoice {
                current: v.image_id.as_deref() == Some(id.as_str()),
                label: v
                    .template_row
                    .as_ref()
                    .and_then(|t| t.images.iter().find(|(_, r)| r.in_any(id)).map(|(alias, _)| alias.clone()))
                    .unwrap_or_else(|| id.clone()),
                id: id.clone(),
            })
            .collect(),
        delete_after: v.delete_after.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
        active: v.state == VpsState::Active,
        suspended: v.state == VpsState::Suspended,
        restore,
        upgrades: state.config.stripe.enabled && v.state == VpsState::Active,
        current: status.current,
        recent: seen.ops.iter().map(op_view).collect(),
        password_ready: seen.password_ready,
        power_actions: PowerAction::ALL.iter().map(|a| PowerChoice { value: a.as_str(), label: a.label() }).collect(),
        notice,
        error,
    };
    match state.templates.render("pages/portal.html", &page) {
        Ok(html) => portal_response(StatusCode::OK, html),
        Err(e) => unavailable(&state, &e),
    }
}

async fn get_status(state: web::Data<AppState>, req: HttpRequest, token: web::Path<String>) -> HttpResponse {
    let link = match admit(&state, &req, &token).await {
        Ok(l) => l,
        Err(resp) => {
            let status = resp.status();
            return HttpResponse::build(status).json(json!({ "error": "This link does not open a server now." }));
        }
    };
    match look(&state, &link).await {
        Ok(seen) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .json(seen.status()),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "portal status could not be read");
            HttpResponse::ServiceUnavailable().json(json!({ "error": "Try again shortly." }))
        }
    }
}

/// The context of `pages/portal_usage.html`.
#[derive(Serialize)]
struct UsagePage {
    base: String,
    name: String,
    week: bool,
    charts: Option<crate::http::usage::UsageCharts>,
}

#[derive(Debug, Deserialize)]
struct UsageQuery {
    #[serde(default)]
    range: Option<String>,
}

async fn get_usage(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
    query: web::Query<UsageQuery>,
) -> HttpResponse {
    use crate::http::usage::{Span, charts_for};
    let link = match admit(&state, &req, &token).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    let seen = match look(&state, &link).await {
        Ok(s) => s,
        Err(e) => return unavailable(&state, &e),
    };
    let span = Span::parse(query.range.as_deref());
    let server = match state.store.vps(&link.vps).await {
        Ok(v) => v.and_then(|v| v.server_id),
        Err(e) => return unavailable(&state, &e),
    };
    let charts = match server {
        Some(id) if seen.vps.state.is_live() => Some(charts_for(&state, &link.vps, &id, span, true).await),
        _ => None,
    };
    let page = UsagePage {
        base: format!("/my/{}", token.as_str()),
        name: if seen.vps.name.is_empty() { "Your server".into() } else { seen.vps.name.clone() },
        week: span == Span::Week,
        charts,
    };
    match state.templates.render("pages/portal_usage.html", &page) {
        Ok(html) => portal_response(StatusCode::OK, html),
        Err(e) => unavailable(&state, &e),
    }
}
