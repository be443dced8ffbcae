//! Notification channels besides the UI: admin alert emails, the customer's "your VPS is
//! ready" email with a one-time reveal link, and outgoing signed webhooks.
//!
//! [`Channels::dispatch`] starts every delivery a notification calls for as its own task
//! and returns at once, so the Notifier's mailbox never waits on an SMTP server or a webhook
//! receiver. Each delivery retries with capped back-off and records every attempt
//! ([`delivery`]); one that gives up is logged as an error.
//!
//! - [`templates`]: the handlebars registry (embedded `templates/`, strict mode).
//! - [`email`]: the SMTP transport.
//! - [`webhook`]: payload, HMAC-SHA256 signature, one POST.
//! - [`reveal`]: one-time links that show a VPS's root password once.
//! - [`delivery`]: attempts, back-off, attempt records.

pub mod delivery;
pub mod email;
pub mod reveal;
pub mod templates;
pub mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use self::delivery::Delivery;
use self::email::{Email, Mailer};
use self::templates::Templates;
use crate::config::Config;
use crate::db::Store;
use crate::db::models::vps::VpsId;
use crate::notice::{Notify, NotifyKind, Severity};

/// The context of `email/alert.{txt,html}`.
#[derive(Debug, Serialize)]
struct AlertEmail<'a> {
    subject_line: &'a str,
    kind: &'a str,
    severity: &'a str,
    critical: bool,
    title: &'a str,
    body: &'a str,
    subject: Option<&'a str>,
    at: String,
    public_url: &'a str,
}

/// The context of `email/vps_ready.{txt,html}`.
#[derive(Serialize)]
struct VpsReadyEmail<'a> {
    subject_line: &'a str,
    customer_name: &'a str,
    vps_name: &'a str,
    ips: &'a [String],
    link: &'a str,
    /// An upgrade link, when `stripe.link_in_ready_email` is on.
    upgrade_link: Option<String>,
    /// The customer's portal link, when `portal.enabled`.
    portal_link: Option<&'a str>,
    expires_hours: u64,
    expires_at: String,
    public_url: &'a str,
}

/// Everything deliveries need; shared by the tasks of one Notifier.
#[derive(Debug)]
pub struct Channels {
    store: Store,
    config: Arc<Config>,
    templates: Arc<Templates>,
    /// None when SMTP is off.
    mailer: Option<Mailer>,
    http: reqwest::Client,
    /// Deliveries running now (graceful shutdown waits for them).
    in_flight: Arc<AtomicUsize>,
}

