//! Settings an admin edits in the web UI: stored in the store (secrets sealed with the
//! appliance key) and applied over `appliance.toml` and the environment at the next start,
//! through the same validation as the file.
//!
//! Only the keys in [`EDITABLE`] can be set this way; everything else stays in the file. The
//! UI (Settings), the JSON API (`GET`/`PUT /api/v1/settings`) and the CLI (`vmauto settings
//! list|set`) show them through [`views`] and change them through [`change`].

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde_json::json;

use crate::config::{Config, Secret};
use crate::db::Store;
use crate::secrets::Sealer;

/// How a setting's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Number,
    Text,
    /// Comma-separated.
    List,
    /// Write-only: stored sealed, never shown.
    Secret,
    /// Comma-separated secrets.
    SecretList,
}

/// `(key, kind, label)` of every setting the UI may change.
pub const EDITABLE: &[(&str, Kind, &str)] = &[
    ("policy.grace_days", Kind::Number, "Grace days before deletion"),
    ("policy.max_destructive_per_hour", Kind::Number, "Guard: suspensions/deletions per hour"),
    ("policy.warn_before_delete_hours", Kind::Number, "Remind customers this many hours before a deletion"),
    ("portal.enabled", Kind::Text, "Customer portal links in customer notices (true/false)"),
    ("portal.link_ttl_days", Kind::Number, "Days a portal link stays valid"),
    ("portal.requests_per_minute", Kind::Number, "Portal requests one link may make in a minute"),
    ("portal.console_minutes", Kind::Number, "Minutes a customer's console session may stay open"),
    ("smtp.host", Kind::Text, "SMTP server"),
    ("smtp.port", Kind::Number, "SMTP port"),
    ("smtp.username", Kind::Text, "SMTP user"),
    ("smtp.password", Kind::Secret, "SMTP password"),
    ("smtp.from", Kind::Text, "Sender address"),
    ("smtp.admin_recipients", Kind::List, "Admin recipients"),
    ("notify.webhook_urls", Kind::List, "Outgoing webhook URLs"),
    ("notify.webhook_secret", Kind::Secret, "Outgoing webhook signing secret"),
    ("stripe.secret_key", Kind::Secret, "Stripe secret key"),
    ("stripe.webhook_secrets", Kind::SecretList, "Stripe webhook signing secrets"),
    ("stripe.restore_price", Kind::Number, "Price to restore a lapsed VPS from the portal (cents; 0: not offered)"),
];

/// One editable setting as the UI, the API and the CLI show it: secrets only say whether
/// they are set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SettingView {
    pub key: String,
    pub label: String,
    /// `number`, `text`, `list` (comma-separated), `secret` or `secret_list`.
    pub kind: String,
    pub secret: bool,
    /// The value in effect (empty for secrets).
    pub value: String,
    /// For secrets: whether one is in effect.
    pub is_set: bool,
    /// Whether a value saved here (not the file) is in effect.
    pub saved: bool,
    /// A value saved here that is not in effect yet (it is at the next start); never for
    /// secrets.
    pub pending: Option<String>,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::Text => "text",
            Self::List => "list",
            Self::Secret => "secret",
            Self::SecretList => "secret_list",
        }
    }
}

/// Every editable setting with the value `c` holds (`stored`: what [`stored`] answers).
pub fn views(c: &Config, stored: &BTreeMap<String, String>) -> Vec<SettingView> {
    EDITABLE
        .iter()
        .map(|(key, kind, label)| {
            let secret = matches!(kind, Kind::Secret | Kind::SecretList);
            let value = current(c, key);
            let pending = stored.get(*key).filter(|s| !secret && **s != value).cloned();
            SettingView {
                key: (*key).to_string(),
                label: (*label).to_string(),
                kind: kind.label().to_string(),
                secret,
                is_set: secret && !value.is_empty(),
                value: if secret { String::new() } else { value },
                saved: stored.contains_key(*key),
                pending,
            }
        })
        .collect()
}

/// [`save`], then an activity entry naming who changed which keys (never their values).
/// Answers the keys that changed; they take effect at the next start.
pub async fn change(
    store: &Store,
    sealer: &Sealer,
    current: &Config,
    changes: &BTreeMap<String, String>,
    actor: &str,
) -> anyhow::Result<Vec<String>> {
    let changed = save(store, sealer, current, changes).await?;
    if !changed.is_empty() {
        let _ = store
            .record_activity(
                crate::lifecycle::Level::Warning,
                actor,
                None,
                &format!("{actor} changed settings: {}", changed.join(", ")),
                json!({ "keys": changed }),
            )
            .await;
    }
    Ok(changed)
}

