//! Who is asking: the session cookie of a logged-in admin, or an API bearer token; plus login,
//! logout and CSRF checks.
//!
//! - [`UiUser`] extracts a session for pages; without one a page redirects to `/login`.
//! - [`ApiUser`] extracts a bearer token (or a session, for the UI's own fetches) for
//!   `/api/v1`; without one it answers 401 JSON.
//! - Every state-changing form carries `_csrf`, the session's token, checked by
//!   [`check_csrf`] (fetches send it as `X-CSRF-Token`). The login form is protected by a
//!   double-submit cookie.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::AppState;
use crate::auth::{LoginError, Principal, Role, SecondFactor, random_token};
use crate::error::{AppError, Code};
use crate::lifecycle::Level;

pub const SESSION_COOKIE: &str = "vmauto_session";
const LOGIN_CSRF_COOKIE: &str = "vmauto_login";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(login_page))
        .route("/login", web::post().to(login))
        .route("/login/2fa", web::get().to(second_factor_page))
        .route("/login/2fa", web::post().to(second_factor))
        .route("/logout", web::post().to(logout))
        .route("/logout/everywhere", web::post().to(logout_everywhere));
}

/// A page's failure: a redirect to the login page (or its second step), or an HTML error page.
#[derive(Debug)]
pub enum UiError {
    Login { next: String },
    SecondFactor { next: String },
    Page { status: StatusCode, message: String },
}

impl UiError {
    pub fn forbidden(role: Role) -> Self {
        Self::Page {
            status: StatusCode::FORBIDDEN,
            message: format!("This needs the {role} role. Ask an admin if you need it."),
        }
    }

    pub fn status(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Page { status, message: message.into() }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "a page failed");
        Self::Page {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "Something went wrong; the details are in the log.".into(),
        }
    }
}

impl std::fmt::Display for UiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Login { .. } | Self::SecondFactor { .. } => f.write_str("login required"),
            Self::Page { message, .. } => f.write_str(message),
        }
    }
}

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Login { .. } | Self::SecondFactor { .. } => StatusCode::SEE_OTHER,
            Self::Page { status, .. } => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Login { next } => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, format!("/login?next={}", url_encode(next))))
                .finish(),
            Self::SecondFactor { next } => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, format!("/login/2fa?next={}", url_encode(next))))
                .finish(),
            Self::Page { status, message } => {
                HttpResponse::build(*status).content_type("text/html; charset=utf-8").body(format!(
                    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code}</title>\
                     <link rel=\"stylesheet\" href=\"/assets/app.css\"></head><body class=\"error-page\"><main>\
                     <h1>{code}</h1><p>{msg}</p><p><a href=\"/\">Back to the dashboard</a></p></main></body></html>",
                    code = status.as_u16(),
                    msg = escape(message)
                ))
            }
        }
    }
}

/// HTML-escapes text for the few strings built outside templates.
pub fn escape(s: &str) -> String {
    handlebars::html_escape(s)
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A logged-in user, for pages.
pub struct UiUser(pub Principal);

impl FromRequest for UiUser {
    type Error = UiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, UiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let next = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
            let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| UiError::internal("no state"))?;
            let Some(cookie) = req.cookie(SESSION_COOKIE) else { return Err(UiError::Login { next }) };
            match state.auth.session(cookie.value()).await {
                Ok(Some(p)) if p.mfa_pending => Err(UiError::SecondFactor { next }),
                Ok(Some(p)) => Ok(Self(p)),
                Ok(None) => Err(UiError::Login { next }),
                Err(e) => Err(UiError::internal(format!("{e:#}"))),
            }
        })
    }
}

impl UiUser {
    /// Refuses with 403 below `role`.
    pub fn require(&self, role: Role) -> Result<&Principal, UiError> {
        if self.0.can(role) { Ok(&self.0) } else { Err(UiError::forbidden(role)) }
    }
}

/// An API caller: `Authorization: Bearer vma_…`, or the UI's session with `X-CSRF-Token` on
/// writes.
pub struct ApiUser(pub Principal);

impl FromRequest for ApiUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| AppError::internal("no state"))?;
            let unauthorized = || {
                AppError::new(
                    Code::Unauthorized,
                    "Authentication required. - Hint: send `Authorization: Bearer <token>` with an API token an admin created under Settings → API tokens.",
                )
            };
            let bearer = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            if let Some(token) = bearer {
                return match state.auth.token(token).await {
                    Ok(Some(p)) => Ok(Self(p)),
                    Ok(None) => Err(unauthorized()),
                    Err(e) => Err(AppError::store(format!("{e:#}"))),
                };
            }
            let Some(cookie) = req.cookie(SESSION_COOKIE) else { return Err(unauthorized()) };
            let p = match state.auth.session(cookie.value()).await {
                Ok(Some(p)) if !p.mfa_pending => p,
                Ok(_) => return Err(unauthorized()),
                Err(e) => return Err(AppError::store(format!("{e:#}"))),
            };
            if !req.method().is_safe() {
                let sent = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
                if !csrf_matches(sent, &p.csrf) {
                    return Err(AppError::new(Code::Forbidden, "Missing or wrong X-CSRF-Token for a session request."));
                }
            }
            Ok(Self(p))
        })
    }
}

