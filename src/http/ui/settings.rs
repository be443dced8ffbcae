//! Settings: users, API tokens, the settings editable here, an SMTP test.

use actix_web::{HttpRequest, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Flash, Page, anyhow_internal, flash, redirect_msg, render, shown_once};
use crate::auth::{ApiToken, Role, TokenId, User};
use crate::http::AppState;
use crate::http::session::{CsrfForm, UiUser, check_csrf};
use crate::lifecycle::Level;
use crate::settings::SettingView;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/settings", web::get().to(show_settings))
        .route("/settings/users", web::post().to(add_user))
        .route("/settings/users/{name}", web::post().to(change_user))
        .route("/settings/tokens", web::post().to(create_token))
        .route("/settings/tokens/{id}/revoke", web::post().to(revoke_token))
        .route("/settings/smtp-test", web::post().to(test_smtp))
        .route("/settings/config", web::post().to(save_settings));
}

async fn show_settings(state: web::Data<AppState>, user: UiUser, req: HttpRequest) -> Page {
    let p = user.require(Role::Admin)?;
    let users = state.auth.users().await.map_err(anyhow_internal)?;
    let tokens = state.auth.tokens().await.map_err(anyhow_internal)?;
    let c = &state.config;
    let set = |s: &crate::config::Secret| if s.is_empty() { "not set" } else { "set (hidden)" };
    let stored = crate::settings::stored(&state.store).await.map_err(anyhow_internal)?;
    let ctx = SettingsPage {
        editable: crate::settings::views(c, &stored),
        users,
        tokens,
        csrf: &p.csrf,
        flash: flash(&req),
        me: &p.username,
        policy: PolicyFacts {
            grace_days: c.policy.grace_days,
            max_destructive_per_hour: c.policy.max_destructive_per_hour,
            max_attempts: c.policy.max_attempts,
            reconcile_interval_secs: c.policy.reconcile_interval_secs,
        },
        smtp: SmtpFacts {
            host: &c.smtp.host,
            port: c.smtp.port,
            from: &c.smtp.from,
            recipients: c.smtp.admin_recipients.join(", "),
            password: set(&c.smtp.password),
        },
        notify: NotifyFacts { urls: c.notify.webhook_urls.join(", "), secret: set(&c.notify.webhook_secret) },
        stripe: StripeFacts {
            enabled: c.stripe.enabled,
            api_base: &c.stripe.api_base,
            secret_key: set(&c.stripe.secret_key),
            webhook_secrets: c.stripe.webhook_secrets.len(),
        },
        security: SecurityFacts {
            idle: c.security.session_idle_minutes,
            absolute: c.security.session_absolute_hours,
            failures: c.security.login_max_failures,
            lockout: c.security.lockout_minutes,
        },
    };
    render(&state, p, "admin/settings.html", "Settings", "settings", ctx)
}

/// The settings page: users, API tokens, the settings editable here, and the configuration
/// read from `appliance.toml` (secrets only as set or not).
#[derive(Serialize)]
struct SettingsPage<'a> {
    editable: Vec<SettingView>,
    users: Vec<User>,
    tokens: Vec<ApiToken>,
    csrf: &'a str,
    flash: Flash,
    /// The signed-in admin's name.
    me: &'a str,
    policy: PolicyFacts,
    smtp: SmtpFacts<'a>,
    notify: NotifyFacts,
    stripe: StripeFacts<'a>,
    security: SecurityFacts,
}

#[derive(Serialize)]
struct PolicyFacts {
    grace_days: u32,
    max_destructive_per_hour: u32,
    max_attempts: u32,
    reconcile_interval_secs: u64,
}

#[derive(Serialize)]
struct SmtpFacts<'a> {
    host: &'a str,
    port: u16,
    from: &'a str,
    recipients: String,
    password: &'static str,
}

#[derive(Serialize)]
struct NotifyFacts {
    urls: String,
    secret: &'static str,
}

#[derive(Serialize)]
struct StripeFacts<'a> {
    enabled: bool,
    api_base: &'a str,
    secret_key: &'static str,
    /// How many are configured.
    webhook_secrets: usize,
}

/// Session and login limits.
#[derive(Serialize)]
struct SecurityFacts {
    /// Minutes.
    idle: u64,
    /// Hours.
    absolute: u64,
    failures: u32,
    /// Minutes.
    lockout: u64,
}

#[derive(Deserialize)]
struct UserForm {
    #[serde(default)]
    _csrf: String,
    username: String,
    role: String,
}

async fn add_user(state: web::Data<AppState>, user: UiUser, form: web::Form<UserForm>) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    let Some(role) = Role::parse(&form.role) else { return Ok(redirect_msg("/settings", false, "Unknown role.")) };
    let password = crate::secrets::generate_password();
    match state.auth.add_user(form.username.trim(), password.expose(), role).await {
        Ok(()) => {
            let _ = state
                .store
                .record_activity(
                    Level::Warning,
                    &p.actor(),
                    None,
                    &format!("{} added {role} {}", p.actor(), form.username.trim()),
                    json!({}),
                )
                .await;
            shown_once(
                &state,
                p,
                "User added",
                &format!("Added {}. Their password:", form.username.trim()),
                password.expose(),
                "/settings",
            )
        }
        Err(e) => Ok(redirect_msg("/settings", false, &format!("{e:#}"))),
    }
}