/// What [`change`] answers, in words for a person.
pub fn change_message(changed: &[String]) -> String {
    if changed.is_empty() {
        "Nothing changed.".to_string()
    } else {
        format!("Saved {}. They take effect when vmauto restarts (systemctl restart vmauto).", changed.join(", "))
    }
}

/// What a sealed setting is bound to (see `secrets`).
fn place(key: &str) -> String {
    format!("setting:{key}")
}

fn kind_of(key: &str) -> Option<Kind> {
    EDITABLE.iter().find(|(k, _, _)| *k == key).map(|(_, kind, _)| *kind)
}

fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Sets one key on `config` from its text.
fn set(config: &mut Config, key: &str, value: &str) -> anyhow::Result<()> {
    let number = || value.trim().parse::<u64>().with_context(|| format!("{key}: {value:?} is not a whole number"));
    let small = |n: u64| u32::try_from(n).with_context(|| format!("{key}: {n} is too large"));
    match key {
        "policy.grace_days" => config.policy.grace_days = small(number()?)?,
        "policy.max_destructive_per_hour" => config.policy.max_destructive_per_hour = small(number()?)?,
        "policy.warn_before_delete_hours" => config.policy.warn_before_delete_hours = small(number()?)?,
        "portal.enabled" => {
            config.portal.enabled = match value.trim() {
                "true" | "on" | "yes" | "1" => true,
                "false" | "off" | "no" | "0" => false,
                other => bail!("{key}: {other:?} is not true or false"),
            }
        }
        "portal.link_ttl_days" => config.portal.link_ttl_days = small(number()?)?,
        "portal.requests_per_minute" => config.portal.requests_per_minute = small(number()?)?,
        "portal.console_minutes" => config.portal.console_minutes = small(number()?)?,
        "smtp.host" => config.smtp.host = value.trim().to_string(),
        "smtp.port" => config.smtp.port = u16::try_from(number()?).with_context(|| format!("{key}: not a port"))?,
        "smtp.username" => config.smtp.username = value.trim().to_string(),
        "smtp.password" => config.smtp.password = Secret::new(value),
        "smtp.from" => config.smtp.from = value.trim().to_string(),
        "smtp.admin_recipients" => config.smtp.admin_recipients = list(value),
        "notify.webhook_urls" => config.notify.webhook_urls = list(value),
        "notify.webhook_secret" => config.notify.webhook_secret = Secret::new(value),
        "stripe.secret_key" => config.stripe.secret_key = Secret::new(value),
        "stripe.webhook_secrets" => config.stripe.webhook_secrets = list(value).into_iter().map(Secret::new).collect(),
        "stripe.restore_price" => config.stripe.restore_price = number()?,
        _ => bail!("{key} cannot be changed in the UI; set it in appliance.toml"),
    }
    Ok(())
}

/// The running value of an editable setting, as text (secrets: their text, for "is set").
pub fn current(c: &Config, key: &str) -> String {
    match key {
        "policy.grace_days" => c.policy.grace_days.to_string(),
        "policy.max_destructive_per_hour" => c.policy.max_destructive_per_hour.to_string(),
        "policy.warn_before_delete_hours" => c.policy.warn_before_delete_hours.to_string(),
        "portal.enabled" => c.portal.enabled.to_string(),
        "portal.link_ttl_days" => c.portal.link_ttl_days.to_string(),
        "portal.requests_per_minute" => c.portal.requests_per_minute.to_string(),
        "portal.console_minutes" => c.portal.console_minutes.to_string(),
        "stripe.restore_price" => c.stripe.restore_price.to_string(),
        "smtp.host" => c.smtp.host.clone(),
        "smtp.port" => c.smtp.port.to_string(),
        "smtp.username" => c.smtp.username.clone(),
        "smtp.password" => c.smtp.password.expose().to_string(),
        "smtp.from" => c.smtp.from.clone(),
        "smtp.admin_recipients" => c.smtp.admin_recipients.join(", "),
        "notify.webhook_urls" => c.notify.webhook_urls.join(", "),
        "notify.webhook_secret" => c.notify.webhook_secret.expose().to_string(),
        "stripe.secret_key" => c.stripe.secret_key.expose().to_string(),
        "stripe.webhook_secrets" => {
            if c.stripe.webhook_secrets.is_empty() {
                String::new()
            } else {
                "set".into()
            }
        }
        _ => String::new(),
    }
}