impl ApiUser {
    pub fn require(&self, role: Role) -> Result<&Principal, AppError> {
        if self.0.can(role) {
            Ok(&self.0)
        } else {
            Err(AppError::new(Code::Forbidden, format!("This needs the {role} role.")))
        }
    }
}

fn csrf_matches(sent: &str, expected: &str) -> bool {
    !expected.is_empty() && sent.len() == expected.len() && bool::from(sent.as_bytes().ct_eq(expected.as_bytes()))
}

/// Refuses a form whose `_csrf` is not the session's token.
pub fn check_csrf(user: &Principal, sent: &str) -> Result<(), UiError> {
    if csrf_matches(sent, &user.csrf) {
        Ok(())
    } else {
        Err(UiError::status(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this site. Reload the page and try again.",
        ))
    }
}

/// Whether the request came over HTTPS (directly or through a proxy that says so).
#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    _csrf: String,
}

/// Where to go after logging in: only a path on this site. Browsers drop tabs and newlines
/// from a URL and read a backslash as `/`, so `/<TAB>/evil.example` would leave the site: any control
/// character, space, backslash or non-ASCII character sends the user to `/` instead.
/// The login page: its form's CSRF token, where to go after, the error to show, and whether
/// no admin exists yet (the first-run hint).
#[derive(serde::Serialize)]
struct LoginPage<'a> {
    csrf: &'a str,
    next: &'a str,
    error: &'a str,
    first_run: bool,
}

/// The second-factor page.
#[derive(serde::Serialize)]
struct SecondFactorPage<'a> {
    csrf: &'a str,
    next: &'a str,
    error: &'a str,
}

fn safe_next(next: &str) -> &str {
    let bytes = next.as_bytes();
    let same_origin_path = bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\');
    if same_origin_path { next } else { "/" }
}

async fn login_page(state: web::Data<AppState>, req: HttpRequest, q: web::Query<LoginQuery>) -> HttpResponse {
    let csrf = random_token();
    let first_run = state.auth.user_count().await.unwrap_or(1) == 0;
    let html = state
        .templates
        .render("admin/login.html", &LoginPage { csrf: &csrf, next: safe_next(&q.next), error: &q.error, first_run });
    let cookie = Cookie::build(LOGIN_CSRF_COOKIE, csrf)
        .path("/login")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.is_https(&req))
        .max_age(CookieDuration::minutes(30))
        .finish();
    match html {
        Ok(html) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .cookie(cookie)
            .body(html),
        Err(e) => UiError::internal(format!("{e:#}")).error_response(),
    }
}

