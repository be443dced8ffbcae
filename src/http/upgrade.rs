//! The customer's upgrade pages.
//!
//! - `GET /upgrade/{token}`: the VPS (name, current spec) and the offers it can buy now, each
//!   with a pay button (a form POST carrying the link's form token);
//! - `POST /upgrade/{token}/pay`: creates a Stripe Checkout Session, answers 303 to Stripe;
//! - `GET /upgrade/{token}/done?session_id=…`: progress of the paid upgrade; refreshes itself
//!   (meta refresh, no script) until the resize is done;
//! - `GET /upgrade/{token}/status`: the same progress as JSON.
//!
//! Expired and revoked links answer 410, unknown ones 404, each with a page that says why.
//! No admin data is shown; every value is HTML-escaped; the token is never logged.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use crate::db::models::payment::{PaymentId, PaymentStatus};
use crate::lifecycle::Level;
use crate::lifecycle::{Spec, Vps};
use crate::upgrade::checkout::{self, CheckoutError, CheckoutRequest};
use crate::upgrade::links::{self, Link, LinkStatus};
use crate::upgrade::offers::{self, Available, OfferId};
use crate::upgrade::{format_price, fulfil};

/// Seconds between refreshes of the progress page.
const REFRESH_SECS: u32 = 3;

/// Mounts the customer pages.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/upgrade/{token}", web::get().to(get_upgrade))
        .route("/upgrade/{token}/pay", web::post().to(post_upgrade_pay))
        .route("/upgrade/{token}/done", web::get().to(get_upgrade_done))
        .route("/upgrade/{token}/status", web::get().to(get_upgrade_status));
}

/// A spec as the customer reads it.
#[derive(Debug, Serialize)]
struct SpecView {
    cores: u32,
    memory: String,
    disk_gb: u64,
}

impl From<Spec> for SpecView {
    fn from(s: Spec) -> Self {
        let memory = if s.memory_mb.is_multiple_of(1024) {
            format!("{} GB", s.memory_mb / 1024)
        } else {
            format!("{:.1} GB", s.memory_mb as f64 / 1024.0)
        };
        Self { cores: s.cores, memory, disk_gb: s.disk_gb }
    }
}

#[derive(Serialize)]
struct OfferView {
    id: OfferId,
    name: String,
    price: String,
    target: SpecView,
}

/// The context of `pages/upgrade.html`.
#[derive(Serialize)]
struct UpgradePage {
    vps_name: String,
    current: SpecView,
    offers: Vec<OfferView>,
    form_token: String,
    action: String,
    notice: Option<String>,
    unavailable: Option<String>,
}

/// The context of `pages/upgrade_message.html`.
#[derive(Serialize)]
struct MessagePage<'a> {
    heading: &'a str,
    message: &'a str,
    link: Option<String>,
    link_text: &'a str,
}

/// The context of `pages/upgrade_done.html`.
#[derive(Serialize)]
struct DonePage {
    vps_name: String,
    heading: String,
    message: String,
    refresh: Option<u32>,
    spec: SpecView,
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default)]
    cancelled: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DoneQuery {
    #[serde(default)]
    session_id: Option<String>,
}

/// Progress of a link's upgrade.
#[derive(Debug, Serialize)]
pub struct Progress {
    /// `waiting_payment`, `applying`, `done`, `failed` or `refund`.
    pub state: &'static str,
    pub message: String,
    pub spec: Option<Spec>,
}

fn message(state: &AppState, status: StatusCode, heading: &str, text: &str, link: Option<String>) -> HttpResponse {
    let ctx = MessagePage { heading, message: text, link, link_text: "See the progress of your upgrade" };
    match state.templates.render("pages/upgrade_message.html", &ctx) {
        Ok(html) => super::customer_page(status, html),
        Err(_) => {
            HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(format!("{heading}\n\n{text}\n"))
        }
    }
}

fn unavailable(state: &AppState, e: &anyhow::Error) -> HttpResponse {
    tracing::error!(error = %format!("{e:#}"), "an upgrade page could not be built");
    message(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again",
        "Upgrades cannot be shown right now. Try this link again in a few minutes.",
        None,
    )
}