/// Counts a delivery as running until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A kind's stable snake_case name.
pub fn kind_name(kind: NotifyKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

impl Channels {
    /// Builds the channels from the configuration. Fails when SMTP is on but cannot be set
    /// up (a bad `smtp.from`), or a template does not parse.
    pub fn new(store: Store, config: Arc<Config>) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(config.notify.timeout_secs.max(1));
        let mailer = if config.smtp.enabled { Some(Mailer::new(&config.smtp, timeout)?) } else { None };
        Ok(Self {
            store,
            templates: Templates::load()?,
            mailer,
            http: webhook::client(timeout),
            config,
            in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Starts every delivery `n` calls for, each as its own task, and returns at once. A
    /// notice for the customer gets their portal link first, when `portal.enabled`.
    pub fn dispatch(self: &Arc<Self>, n: &Notify) {
        if n.kind.is_for_customer()
            && self.config.portal.enabled
            && n.portal_url.is_none()
            && let Some(vps) = n.subject.as_deref().and_then(|s| s.strip_prefix("vps:"))
        {
            let (this, vps, mut n) = (self.clone(), VpsId::from(vps), n.clone());
            let guard = InFlight::new(&self.in_flight);
            actix_rt::spawn(async move {
                let _guard = guard;
                n.portal_url = Some(this.portal_link(&vps).await.unwrap_or_default());
                this.deliver(&n);
            });
            return;
        }
        self.deliver(n);
    }

    /// A portal link for a customer notice; a failure only loses the link.
    async fn portal_link(&self, vps: &VpsId) -> Option<String> {
        let issued = match crate::secrets::Sealer::from_file(&self.config.key_file()) {
            Ok(sealer) => crate::portal::issue(&self.store, &self.config, &sealer, vps, "system").await,
            Err(e) => Err(e),
        };
        match issued {
            Ok(l) => Some(l.url),
            Err(e) => {
                tracing::warn!(vps = %vps, error = %format!("{e:#}"), "no portal link for the customer's notice");
                None
            }
        }
    }

    fn deliver(self: &Arc<Self>, n: &Notify) {
        let kind = kind_name(n.kind);
        let nc = &self.config.notify;
        if self.mailer.is_some() && nc.email_kinds.contains(&n.kind) && !self.config.smtp.admin_recipients.is_empty() {
            let (this, n, kind) = (self.clone(), n.clone(), kind.clone());
            let guard = InFlight::new(&self.in_flight);
            actix_rt::spawn(async move {
                this.admin_email(&n, &kind).await;
                drop(guard);
            });
        }
        if !nc.webhook_urls.is_empty() && nc.webhook_kinds.contains(&n.kind) && !nc.webhook_secret.is_empty() {
            let created_at = Utc::now().to_rfc3339();
            let delivery = uuid::Uuid::new_v4().to_string();
            match serde_json::to_vec(&webhook::Payload::new(&delivery, n, &created_at)) {
                Ok(body) => {
                    let body: Arc<[u8]> = body.into();
                    for url in &nc.webhook_urls {
                        let (this, url, body, kind_s) = (self.clone(), url.clone(), body.clone(), kind.clone());
                        let (delivery, kind) = (delivery.clone(), n.kind);
                        let guard = InFlight::new(&self.in_flight);
                        actix_rt::spawn(async move {
                            this.webhook(url, delivery, kind, kind_s, body).await;
                            drop(guard);
                        });
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot serialize an outgoing webhook"),
            }
        }
        if n.kind == NotifyKind::UpgradeApplied
            && let Some(vps) = n.subject.as_deref().and_then(|s| s.strip_prefix("vps:"))
        {
            let (this, vps) = (self.clone(), VpsId::from(vps));
            let guard = InFlight::new(&self.in_flight);
            actix_rt::spawn(async move {
                let _guard = guard;
                if let Err(e) = this.customer_upgrade_applied(&vps).await {
                    tracing::error!(vps = %vps, error = %format!("{e:#}"), "the customer's upgrade email was not sent");
                }
            });
        }
        if n.kind == NotifyKind::VpsReady
            && let Some(vps) = n.subject.as_deref().and_then(|s| s.strip_prefix("vps:"))
        {
            let (this, vps, portal) = (self.clone(), VpsId::from(vps), n.portal_url.clone().filter(|u| !u.is_empty()));
            let guard = InFlight::new(&self.in_flight);
            actix_rt::spawn(async move {
                let _guard = guard;
                if let Err(e) = this.customer_vps_ready(&vps, portal.as_deref()).await {
                    tracing::error!(vps = %vps, error = %format!("{e:#}"), "the customer's VPS-ready email was not sent");
                }
            });
        }
        if matches!(n.kind, NotifyKind::CustomerWarning | NotifyKind::DeletionReminder)
            && let Some(vps) = n.subject.as_deref().and_then(|s| s.strip_prefix("vps:"))
        {
            let (this, vps, reminder) = (self.clone(), VpsId::from(vps), n.kind == NotifyKind::DeletionReminder);
            let portal = n.portal_url.clone().filter(|u| !u.is_empty());
            let guard = InFlight::new(&self.in_flight);
            actix_rt::spawn(async move {
                let _guard = guard;
                if let Err(e) = this.customer_warning(&vps, reminder, portal.as_deref()).await {
                    tracing::error!(vps = %vps, error = %format!("{e:#}"), "the customer's warning email was not sent");
                }
            });
        }
    }

    /// Deliveries running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until no delivery runs, or `timeout` passes; returns how many still run.
    pub async fn drain(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.in_flight()
    }

    fn retry_max(&self) -> Duration {
        Duration::from_secs(self.config.notify.retry_max_secs.max(1))
    }

    async fn admin_email(&self, n: &Notify, kind: &str) {
        let subject_line = format!("[vmauto] {}", n.title);
        let ctx = AlertEmail {
            subject_line: &subject_line,
            kind,
            severity: severity_name(n.severity),
            critical: n.severity == Severity::Critical,
            title: &n.title,
            body: &n.body,
            subject: n.subject.as_deref(),
            at: Utc::now().format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            public_url: &self.config.server.public_url,
        };
        let email =
            match self.render("email/alert", &ctx, self.config.smtp.admin_recipients.clone(), subject_line.clone()) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(kind, error = %format!("{e:#}"), "cannot render the alert email");
                    return;
                }
            };
        let d = Delivery {
            id: uuid::Uuid::new_v4().to_string(),
            channel: "email",
            target: email.to.join(", "),
            kind: kind.to_string(),
        };
        self.send_email(&d, &email).await;
    }

    async fn customer_vps_ready(&self, vps: &VpsId, portal_link: Option<&str>) -> anyhow::Result<()> {
        // Most appliances email no customer: then the VPS row is not read at all.
        if !self.config.sources.values().any(|s| s.customer_email) {
            return Ok(());
        }
        let v = self.store.vps_contact(vps).await?.context("the VPS row is missing")?;
        let source = v.source.unwrap_or_default();
        if !self.config.sources.get(&source).is_some_and(|s| s.customer_email) {
            return Ok(());
        }
        let to = v.customer_email.filter(|e| !e.trim().is_empty()).context("the VPS has no customer email")?;
        if self.mailer.is_none() {
            anyhow::bail!("sources.{source}.customer_email is on but smtp.enabled is false");
        }
        let hours = self.config.notify.reveal_link_hours;
        let expires_at = Utc::now() + chrono::Duration::hours(i64::try_from(hours).unwrap_or(i64::MAX / 3_600_000));
        let token = reveal::create(&self.store, vps, expires_at).await?;
        let link = format!("{}/reveal/{}", self.config.server.public_url.trim_end_matches('/'), token.expose());
        let vps_name = v.name.unwrap_or_else(|| vps.to_string());
        let subject_line = format!("Your server {vps_name} is ready");
        let upgrade_link = self.upgrade_link(vps).await;
        let ctx = VpsReadyEmail {
            subject_line: &subject_line,
            customer_name: v.customer_name.as_deref().unwrap_or("there"),
            vps_name: &vps_name,
            ips: &v.ips,
            link: &link,
            upgrade_link,
            portal_link,
            expires_hours: hours,
            expires_at: expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            public_url: &self.config.server.public_url,
        };
        let email = self.render("email/vps_ready", &ctx, vec![to.clone()], subject_line.clone())?;
        let d = Delivery {
            id: uuid::Uuid::new_v4().to_string(),
            channel: "email",
            target: to,
            kind: "customer_vps_ready".into(),
        };
        self.send_email(&d, &email).await;
        Ok(())
    }

    /// Tells the customer what a cancellation scheduled (or, `reminder`, that the deletion is
    /// near), when the source emails its customers and SMTP is on.
    async fn customer_warning(&self, vps: &VpsId, reminder: bool, portal_link: Option<&str>) -> anyhow::Result<()> {
        let v = self.store.warned_vps(vps).await?.context("the VPS row is missing")?;
        let source = v.source.clone().unwrap_or_default();
        if !self.config.sources.get(&source).is_some_and(|s| s.customer_email) || self.mailer.is_none() {
            return Ok(());
        }
        let Some(to) = v.customer_email.clone().filter(|e| !e.trim().is_empty()) else { return Ok(()) };
        let vps_name = v.name.clone().unwrap_or_else(|| vps.to_string());
        let deletion_at = v.delete_after.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string());
        let subject_line = match (reminder, &deletion_at) {
            (true, Some(at)) => format!("Reminder: your server {vps_name} will be deleted on {at}"),
            (false, Some(at)) => format!("Your server {vps_name} is suspended and will be deleted on {at}"),
            (_, None) => format!("Your server {vps_name} is being deleted"),
        };
        let ctx = json!({
            "subject_line": subject_line, "customer_name": v.customer_name.as_deref().unwrap_or("there"),
            "vps_name": vps_name, "reminder": reminder, "deletion_at": deletion_at,
            "portal_link": portal_link, "public_url": self.config.server.public_url,
        });
        let email = self.render("email/customer_warning", &ctx, vec![to.clone()], subject_line.clone())?;
        let kind = if reminder { "customer_deletion_reminder" } else { "customer_warning" };
        let d = Delivery { id: uuid::Uuid::new_v4().to_string(), channel: "email", target: to, kind: kind.into() };
        self.send_email(&d, &email).await;
        Ok(())
    }

    /// Tells the customer their paid upgrade is applied (when SMTP is on and the VPS has an
    /// email address; upgrades are paid by the customer, so no source switch is needed).
    async fn customer_upgrade_applied(&self, vps: &VpsId) -> anyhow::Result<()> {
        if self.mailer.is_none() {
            return Ok(());
        }
        let v = self.store.upgraded_vps(vps).await?.context("the VPS row is missing")?;
        let Some(to) = v.customer_email.filter(|e| !e.trim().is_empty()) else { return Ok(()) };
        let vps_name = v.name.unwrap_or_else(|| vps.to_string());
        let subject_line = format!("Your server {vps_name} has been upgraded");
        let ctx = json!({
            "subject_line": subject_line, "customer_name": v.customer_name.as_deref().unwrap_or("there"),
            "vps_name": vps_name, "cores": v.spec.cores, "memory_gb": v.spec.memory_mb.div_ceil(1024),
            "disk_gb": v.spec.disk_gb, "public_url": self.config.server.public_url,
        });
        let email = self.render("email/upgrade_applied", &ctx, vec![to.clone()], subject_line.clone())?;
        let d = Delivery {
            id: uuid::Uuid::new_v4().to_string(),
            channel: "email",
            target: to,
            kind: "customer_upgrade_applied".into(),
        };
        self.send_email(&d, &email).await;
        Ok(())
    }

    /// An upgrade link for the ready email, when configured; a failure only loses the link.
    async fn upgrade_link(&self, vps: &VpsId) -> Option<String> {
        let st = &self.config.stripe;
        if !(st.enabled && st.link_in_ready_email) {
            return None;
        }
        let issued = match crate::secrets::Sealer::from_file(&self.config.key_file()) {
            Ok(sealer) => crate::upgrade::issue_link(&self.store, &self.config, &sealer, vps, "email").await,
            Err(e) => Err(e),
        };
        match issued {
            Ok(l) => Some(l.url),
            Err(e) => {
                tracing::warn!(vps = %vps, error = %format!("{e:#}"), "no upgrade link in the ready email");
                None
            }
        }
    }

    fn render<T: Serialize>(&self, base: &str, ctx: &T, to: Vec<String>, subject: String) -> anyhow::Result<Email> {
        let text = self.templates.render(&format!("{base}.txt"), ctx)?;
        let html = self.templates.render(&format!("{base}.html"), ctx)?;
        Ok(Email { to, subject, text, html })
    }

    async fn send_email(&self, d: &Delivery, email: &Email) {
        let Some(mailer) = &self.mailer else { return };
        let n = self.config.notify.max_attempts;
        delivery::run(&self.store, d, n, self.retry_max(), |_| async {
            let message = mailer.message(email)?;
            mailer.send_once(message).await
        })
        .await;
    }

    async fn webhook(&self, url: String, id: String, kind: NotifyKind, kind_s: String, body: Arc<[u8]>) {
        let d = Delivery { id: id.clone(), channel: "webhook", target: redact_url(&url), kind: kind_s };
        let secret = &self.config.notify.webhook_secret;
        let n = self.config.notify.max_attempts;
        delivery::run(&self.store, &d, n, self.retry_max(), |_| {
            webhook::post_once(&self.http, &url, secret, &id, kind, &body)
        })
        .await;
    }
}

/// A URL without its query and credentials (they may carry tokens), for records and logs.
fn redact_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut p) => {
            p.set_query(None);
            let _ = p.set_password(None);
            let _ = p.set_username("");
            p.to_string()
        }
        Err(_) => "<invalid url>".into(),
    }
}