/// The stored settings: key → text (secrets still sealed).
pub async fn stored(store: &Store) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(store.ui_overrides().await)
}

/// Checks and stores new values (a secret left empty keeps its stored value). Answers the keys
/// that changed. `current` is the running configuration, used to check the result.
pub async fn save(
    store: &Store,
    sealer: &Sealer,
    current: &Config,
    changes: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<String>> {
    // The stored SMTP password is never sent to another server than the one it was given for.
    if let Some(host) = changes.get("smtp.host").map(|h| h.trim())
        && host != current.smtp.host.trim()
        && changes.get("smtp.password").is_none_or(|p| p.is_empty())
        && !current.smtp.password.is_empty()
    {
        bail!(
            "smtp.host changes to {host:?}: enter the SMTP password for that server too (the stored password is not \
             sent to a different server)"
        );
    }
    let mut values = stored(store).await?;
    let mut check = current.clone();
    let mut changed = Vec::new();
    for (key, value) in changes {
        let Some(kind) = kind_of(key) else {
            let keys: Vec<&str> = EDITABLE.iter().map(|(k, _, _)| *k).collect();
            bail!("{key} cannot be changed here; set it in appliance.toml (editable: {})", keys.join(", "))
        };
        let secret = matches!(kind, Kind::Secret | Kind::SecretList);
        if secret && value.is_empty() {
            continue;
        }
        set(&mut check, key, value)?;
        let text =
            if secret { sealer.seal(&Secret::new(value.clone()), &place(key)) } else { value.trim().to_string() };
        if values.get(key) != Some(&text) {
            values.insert(key.clone(), text);
            changed.push(key.clone());
        }
    }
    check.validate().context("these settings are not valid together")?;
    store.save_ui_overrides(&values).await?;
    Ok(changed)
}

/// Applies the stored settings over `config` (at start-up); answers the keys applied.
pub fn apply(config: &mut Config, values: &BTreeMap<String, String>, sealer: &Sealer) -> anyhow::Result<Vec<String>> {
    let mut applied = Vec::new();
    for (key, text) in values {
        let Some(kind) = kind_of(key) else { continue };
        let value = if matches!(kind, Kind::Secret | Kind::SecretList) {
            sealer
                .open(text, &place(key))
                .with_context(|| format!("cannot open the stored {key} (was the appliance key replaced?)"))?
        } else {
            Secret::new(text.clone())
        };
        set(config, key, value.expose())?;
        applied.push(key.clone());
    }
    config.validate().context("the settings saved in the UI are not valid with this configuration")?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_apply_over_the_file_and_refuse_other_keys() {
        let sealer = Sealer::new([3; 32]);
        let mut c = Config::default();
        let values: BTreeMap<String, String> = [
            ("policy.grace_days".to_string(), "9".to_string()),
            ("smtp.admin_recipients".to_string(), "a@x.io, b@x.io".to_string()),
            ("smtp.password".to_string(), sealer.seal(&Secret::new("hunter2"), &place("smtp.password"))),
        ]
        .into_iter()
        .collect();
        let applied = apply(&mut c, &values, &sealer).expect("applies");
        assert_eq!(applied.len(), 3);
        assert_eq!(c.policy.grace_days, 9);
        assert_eq!(c.smtp.admin_recipients, vec!["a@x.io", "b@x.io"]);
        assert_eq!(c.smtp.password.expose(), "hunter2");
        assert!(set(&mut c, "server.listen", "0.0.0.0:1").is_err(), "only editable keys");
        assert!(set(&mut c, "policy.grace_days", "soon").is_err(), "numbers are checked");
    }

    #[tokio::test]
    async fn a_new_smtp_host_needs_its_password_again() {
        let mut c = Config::default();
        c.database.url = "mem://".into();
        let store = Store::open(&c).await.expect("store");
        let sealer = Sealer::new([4; 32]);
        c.smtp.host = "mail.example.com".into();
        c.smtp.password = Secret::new("hunter2");
        let change = |host: &str, pw: &str| -> BTreeMap<String, String> {
            [("smtp.host".to_string(), host.to_string()), ("smtp.password".to_string(), pw.to_string())]
                .into_iter()
                .collect()
        };
        let err = save(&store, &sealer, &c, &change("evil.example.net", "")).await.expect_err("refused");
        assert!(format!("{err:#}").contains("enter the SMTP password"), "{err:#}");
        save(&store, &sealer, &c, &change("mail.example.com", "")).await.expect("the same host keeps the password");
        save(&store, &sealer, &c, &change("smtp2.example.com", "new-secret")).await.expect("with its password");
    }
}
