//! `[smtp]` and `[notify]`: how admins (and customers) are told.

use serde::{Deserialize, Serialize};

use crate::notice::NotifyKind;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    #[default]
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: String,
    pub password: Secret,
    pub from: String,
    /// Admins who receive alerts.
    pub admin_recipients: Vec<String>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "localhost".into(),
            port: 587,
            tls: SmtpTls::Starttls,
            username: String::new(),
            password: Secret::default(),
            from: "vmauto@localhost".into(),
            admin_recipients: Vec::new(),
        }
    }
}

/// Where notifications go besides the UI: which kinds are emailed to admins, and outgoing
/// signed webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Kinds emailed to `smtp.admin_recipients`.
    pub email_kinds: Vec<NotifyKind>,
    /// URLs that receive every notification of `webhook_kinds` as a signed JSON POST.
    pub webhook_urls: Vec<String>,
    /// Allow `webhook_urls` on loopback, link-local or private addresses (a receiver on this
    /// machine or the local network); refused by default, so a settings change cannot point
    /// vmauto's requests at internal services.
    pub allow_private_webhook_urls: bool,
    /// HMAC-SHA256 key for the `X-Vmauto-Signature` header; required with `webhook_urls`.
    pub webhook_secret: Secret,
    /// Kinds sent to `webhook_urls`.
    pub webhook_kinds: Vec<NotifyKind>,
    /// Attempts per delivery (email or webhook) before it is given up and recorded as failed.
    pub max_attempts: u32,
    /// Cap of the back-off between attempts, in seconds (it starts at one second and doubles).
    pub retry_max_secs: u64,
    /// Seconds one webhook request or SMTP session may take.
    pub timeout_secs: u64,
    /// Hours the one-time link in the customer's "your VPS is ready" email stays valid.
    pub reveal_link_hours: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        use NotifyKind::*;
        Self {
            email_kinds: vec![
                OperationDead,
                EventParked,
                EventFailed,
                BreakerOpen,
                GuardTripped,
                ReconcileFinding,
                PaymentIssue,
            ],
            webhook_urls: Vec::new(),
            allow_private_webhook_urls: false,
            webhook_secret: Secret::default(),
            webhook_kinds: vec![
                VpsReady,
                VpsDeleted,
                CustomerWarning,
                DeletionReminder,
                OperationDead,
                EventParked,
                EventFailed,
                BreakerOpen,
                GuardTripped,
            ],
            max_attempts: 6,
            retry_max_secs: 60,
            timeout_secs: 10,
            reveal_link_hours: 72,
        }
    }
}