async fn login(state: web::Data<AppState>, req: HttpRequest, form: web::Form<LoginForm>) -> HttpResponse {
    let back = |msg: &str| {
        HttpResponse::SeeOther()
            .insert_header((
                header::LOCATION,
                format!("/login?next={}&error={}", url_encode(safe_next(&form.next)), url_encode(msg)),
            ))
            .finish()
    };
    let cookie_csrf = req.cookie(LOGIN_CSRF_COOKIE).map(|c| c.value().to_string()).unwrap_or_default();
    if !csrf_matches(&form._csrf, &cookie_csrf) {
        return back("The login form expired. Please try again.");
    }
    let ip = state.client_ip(&req).map_or_else(|| "?".to_string(), |ip| ip.to_string());
    let result = state.auth.login(form.username.trim(), &form.password, &ip).await;
    let user = form.username.trim();
    match result {
        Ok(Ok((token, principal))) => {
            let _ = state
                .store
                .record_activity(
                    Level::Info,
                    &principal.actor(),
                    None,
                    &format!("{user} logged in"),
                    json!({ "ip": ip }),
                )
                .await;
            let cookie = Cookie::build(SESSION_COOKIE, token)
                .path("/")
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(state.is_https(&req))
                .finish();
            let mut clear = Cookie::build(LOGIN_CSRF_COOKIE, "").path("/login").finish();
            clear.make_removal();
            let to = if principal.mfa_pending {
                format!("/login/2fa?next={}", url_encode(safe_next(&form.next)))
            } else {
                safe_next(&form.next).to_string()
            };
            HttpResponse::SeeOther().insert_header((header::LOCATION, to)).cookie(cookie).cookie(clear).finish()
        }
        Ok(Err(e)) => {
            // One answer for every cause, so a failed login does not tell which users exist or
            // which are locked; the cause goes to the activity log.
            let message = match e {
                LoginError::Busy => "Many logins are being checked right now; try again in a few seconds.".to_string(),
                _ => format!(
                    "Wrong username or password, or too many failed attempts: try again in {} minutes. An admin \
                     can reset a forgotten password.",
                    state.config.security.lockout_minutes
                ),
            };
            let _ = state
                .store
                .record_activity(
                    Level::Warning,
                    "login",
                    None,
                    &format!("failed login for {user}"),
                    json!({ "ip": ip, "reason": format!("{e:?}") }),
                )
                .await;
            back(&message)
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "login failed");
            back("Login is not possible right now; try again shortly.")
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub _csrf: String,
}

fn logged_out() -> HttpResponse {
    let mut cookie = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    cookie.make_removal();
    HttpResponse::SeeOther().insert_header((header::LOCATION, "/login")).cookie(cookie).finish()
}

async fn logout(state: web::Data<AppState>, user: UiUser, form: web::Form<CsrfForm>) -> Result<HttpResponse, UiError> {
    check_csrf(&user.0, &form._csrf)?;
    state.auth.logout(&user.0.session_hash).await.map_err(|e| UiError::internal(format!("{e:#}")))?;
    Ok(logged_out())
}

async fn logout_everywhere(
    state: web::Data<AppState>,
    user: UiUser,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, UiError> {
    check_csrf(&user.0, &form._csrf)?;
    state.auth.end_all_sessions(&user.0.username).await.map_err(|e| UiError::internal(format!("{e:#}")))?;
    let _ = state.store.record_activity(Level::Info, &user.0.actor(), None, "logged out everywhere", json!({})).await;
    Ok(logged_out())
}

#[derive(Deserialize)]
struct SecondFactorForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    _csrf: String,
}

/// The session of a password-checked login still waiting for its second factor.
async fn pending(state: &AppState, req: &HttpRequest) -> Option<Principal> {
    let cookie = req.cookie(SESSION_COOKIE)?;
    state.auth.session(cookie.value()).await.ok().flatten().filter(|p| p.mfa_pending)
}

async fn second_factor_page(state: web::Data<AppState>, req: HttpRequest, q: web::Query<LoginQuery>) -> HttpResponse {
    let Some(p) = pending(&state, &req).await else {
        return HttpResponse::SeeOther().insert_header((header::LOCATION, "/login")).finish();
    };
    match state.templates.render(
        "admin/second_factor.html",
        &SecondFactorPage { csrf: &p.csrf, next: safe_next(&q.next), error: &q.error },
    ) {
        Ok(html) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(html),
        Err(e) => UiError::internal(format!("{e:#}")).error_response(),
    }
}

async fn second_factor(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<SecondFactorForm>,
) -> HttpResponse {
    let Some(p) = pending(&state, &req).await else {
        return HttpResponse::SeeOther().insert_header((header::LOCATION, "/login")).finish();
    };
    if !csrf_matches(&form._csrf, &p.csrf) {
        return UiError::status(StatusCode::FORBIDDEN, "This form has expired. Log in again.").error_response();
    }
    match state.auth.check_second_factor(&p.session_hash, &p.username, &form.code).await {
        Ok(SecondFactor::Passed) => {
            let ip = state.client_ip(&req).map_or_else(|| "?".to_string(), |ip| ip.to_string());
            let token = match state.auth.rotate_session(&p.session_hash, &p.username, &ip).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "the session could not be renewed after the second factor");
                    return HttpResponse::SeeOther().insert_header((header::LOCATION, "/login")).finish();
                }
            };
            let _ = state
                .store
                .record_activity(
                    Level::Info,
                    &p.actor(),
                    None,
                    &format!("{} logged in with two factors", p.username),
                    json!({}),
                )
                .await;
            let cookie = Cookie::build(SESSION_COOKIE, token)
                .path("/")
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(state.is_https(&req))
                .finish();
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, safe_next(&form.next).to_string()))
                .cookie(cookie)
                .finish()
        }
        Ok(outcome) => {
            let message = match outcome {
                SecondFactor::Locked(_) => format!(
                    "Too many wrong codes: two-factor login for this account waits {} minutes. An admin can reset it.",
                    state.config.security.lockout_minutes
                ),
                _ => "That code is not right. Try the current one, or a recovery code.".to_string(),
            };
            let _ = state
                .store
                .record_activity(
                    Level::Warning,
                    "login",
                    None,
                    &format!("wrong second-factor code for {}", p.username),
                    json!({ "locked": matches!(outcome, SecondFactor::Locked(_)) }),
                )
                .await;
            HttpResponse::SeeOther()
                .insert_header((
                    header::LOCATION,
                    format!("/login/2fa?next={}&error={}", url_encode(safe_next(&form.next)), url_encode(&message)),
                ))
                .finish()
        }
        Err(e) => UiError::internal(format!("{e:#}")).error_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_same_site_paths_are_followed_after_login() {
        for ok in ["/", "/vps?q=a%20b", "/vps/abc", "/%2F%2Fevil.example"] {
            assert_eq!(safe_next(ok), ok);
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "https://evil.example",
            "evil",
            "/caf\u{e9}",
            "",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad:?}");
        }
    }
}