fn progress_url(state: &AppState, token: &str) -> String {
    format!("{}/upgrade/{token}/done", state.config.server.public_url.trim_end_matches('/'))
}

/// The page for a link that cannot sell anything (expired, revoked, used, unknown).
fn closed(state: &AppState, status: &LinkStatus, token: &str) -> HttpResponse {
    match status {
        LinkStatus::Used(_) => message(
            state,
            StatusCode::GONE,
            "This link was already used",
            "An upgrade was paid with this link, so it cannot be used again. Ask your provider for a new link to buy another upgrade.",
            Some(progress_url(state, token)),
        ),
        LinkStatus::Expired(_) => message(
            state,
            StatusCode::GONE,
            "This link has expired",
            "Upgrade links are valid for a limited time. Ask your provider for a new link.",
            None,
        ),
        LinkStatus::Revoked(_) => message(
            state,
            StatusCode::GONE,
            "This link was withdrawn",
            "Your provider has withdrawn this upgrade link. Ask them for a new one.",
            None,
        ),
        _ => message(
            state,
            StatusCode::NOT_FOUND,
            "Link not found",
            "This upgrade link is not valid. Check that you copied the whole address.",
            None,
        ),
    }
}

async fn vps_and_name(state: &AppState, link: &Link) -> anyhow::Result<(Vps, String)> {
    let vps = state.store.vps(&link.vps).await?.ok_or_else(|| anyhow::anyhow!("VPS {} is gone", link.vps))?;
    let name = state.store.upgrade_link_vps_name(&link.vps).await?.unwrap_or_else(|| "your server".into());
    Ok((vps, name))
}

/// Requests a link (and a client address) may make in a minute: enough for a person, too few
/// to load SCP or the store.
pub const LINK_REQUESTS_PER_MINUTE: u32 = 30;

/// A 429 page when this link or this client has made too many requests this minute.
fn over_budget(state: &AppState, req: &HttpRequest, link: &Link) -> Option<HttpResponse> {
    if state.link_requests.allow(link.id.as_str(), state.client_ip(req)) {
        return None;
    }
    Some(message(
        state,
        StatusCode::TOO_MANY_REQUESTS,
        "Please slow down",
        "This link was opened very often in the last minute. Wait a minute, then open it again.",
        None,
    ))
}

async fn get_upgrade(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
    query: web::Query<PageQuery>,
) -> HttpResponse {
    let link = match links::resolve(&state.store, &state.sealer, &token).await {
        Ok((LinkStatus::Active(link), _)) => link,
        Ok((other, _)) => return closed(&state, &other, &token),
        Err(e) => return unavailable(&state, &e),
    };
    if let Some(busy) = over_budget(&state, &req, &link) {
        return busy;
    }
    let (vps, vps_name) = match vps_and_name(&state, &link).await {
        Ok(v) => v,
        Err(e) => return unavailable(&state, &e),
    };
    let (available, reason, status) = match offers::offers_for_vps(
        &state.store,
        crate::actors::gateway::customer_capacity_of(state.gateway_of(&vps.id).await),
        &vps,
    )
    .await
    {
        Ok(a) if a.is_empty() => {
            (a, Some("There are no upgrades available for this server right now.".to_string()), StatusCode::OK)
        }
        Ok(a) => (a, None, StatusCode::OK),
        Err(e) => {
            tracing::warn!(vps = %vps.id, error = %format!("{e:#}"), "upgrade offers could not be checked");
            let text = "Upgrades cannot be checked right now. Try this link again in a minute.".to_string();
            (Vec::new(), Some(text), StatusCode::SERVICE_UNAVAILABLE)
        }
    };
    let page = UpgradePage {
        vps_name,
        current: vps.spec.into(),
        offers: available
            .iter()
            .map(|a: &Available| OfferView {
                id: a.offer.id.clone(),
                name: a.offer.name.clone(),
                price: format_price(a.offer.price, &a.offer.currency),
                target: a.target.spec.into(),
            })
            .collect(),
        form_token: links::form_token(&state.sealer, &link.id),
        action: format!("/upgrade/{}/pay", token.as_str()),
        notice: query.cancelled.as_ref().map(|_| "The payment was cancelled; nothing was charged.".to_string()),
        unavailable: reason,
    };
    match state.templates.render("pages/upgrade.html", &page) {
        Ok(html) => super::customer_page(status, html),
        Err(e) => unavailable(&state, &e),
    }
}