#[derive(Deserialize)]
struct UserChange {
    #[serde(default)]
    _csrf: String,
    /// `disable`, `enable`, `reset_password`, `role`, `logout`.
    change: String,
    #[serde(default)]
    role: String,
}

async fn change_user(
    state: web::Data<AppState>,
    user: UiUser,
    name: web::Path<String>,
    form: web::Form<UserChange>,
) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    if *name == p.username && matches!(form.change.as_str(), "disable" | "role") {
        return Ok(redirect_msg("/settings", false, "You cannot disable yourself or change your own role."));
    }
    let auth = &state.auth;
    let mut new_password = None;
    let result = match form.change.as_str() {
        "disable" => auth.set_disabled(&name, true).await.map(|()| format!("{name} is disabled.")),
        "enable" => auth.set_disabled(&name, false).await.map(|()| format!("{name} is enabled.")),
        "logout" => auth.end_all_sessions(&name).await.map(|()| format!("{name} is logged out everywhere.")),
        "reset_2fa" => auth
            .reset_totp(&name)
            .await
            .map(|()| format!("Two-factor login of {name} is off; they can set it up again.")),
        "reset_password" => {
            let pw = crate::secrets::generate_password();
            auth.set_password(&name, pw.expose()).await.map(|()| {
                new_password = Some(pw);
                format!("New password for {name}:")
            })
        }
        "role" => match Role::parse(&form.role) {
            Some(r) => auth.set_role(&name, r).await.map(|()| format!("{name} is now {r}.")),
            None => Err(anyhow::anyhow!("unknown role")),
        },
        _ => Err(anyhow::anyhow!("unknown change")),
    };
    match result {
        Ok(msg) => {
            let _ = state
                .store
                .record_activity(
                    Level::Warning,
                    &p.actor(),
                    None,
                    &format!("{} changed user {name}: {}", p.actor(), form.change),
                    json!({}),
                )
                .await;
            match new_password {
                Some(pw) => shown_once(&state, p, "New password", &msg, pw.expose(), "/settings"),
                None => Ok(redirect_msg("/settings", true, &msg)),
            }
        }
        Err(e) => Ok(redirect_msg("/settings", false, &format!("{e:#}"))),
    }
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    _csrf: String,
    name: String,
    role: String,
}

async fn create_token(state: web::Data<AppState>, user: UiUser, form: web::Form<TokenForm>) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    let Some(role) = Role::parse(&form.role) else { return Ok(redirect_msg("/settings", false, "Unknown role.")) };
    match state.auth.create_token(form.name.trim(), role, &p.actor()).await {
        Ok(token) => {
            let _ = state
                .store
                .record_activity(
                    Level::Warning,
                    &p.actor(),
                    None,
                    &format!("{} created API token {}", p.actor(), form.name.trim()),
                    json!({}),
                )
                .await;
            shown_once(&state, p, "API token created", &format!("Token {}:", form.name.trim()), &token, "/settings")
        }
        Err(e) => Ok(redirect_msg("/settings", false, &format!("{e:#}"))),
    }
}

async fn revoke_token(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    state.auth.revoke_token(&TokenId::from(id.into_inner())).await.map_err(anyhow_internal)?;
    let _ = state
        .store
        .record_activity(Level::Warning, &p.actor(), None, &format!("{} revoked an API token", p.actor()), json!({}))
        .await;
    Ok(redirect_msg("/settings", true, "Token revoked."))
}

async fn test_smtp(state: web::Data<AppState>, user: UiUser, form: web::Form<CsrfForm>) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    use crate::notice::{Notify, NotifyKind, Severity};
    let sent = state
        .handles
        .notifier
        .send(Notify {
            kind: NotifyKind::Test,
            severity: Severity::Info,
            title: "vmauto test notification".into(),
            body: format!("{} asked for a test message from the settings page.", p.actor()),
            subject: None,
            portal_url: None,
        })
        .await;
    match sent {
        Ok(_) => Ok(redirect_msg(
            "/settings",
            true,
            "Test notification sent; check the admin mailbox and the notification centre.",
        )),
        Err(e) => Ok(redirect_msg("/settings", false, &format!("The notifier is not running: {e}"))),
    }
}

async fn save_settings(
    state: web::Data<AppState>,
    user: UiUser,
    form: web::Form<std::collections::BTreeMap<String, String>>,
) -> Page {
    let p = user.require(Role::Admin)?;
    let mut form = form.into_inner();
    check_csrf(p, &form.remove("_csrf").unwrap_or_default())?;
    match crate::settings::change(&state.store, &state.sealer, &state.config, &form, &p.actor()).await {
        Ok(changed) => Ok(redirect_msg("/settings", true, &crate::settings::change_message(&changed))),
        Err(e) => Ok(redirect_msg("/settings", false, &format!("{e:#}"))),
    }
}
