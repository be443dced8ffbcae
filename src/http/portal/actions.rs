//! What the customer asks of their server from the portal: each a form POST carrying the
//! link's form token, queued as an operation `requested_by = customer:<link id>` (so it shows
//! in the VPS's timeline), answered 303 back to the page with a message code. One task at a
//! time: while an operation of the VPS waits or runs, new requests are refused.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::{Value, json};

use super::{AppState, admit, look, message, portal_response, unavailable};
use crate::admin::{self, Action};
use crate::db::models::operation::PowerAction;
use crate::lifecycle::{Level, VpsState};
use crate::portal::{self, PortalLink};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/my/{token}/power", web::post().to(post_power))
        .route("/my/{token}/reinstall", web::post().to(post_reinstall))
        .route("/my/{token}/password", web::post().to(post_password))
        .route("/my/{token}/password/show", web::post().to(post_password_show))
        .route("/my/{token}/upgrade", web::post().to(post_upgrade))
        .route("/my/{token}/restore", web::post().to(post_restore));
}

fn back(token: &str, code: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/my/{token}?m={code}")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

type Form = std::collections::HashMap<String, String>;

/// The link, its form (with a valid form token) — or the response to give instead.
async fn accept(
    state: &AppState,
    req: &HttpRequest,
    token: &str,
    body: &[u8],
) -> Result<(PortalLink, Form), HttpResponse> {
    let link = admit(state, req, token).await?;
    let form: Form = url::form_urlencoded::parse(body).into_owned().collect();
    let presented = form.get("form_token").map(String::as_str).unwrap_or_default();
    if !portal::check_form_token(&state.sealer, &link.id, presented) {
        return Err(back(token, "form"));
    }
    Ok((link, form))
}

/// Queues `action` for the link's VPS if it is active and idle; answers where to go next.
async fn request(
    state: &AppState,
    token: &str,
    link: &PortalLink,
    action: Action,
    params: Value,
    done: &str,
) -> HttpResponse {
    let seen = match look(state, link).await {
        Ok(s) => s,
        Err(e) => return unavailable(state, &e),
    };
    if seen.vps.state != VpsState::Active || !seen.vps.has_vm {
        return back(token, "inactive");
    }
    if seen.busy() {
        return back(token, "busy");
    }
    let who = portal::actor(&link.id);
    match admin::request_action(&state.store, &state.handles.registry, &link.vps, action, params, &who).await {
        Ok(_) => back(token, done),
        Err(e) => {
            tracing::warn!(vps = %link.vps, error = %format!("{e:#}"), "a customer's request was refused");
            let _ = state
                .store
                .record_activity(
                    Level::Warning,
                    &who,
                    Some(&format!("vps:{}", link.vps)),
                    "a customer's request could not be queued",
                    json!({ "error": format!("{e:#}") }),
                )
                .await;
            back(token, "failed")
        }
    }
}

async fn post_power(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (link, form) = match accept(&state, &req, &token, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let Some(action) = form.get("action").and_then(|a| PowerAction::parse(a)) else {
        return back(&token, "failed");
    };
    request(&state, &token, &link, Action::Power, json!({ "action": action }), "power").await
}

async fn post_reinstall(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (link, form) = match accept(&state, &req, &token, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let vps = match state.store.portal_vps(&link.vps).await {
        Ok(Some(v)) => v,
        Ok(None) => return back(&token, "inactive"),
        Err(e) => return unavailable(&state, &e),
    };
    if form.get("confirm").map(|c| c.trim()) != Some(vps.name.as_str()) || vps.name.is_empty() {
        return back(&token, "confirm");
    }
    let image = form.get("image").map(|i| i.trim().to_string()).unwrap_or_default();
    if !vps.images.contains(&image) {
        return back(&token, "image");
    }
    request(&state, &token, &link, Action::Rebuild, json!({ "image_id": image }), "reinstall").await
}

async fn post_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (link, _) = match accept(&state, &req, &token, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    request(&state, &token, &link, Action::Password, json!({}), "password").await
}

/// The context of `pages/portal_password.html`.
#[derive(Serialize)]
struct PasswordPage<'a> {
    base: String,
    name: &'a str,
    ips: &'a [String],
    password: &'a str,
}

/// Shows the new root password, once: the first request claims it, any later one is told it
/// was shown. The page is never cached and the password never in a URL or a log.
async fn post_password_show(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (link, _) = match accept(&state, &req, &token, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let who = portal::actor(&link.id);
    let op = match state.store.password_to_show(&link.vps, &who).await {
        Ok(Some(op)) => op,
        Ok(None) => return back(&token, "shown"),
        Err(e) => return unavailable(&state, &e),
    };
    match state.store.claim_password_shown(&op).await {
        Ok(true) => {}
        Ok(false) => return back(&token, "shown"),
        Err(e) => return unavailable(&state, &e),
    }
    let shown = async {
        let vps = state.store.revealed_vps(&link.vps).await?.ok_or_else(|| anyhow::anyhow!("the VPS is gone"))?;
        let sealed = vps.root_password.clone().ok_or_else(|| anyhow::anyhow!("the VPS has no stored password"))?;
        let password = state.sealer.open(&sealed, &crate::secrets::root_password_place(link.vps.as_str()))?;
        anyhow::Ok((vps, password))
    };
    let (vps, password) = match shown.await {
        Ok(v) => v,
        Err(e) => return unavailable(&state, &e),
    };
    let _ = state
        .store
        .record_activity(
            Level::Info,
            &who,
            Some(&format!("vps:{}", link.vps)),
            "the customer was shown their new root password",
            json!({ "operation": op }),
        )
        .await;
    let name = vps.name.as_deref().unwrap_or("your server");
    let page =
        PasswordPage { base: format!("/my/{}", token.as_str()), name, ips: &vps.ips, password: password.expose() };
    match state.templates.render("pages/portal_password.html", &page) {
        Ok(html) => portal_response(StatusCode::OK, html),
        Err(e) => unavailable(&state, &e),
    }
}

/// Opens the upgrade flow from the portal: the upgrade link this portal link opens (the same
/// one on every click until it is used), and the customer is sent to its page to choose and
/// pay.
async fn post_upgrade(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (link, _) = match accept(&state, &req, &token, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if !state.config.stripe.enabled {
        return message(&state, StatusCode::NOT_FOUND, "No upgrades", "Upgrades are not offered for this server.");
    }
    let who = portal::actor(&link.id);
    let issued = crate::upgrade::links::link_for_portal(
        &state.store,
        &state.config,
        &state.sealer,
        &link.vps,
        link.id.as_str(),
        &who,
    );
    match issued.await {
        Ok(issued) => {
            let path = issued.url.split_once("/upgrade/").map(|(_, t)| format!("/upgrade/{t}")).unwrap_or(issued.url);
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, path))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        }
        Err(e) => unavailable(&state, &e),
    }
}

/// Pay to restore: opens the Stripe Checkout of the restore the VPS is offered, and sends the
/// customer there; Stripe sends them back to this page.
async fn post_restore(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    use crate::upgrade::restore::{self, RestoreCheckout};
    let (link, _) = match accept(&state, &req, &token, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let offer = match restore::offer_for(&state.store, &state.config, &link.vps).await {
        Ok(Some(o)) => o,
        Ok(None) => return back(&token, "restore_unavailable"),
        Err(e) => return unavailable(&state, &e),
    };
    if offer.paid {
        return back(&token, "restore_paid");
    }
    let seen = match look(&state, &link).await {
        Ok(s) => s,
        Err(e) => return unavailable(&state, &e),
    };
    if seen.busy() {
        return back(&token, "busy");
    }
    let base = format!("{}/my/{}", state.config.server.public_url.trim_end_matches('/'), token.as_str());
    let checkout = RestoreCheckout {
        vps: &link.vps,
        vps_name: if seen.vps.name.is_empty() { "your server" } else { &seen.vps.name },
        portal_link: link.id.as_str(),
        offer: &offer,
        success_url: format!("{base}?m=restore_paid"),
        cancel_url: format!("{base}?m=restore_cancelled"),
    };
    let who = portal::actor(&link.id);
    let subject = format!("vps:{}", link.vps);
    match restore::open_checkout(&state.config, &checkout).await {
        Ok(session) => {
            let _ = state
                .store
                .record_activity(
                    Level::Info,
                    &who,
                    Some(&subject),
                    "restore checkout started",
                    json!({ "session": session.id, "price": offer.price_text(), "suspension": offer.suspension }),
                )
                .await;
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, session.url))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        }
        Err(e) => {
            tracing::error!(vps = %link.vps, error = %e, "a restore checkout could not be created");
            let _ = state
                .store
                .record_activity(
                    Level::Warning,
                    &who,
                    Some(&subject),
                    "a restore checkout could not be started",
                    json!({ "error": e.to_string() }),
                )
                .await;
            back(&token, "restore_failed")
        }
    }
}