async fn post_upgrade_pay(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let link = match links::resolve(&state.store, &state.sealer, &token).await {
        Ok((LinkStatus::Active(link), _)) => link,
        Ok((other, _)) => return closed(&state, &other, &token),
        Err(e) => return unavailable(&state, &e),
    };
    if let Some(busy) = over_budget(&state, &req, &link) {
        return busy;
    }
    let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let subject = format!("vps:{}", link.vps);
    let reject = |status: StatusCode, heading: &'static str, text: &'static str, why: String| {
        let state = state.clone();
        let subject = subject.clone();
        async move {
            let _ = state
                .store
                .record_activity(
                    Level::Warning,
                    "customer",
                    Some(&subject),
                    "an upgrade payment was refused",
                    json!({ "reason": why }),
                )
                .await;
            message(&state, status, heading, text, None)
        }
    };
    let presented = form.get("form_token").map(String::as_str).unwrap_or_default();
    if !links::check_form_token(&state.sealer, &link.id, presented) {
        return reject(
            StatusCode::FORBIDDEN,
            "Please start again",
            "This payment request did not come from the upgrade page. Open your upgrade link again and choose the upgrade there.",
            "the form token is missing or wrong".into(),
        )
        .await;
    }
    let offer_id = OfferId::from(form.get("offer").cloned().unwrap_or_default());
    let (vps, vps_name) = match vps_and_name(&state, &link).await {
        Ok(v) => v,
        Err(e) => return unavailable(&state, &e),
    };
    let available = match offers::offers_for_vps(
        &state.store,
        crate::actors::gateway::customer_capacity_of(state.gateway_of(&vps.id).await),
        &vps,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            return reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again later",
                "This upgrade cannot be sold right now. Nothing was charged. Try again in a few minutes.",
                format!("offers could not be checked: {e:#}"),
            )
            .await;
        }
    };
    let Some(chosen) = available.iter().find(|a| a.offer.id == offer_id) else {
        return reject(
            StatusCode::CONFLICT,
            "This upgrade is not available",
            "The upgrade you chose is no longer available for this server. Nothing was charged. Go back to the upgrade page to see what is available now.",
            format!("offer {offer_id:?} is not available for this VPS now"),
        )
        .await;
    };
    let base = state.config.server.public_url.trim_end_matches('/');
    let request = CheckoutRequest {
        link_id: &link.id,
        vps: &vps,
        vps_name: &vps_name,
        offer: &chosen.offer,
        target: &chosen.target,
        success_url: format!("{base}/upgrade/{}/done?session_id={{CHECKOUT_SESSION_ID}}", token.as_str()),
        cancel_url: format!("{base}/upgrade/{}?cancelled=1", token.as_str()),
    };
    match checkout::create_session(&state.config.stripe, &request).await {
        Ok(session) => {
            let _ = state
                .store
                .record_activity(
                    Level::Info,
                    "customer",
                    Some(&subject),
                    "upgrade checkout started",
                    json!({ "session": session.id, "offer": chosen.offer.id, "link": link.id }),
                )
                .await;
            tracing::info!(vps = %vps.id, session = %session.id, offer = %chosen.offer.id, peer = ?req.peer_addr(), "upgrade checkout started");
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, session.url))
                .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
                .finish()
        }
        Err(e) => {
            let status = if matches!(e, CheckoutError::NotConfigured) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_GATEWAY
            };
            tracing::error!(vps = %vps.id, error = %e, "an upgrade checkout could not be created");
            reject(
                status,
                "The payment could not be started",
                "Nothing was charged. Please try again in a few minutes; if it keeps failing, contact your provider.",
                e.to_string(),
            )
            .await
        }
    }
}

