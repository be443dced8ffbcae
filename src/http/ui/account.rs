//! The signed-in user's own account: two-factor login.

use actix_web::{HttpRequest, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Flash, Page, anyhow_internal, flash, redirect_msg, render};
use crate::auth::TotpSetup;
use crate::http::AppState;
use crate::http::session::{CsrfForm, UiUser, check_csrf};
use crate::lifecycle::Level;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/account", web::get().to(show_account))
        .route("/account/2fa/begin", web::post().to(begin_totp))
        .route("/account/2fa/confirm", web::post().to(confirm_totp))
        .route("/account/2fa/disable", web::post().to(disable_totp));
}

/// The account page: whether two-factor login is on, and the steps of turning it on.
#[derive(Serialize)]
struct AccountPage<'a> {
    totp: bool,
    csrf: &'a str,
    flash: Flash,
    /// The secret to enter in an authenticator app, while turning two-factor login on.
    setup: Option<TotpSetup>,
    /// The recovery codes, shown once when two-factor login is turned on.
    codes: Option<Vec<String>>,
}

async fn show_account(state: web::Data<AppState>, user: UiUser, req: HttpRequest) -> Page {
    let on = state.auth.has_totp(&user.0.username).await.map_err(anyhow_internal)?;
    let ctx = AccountPage { totp: on, csrf: &user.0.csrf, flash: flash(&req), setup: None, codes: None };
    render(&state, &user.0, "admin/account.html", "Account", "account", ctx)
}

async fn begin_totp(state: web::Data<AppState>, user: UiUser, form: web::Form<CsrfForm>) -> Page {
    check_csrf(&user.0, &form._csrf)?;
    let setup = match state.auth.begin_totp(&user.0.username).await {
        Ok(s) => s,
        Err(e) => return Ok(redirect_msg("/account", false, &format!("{e:#}"))),
    };
    let ctx = AccountPage { totp: false, csrf: &user.0.csrf, flash: Flash::default(), setup: Some(setup), codes: None };
    render(&state, &user.0, "admin/account.html", "Account", "account", ctx)
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    code: String,
}

async fn confirm_totp(state: web::Data<AppState>, user: UiUser, form: web::Form<CodeForm>) -> Page {
    check_csrf(&user.0, &form._csrf)?;
    match state.auth.confirm_totp(&user.0.username, &form.code).await {
        Ok(Some(codes)) => {
            let _ = state
                .store
                .record_activity(
                    Level::Warning,
                    &user.0.actor(),
                    None,
                    &format!("{} turned on two-factor login", user.0.actor()),
                    json!({}),
                )
                .await;
            let ctx = AccountPage {
                totp: true,
                csrf: &user.0.csrf,
                flash: Flash::default(),
                setup: None,
                codes: Some(codes),
            };
            render(&state, &user.0, "admin/account.html", "Account", "account", ctx)
        }
        Ok(None) => {
            Ok(redirect_msg("/account", false, "That code is not right; start again and enter the current code."))
        }
        Err(e) => Ok(redirect_msg("/account", false, &format!("{e:#}"))),
    }
}

async fn disable_totp(state: web::Data<AppState>, user: UiUser, form: web::Form<CodeForm>) -> Page {
    check_csrf(&user.0, &form._csrf)?;
    match state.auth.check_second_factor(&user.0.session_hash, &user.0.username, &form.code).await {
        Ok(crate::auth::SecondFactor::Passed) => {}
        Ok(crate::auth::SecondFactor::Locked(_)) => {
            return Ok(redirect_msg("/account", false, "Too many wrong codes; two-factor login stays on. Try later."));
        }
        Ok(crate::auth::SecondFactor::Wrong) => {
            return Ok(redirect_msg("/account", false, "That code is not right; two-factor login stays on."));
        }
        Err(e) => return Err(anyhow_internal(e)),
    }
    state.auth.reset_totp(&user.0.username).await.map_err(anyhow_internal)?;
    let _ = state
        .store
        .record_activity(
            Level::Warning,
            &user.0.actor(),
            None,
            &format!("{} turned off two-factor login", user.0.actor()),
            json!({}),
        )
        .await;
    Ok(redirect_msg("/account", true, "Two-factor login is off."))
}
