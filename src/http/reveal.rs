//! The customer's one-time reveal page: `GET /reveal/{token}` asks for a click, and its
//! `POST` shows a VPS's name, IP and root password once (the link comes in the "your VPS is
//! ready" email); afterwards the link answers 410.
//!
//! Every value is HTML-escaped by the template; the page is never cached, indexed or sent as
//! a referrer; neither the token nor the password is logged.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::AppState;
use crate::notify::reveal::{self, Claim, RevealToken};

/// Mounts the reveal page.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/reveal/{token}", web::get().to(confirm_reveal)).route("/reveal/{token}", web::post().to(post_reveal));
}

/// The context of `pages/reveal.html`.
#[derive(Serialize)]
struct RevealPage<'a> {
    vps_name: &'a str,
    ips: &'a [String],
    username: &'a str,
    password: &'a str,
}

/// The context of `errors/reveal_gone.html`.
#[derive(Serialize)]
struct GonePage<'a> {
    heading: &'a str,
    message: &'a str,
}

/// `GET`: a page with one button; only its `POST` spends the link, so a mail scanner that
/// opens links does not use it up.
async fn confirm_reveal(state: web::Data<AppState>, token: web::Path<String>) -> HttpResponse {
    let peeked = match RevealToken::parse(&token) {
        Some(t) => reveal::peek(&state.store, &t).await,
        None => Ok(Err(Claim::Unknown)),
    };
    match peeked {
        Ok(Ok(vps_name)) => {
            match state.templates.render("pages/reveal_confirm.html", &ConfirmPage { vps_name: &vps_name }) {
                Ok(html) => super::customer_page(StatusCode::OK, html),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot render the reveal confirm page");
                    gone(
                        &state,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Something went wrong",
                        "Try the link again in a minute.",
                    )
                }
            }
        }
        Ok(Err(claim)) => gone_for(&state, claim),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "a reveal link could not be read");
            gone(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "Your login details could not be shown right now. Try the link again in a minute.",
            )
        }
    }
}

#[derive(Serialize)]
struct ConfirmPage<'a> {
    vps_name: &'a str,
}

fn gone_for(state: &AppState, claim: Claim) -> HttpResponse {
    match claim {
        Claim::Used => gone(
            state,
            StatusCode::GONE,
            "This link was already used",
            "For your security the login details are shown only once, and this link has been opened before.",
        ),
        Claim::Expired => gone(
            state,
            StatusCode::GONE,
            "This link has expired",
            "For your security the link to your login details is valid only for a limited time.",
        ),
        _ => gone(
            state,
            StatusCode::NOT_FOUND,
            "Link not found",
            "This link is not valid. Check that you copied the whole address from the email.",
        ),
    }
}

async fn post_reveal(state: web::Data<AppState>, token: web::Path<String>) -> HttpResponse {
    let claim = match RevealToken::parse(&token) {
        Some(t) => reveal::claim(&state.store, &state.sealer, &t).await,
        None => Ok(Claim::Unknown),
    };
    match claim {
        Ok(Claim::Revealed(r)) => {
            let page =
                RevealPage { vps_name: &r.vps_name, ips: &r.ips, username: "root", password: r.password.expose() };
            match state.templates.render("pages/reveal.html", &page) {
                Ok(html) => super::customer_page(StatusCode::OK, html),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot render the reveal page");
                    gone(
                        &state,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Something went wrong",
                        "The page could not be shown, and the link has been used. Ask your provider for a new password.",
                    )
                }
            }
        }
        Ok(Claim::Used) => gone(
            &state,
            StatusCode::GONE,
            "This link was already used",
            "For your security the login details are shown only once, and this link has been opened before.",
        ),
        Ok(Claim::Expired) => gone(
            &state,
            StatusCode::GONE,
            "This link has expired",
            "For your security the link to your login details is valid only for a limited time.",
        ),
        Ok(Claim::Unknown) => gone(
            &state,
            StatusCode::NOT_FOUND,
            "Link not found",
            "This link is not valid. Check that you copied the whole address from the email.",
        ),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "a reveal link could not be claimed");
            gone(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "Your login details could not be shown right now. Try the link again in a minute.",
            )
        }
    }
}

fn gone(state: &AppState, status: StatusCode, heading: &str, message: &str) -> HttpResponse {
    match state.templates.render("errors/reveal_gone.html", &GonePage { heading, message }) {
        Ok(html) => super::customer_page(status, html),
        Err(_) => HttpResponse::build(status)
            .content_type("text/plain; charset=utf-8")
            .body(format!("{heading}\n\n{message}\n")),
    }
}