/// The progress of the upgrade paid through `link` (by `session` when given).
pub async fn progress(state: &AppState, link: &Link, session: Option<&str>) -> anyhow::Result<Progress> {
    let sid = session.filter(|s| !s.is_empty()).or(link.used_session.as_ref().map(PaymentId::as_str));
    let pay = match sid {
        Some(sid) => state.store.payment_progress(&PaymentId::from(sid), &link.id).await?,
        None => None,
    };
    let Some(pay) = pay else {
        return Ok(Progress {
            state: "waiting_payment",
            message: "Waiting for the payment confirmation from Stripe. This usually takes a few seconds; \
                      some payment methods take longer."
                .into(),
            spec: None,
        });
    };
    if pay.status == PaymentStatus::Duplicate {
        return Ok(Progress {
            state: "refund",
            message: "This payment was not needed: the link had already been used for an upgrade. Your provider has been told to refund it.".into(),
            spec: pay.spec,
        });
    }
    let op = pay.operation.unwrap_or_else(|| fulfil::operation_key(sid.unwrap_or_default()));
    let (s, message) = match state.store.upgrade_operation_state(&op).await?.as_deref() {
        Some("succeeded") => ("done", "Your server has been upgraded and is running again."),
        Some("dead" | "cancelled") => (
            "failed",
            "The upgrade could not be applied yet. Your payment is safe and your provider has been notified.",
        ),
        _ => ("applying", "Payment received. Your server is being upgraded; it restarts once during the upgrade."),
    };
    Ok(Progress { state: s, message: message.into(), spec: pay.spec })
}

async fn link_for_progress(state: &AppState, token: &str) -> Result<Link, HttpResponse> {
    match links::resolve(&state.store, &state.sealer, token).await {
        // Progress is shown for any link the customer holds, even one expired since paying.
        Ok((LinkStatus::Active(l) | LinkStatus::Used(l) | LinkStatus::Expired(l), _)) => Ok(l),
        Ok((other, _)) => Err(closed(state, &other, token)),
        Err(e) => Err(unavailable(state, &e)),
    }
}

async fn get_upgrade_done(
    state: web::Data<AppState>,
    token: web::Path<String>,
    query: web::Query<DoneQuery>,
) -> HttpResponse {
    let link = match link_for_progress(&state, &token).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    let (vps, vps_name) = match vps_and_name(&state, &link).await {
        Ok(v) => v,
        Err(e) => return unavailable(&state, &e),
    };
    let p = match progress(&state, &link, query.session_id.as_deref()).await {
        Ok(p) => p,
        Err(e) => return unavailable(&state, &e),
    };
    let heading = match p.state {
        "done" => "Upgrade complete",
        "failed" => "Upgrade delayed",
        "refund" => "Payment not needed",
        "applying" => "Upgrading your server",
        _ => "Confirming your payment",
    };
    let page = DonePage {
        vps_name,
        heading: heading.into(),
        message: p.message,
        refresh: matches!(p.state, "waiting_payment" | "applying").then_some(REFRESH_SECS),
        spec: vps.spec.into(),
    };
    match state.templates.render("pages/upgrade_done.html", &page) {
        Ok(html) => super::customer_page(StatusCode::OK, html),
        Err(e) => unavailable(&state, &e),
    }
}

async fn get_upgrade_status(
    state: web::Data<AppState>,
    token: web::Path<String>,
    query: web::Query<DoneQuery>,
) -> HttpResponse {
    let link = match link_for_progress(&state, &token).await {
        Ok(l) => l,
        Err(resp) => {
            let status = resp.status();
            return HttpResponse::build(status)
                .json(json!({ "state": "unknown", "message": "This link is not valid any more." }));
        }
    };
    match progress(&state, &link, query.session_id.as_deref()).await {
        Ok(p) => {
            HttpResponse::Ok().insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store"))).json(p)
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "upgrade progress could not be read");
            HttpResponse::ServiceUnavailable().json(json!({ "state": "unknown", "message": "Try again shortly." }))
        }
    }
}
