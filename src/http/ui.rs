//! The admin web UI: server-rendered pages (`templates/admin/`), forms that work without
//! JavaScript, and live updates through [`super::events`] when it runs.
//!
//! Every handler takes a [`UiUser`] and checks its role before it reads or acts: viewers read,
//! operators act on VPSs, admins configure. Every form carries the session's CSRF token.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::session::UiError;
use crate::auth::{Principal, Role};

mod account;
mod activity;
mod dashboard;
mod inbox;
mod notifications;
mod portal_links;
mod settings;
mod sources;
mod templates;
mod vps;

pub fn routes(cfg: &mut web::ServiceConfig) {
    dashboard::routes(cfg);
    vps::routes(cfg);
    portal_links::routes(cfg);
    activity::routes(cfg);
    inbox::routes(cfg);
    templates::routes(cfg);
    sources::routes(cfg);
    notifications::routes(cfg);
    settings::routes(cfg);
    account::routes(cfg);
}

pub(super) type Page = Result<HttpResponse, UiError>;

pub(super) fn anyhow_internal(e: anyhow::Error) -> UiError {
    UiError::internal(format!("{e:#}"))
}

/// What the layout around every page shows.
#[derive(Serialize)]
struct Layout<'a> {
    title: &'a str,
    /// The page, rendered.
    body: String,
    user: &'a Principal,
    /// The navigation entry of the page, as `{ entry: true }`.
    nav: BTreeMap<&'a str, bool>,
    can_operate: bool,
    is_admin: bool,
    version: &'static str,
}

/// Renders `template` with `ctx` inside the layout.
pub(super) fn render(
    state: &AppState,
    user: &Principal,
    template: &str,
    title: &str,
    nav: &str,
    ctx: impl Serialize,
) -> Page {
    let body = state.templates.render(template, &ctx).map_err(anyhow_internal)?;
    let layout = Layout {
        title,
        body,
        user,
        nav: BTreeMap::from([(nav, true)]),
        can_operate: user.can(Role::Operator),
        is_admin: user.can(Role::Admin),
        version: crate::VERSION,
    };
    let html = state.templates.render("admin/layout.html", &layout).map_err(anyhow_internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(html))
}

pub(super) fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, to.to_string())).finish()
}

/// A page that shows a new secret once, as the answer to the POST that made it: never in a
/// redirect's query string, where it would stay in the history and in proxy logs.
pub(super) fn shown_once(
    state: &AppState,
    user: &Principal,
    heading: &str,
    message: &str,
    secret: &str,
    back: &str,
) -> Page {
    let ctx = ShownOncePage { heading, message, secret, back };
    render(state, user, "admin/shown_once.html", heading, "settings", ctx)
}

#[derive(Serialize)]
struct ShownOncePage<'a> {
    heading: &'a str,
    message: &'a str,
    secret: &'a str,
    /// Where the page's link leads back to.
    back: &'a str,
}

/// Redirects with a flash message in the query (`?ok=` or `?err=`).
pub(super) fn redirect_msg(to: &str, ok: bool, msg: &str) -> HttpResponse {
    let sep = if to.contains('?') { '&' } else { '?' };
    let key = if ok { "ok" } else { "err" };
    redirect(&format!("{to}{sep}{key}={}", url::form_urlencoded::byte_serialize(msg.as_bytes()).collect::<String>()))
}

/// A message left by the action that redirected here (`?ok=` or `?err=`); both empty when
/// there is none.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Flash {
    #[serde(default)]
    ok: String,
    #[serde(default)]
    err: String,
}

pub(super) fn flash(req: &HttpRequest) -> Flash {
    web::Query::<Flash>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default()
}

/// A list filter as the query string of its page links (empty and zero fields left out).
pub(super) fn serde_urlencoded<T: Serialize>(v: &T) -> String {
    let value = serde_json::to_value(v).unwrap_or_default();
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    if let Some(obj) = value.as_object() {
        for (k, v) in obj {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            if !s.is_empty() && s != "0" {
                out.append_pair(k, &s);
            }
        }
    }
    out.finish()
}
