//! Operator commands that work the same from the CLI on this machine and through the running
//! appliance (`POST /internal/cli`, when the CLI cannot open the embedded store itself): users
//! and API tokens, upgrade links and offers, portal links, settings. Each `execute_*` answers what the CLI
//! prints; `cli` parses them and `http` runs them for a remote CLI.

use anyhow::Context as _;
use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, Clone, Subcommand, serde::Serialize, serde::Deserialize)]
#[serde(tag = "upgrade", rename_all = "snake_case")]
pub enum UpgradeCommand {
    /// Issue an upgrade link for a VPS and print its URL.
    Link {
        /// The VPS id.
        vps: String,
    },
    /// Revoke an upgrade link by its id (printed when it was issued).
    Revoke {
        /// The link id.
        link: String,
    },
    /// List the upgrade offers.
    Offers,
}

#[derive(Debug, Clone, Subcommand, serde::Serialize, serde::Deserialize)]
#[serde(tag = "portal", rename_all = "snake_case")]
pub enum PortalCommand {
    /// Issue a portal link (the customer's own page) for a VPS and print its URL.
    Link {
        /// The VPS id.
        vps: String,
    },
    /// List a VPS's portal links (their ids and states; URLs are shown only when issued).
    Links {
        /// The VPS id.
        vps: String,
    },
    /// Revoke a portal link by its id; its console session ends too.
    Revoke {
        /// The link id.
        link: String,
    },
    /// Renew a portal link for another `portal.link_ttl_days`.
    Renew {
        /// The link id.
        link: String,
    },
}

#[derive(Debug, Clone, Subcommand, serde::Serialize, serde::Deserialize)]
#[serde(tag = "settings", rename_all = "snake_case")]
pub enum SettingsCommand {
    /// Every editable setting and its value in effect (secrets: set or not set).
    List,
    /// Change settings: KEY=VALUE (repeatable). VALUE `-` reads the value from standard input,
    /// so a secret stays out of the shell history and the process list.
    Set {
        #[arg(value_name = "KEY=VALUE", required = true)]
        pairs: Vec<String>,
    },
}

#[derive(Debug, Clone, Subcommand, serde::Serialize, serde::Deserialize)]
#[serde(tag = "admin", rename_all = "snake_case")]
pub enum AdminCommand {
    /// Add a user with a generated password, printed once as `password: …`.
    AddUser {
        username: String,
        #[arg(long, value_enum, default_value = "admin")]
        role: crate::auth::Role,
    },
    /// Give a user a new generated password (printed once); unlocks the account and ends its
    /// sessions.
    ResetPassword { username: String },
    /// Disable a user (their sessions end at once).
    Disable { username: String },
    /// Turn off a user's two-factor login (a lost phone); they can set it up again.
    Reset2fa { username: String },
    /// Enable a disabled user.
    Enable { username: String },
    /// List the users.
    ListUsers,
    /// API tokens: create (printed once), list, revoke. Works while the appliance runs.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Retry a dead operation (as the Retry button does): refused when it would bring a VM
    /// back to a deleted VPS or a cancelled subscription. Works while the appliance runs.
    Retry {
        /// The operation id (shown on the VPS page and by the API).
        operation: String,
    },
}

#[derive(Debug, Clone, Subcommand, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum TokenCommand {
    /// Create a token; it is printed once, as `token: …`.
    Create {
        name: String,
        #[arg(long, value_enum, default_value = "viewer")]
        role: crate::auth::Role,
    },
    /// List the tokens (never their values).
    List,
    /// Revoke a token by its id (from `list`).
    Revoke { id: String },
}

/// Runs a token command against `auth`; answers what the CLI prints.
pub async fn run_tokens(auth: &crate::auth::Auth, command: &TokenCommand) -> anyhow::Result<String> {
    Ok(match command {
        TokenCommand::Create { name, role } => {
            let token = auth.create_token(name, *role, "cli").await?;
            format!("created {role} token {name}; it is shown only now:\ntoken: {token}\n")
        }
        TokenCommand::List => {
            let rows = auth.tokens().await?;
            if rows.is_empty() {
                return Ok("no API tokens; create one with `vmauto admin token create NAME --role viewer`\n".into());
            }
            rows.iter()
                .map(|t| {
                    format!(
                        "{}\t{}\t{}\tcreated {} by {}\tlast used {}{}\n",
                        t.id,
                        t.name,
                        t.role,
                        t.created_at,
                        t.created_by,
                        t.last_used_at.as_deref().unwrap_or("never"),
                        if t.revoked { "\trevoked" } else { "" }
                    )
                })
                .collect()
        }
        TokenCommand::Revoke { id } => {
            anyhow::ensure!(
                auth.tokens().await?.iter().any(|t| t.id == id.as_str()),
                "there is no API token {id} (see `vmauto admin token list`)"
            );
            auth.revoke_token(&crate::auth::TokenId::from(id.as_str())).await?;
            format!("revoked API token {id}\n")
        }
    })
}

/// An operator command that the running appliance can run for the CLI
/// (`POST /internal/cli`), when the CLI cannot open the store itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteCommand {
    Admin(AdminCommand),
    Upgrade(UpgradeCommand),
    Portal(PortalCommand),
    Settings(SettingsCommand),
}

/// Runs an admin command against `auth`; answers what to print.
pub async fn execute_admin(auth: &crate::auth::Auth, command: &AdminCommand) -> anyhow::Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    match command {
        AdminCommand::AddUser { username, role } => {
            let password = crate::secrets::generate_password();
            auth.add_user(username, password.expose(), *role).await?;
            writeln!(out, "added {role} {username}")?;
            writeln!(out, "password: {}", password.expose())?;
        }
        AdminCommand::ResetPassword { username } => {
            let password = crate::secrets::generate_password();
            auth.set_password(username, password.expose()).await?;
            writeln!(out, "new password for {username}; their sessions have ended")?;
            writeln!(out, "password: {}", password.expose())?;
        }
        AdminCommand::Disable { username } => {
            auth.set_disabled(username, true).await?;
            writeln!(out, "disabled {username}; their sessions have ended")?;
        }
        AdminCommand::Reset2fa { username } => {
            auth.reset_totp(username).await?;
            writeln!(out, "two-factor login of {username} is off; they can set it up again under Account")?;
        }
        AdminCommand::Enable { username } => {
            auth.set_disabled(username, false).await?;
            writeln!(out, "enabled {username}")?;
        }
        AdminCommand::Token { command } => out.push_str(&run_tokens(auth, command).await?),
        AdminCommand::Retry { .. } => anyhow::bail!("retry has its own way to the running appliance"),
        AdminCommand::ListUsers => {
            let users = auth.users().await?;
            if users.is_empty() {
                writeln!(out, "no users yet: add one with `vmauto admin add-user <name>`")?;
            }
            for u in users {
                let state = if u.disabled { "disabled" } else { "active" };
                writeln!(
                    out,
                    "{}\t{}\t{}\tlast login {}",
                    u.username,
                    u.role,
                    state,
                    u.last_login_at.as_deref().unwrap_or("never")
                )?;
            }
        }
    }
    Ok(out)
}

/// Runs an upgrade command; answers what to print.
/// Runs a portal-link command; answers what to print.
pub async fn execute_portal(
    store: &crate::db::Store,
    config: &Config,
    sealer: &crate::secrets::Sealer,
    command: &PortalCommand,
) -> anyhow::Result<String> {
    use crate::portal::PortalLinkId;
    use std::fmt::Write;
    let mut out = String::new();
    match command {
        PortalCommand::Link { vps } => {
            let vps = crate::db::models::vps::VpsId::from(vps.as_str());
            let link = crate::portal::issue(store, config, sealer, &vps, "cli").await?;
            writeln!(out, "{}", link.url)?;
            writeln!(out, "link id {}, valid until {}", link.id, link.expires_at.to_rfc3339())?;
        }
        PortalCommand::Links { vps } => {
            let vps = crate::db::models::vps::VpsId::from(vps.as_str());
            let links = store.portal_links_of_vps(&vps).await?;
            if links.is_empty() {
                writeln!(out, "VPS {vps} has no portal links; issue one with `vmauto portal link {vps}`")?;
            }
            let now = chrono::Utc::now();
            for l in links {
                writeln!(
                    out,
                    "{}  {:<8} until {}  issued by {}",
                    l.id,
                    l.state(now),
                    l.expires_at.to_rfc3339(),
                    l.issued_by
                )?;
            }
        }
        PortalCommand::Revoke { link } => {
            let link = PortalLinkId::from(link.as_str());
            if !crate::portal::revoke(store, &link, "cli").await? {
                anyhow::bail!("there is no portal link {link}");
            }
            writeln!(out, "revoked portal link {link}")?;
        }
        PortalCommand::Renew { link } => {
            let link = PortalLinkId::from(link.as_str());
            match crate::portal::renew(store, config, &link, "cli").await? {
                Some(until) => writeln!(out, "portal link {link} valid until {}", until.to_rfc3339())?,
                None => anyhow::bail!("there is no portal link {link}"),
            }
        }
    }
    Ok(out)
}

pub async fn execute_upgrade(
    store: &crate::db::Store,
    config: &Config,
    sealer: &crate::secrets::Sealer,
    command: &UpgradeCommand,
) -> anyhow::Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    crate::upgrade::offers::sync_config_offers(store, config).await?;
    match command {
        UpgradeCommand::Link { vps } => {
            let vps = crate::db::models::vps::VpsId::from(vps.as_str());
            let link = crate::upgrade::issue_link(store, config, sealer, &vps, "cli").await?;
            writeln!(out, "{}", link.url)?;
            writeln!(
                out,
                "link id {} (for `vmauto upgrade revoke`), valid until {}",
                link.id,
                link.expires_at.to_rfc3339()
            )?;
        }
        UpgradeCommand::Revoke { link } => {
            let link = crate::upgrade::links::LinkId::from(link.as_str());
            if !crate::upgrade::revoke_link(store, &link, "cli").await? {
                anyhow::bail!("there is no upgrade link {link}");
            }
            writeln!(out, "revoked upgrade link {link}")?;
        }
        UpgradeCommand::Offers => {
            let offers = crate::upgrade::list_offers(store).await?;
            if offers.is_empty() {
                writeln!(out, "no upgrade offers; declare them as [[stripe.offers]] in appliance.toml")?;
            }
            for o in offers {
                let what = if o.to_template.is_empty() {
                    format!("+{} vCPU, +{} GB memory, +{} GB disk", o.add_cores, o.add_memory_gb, o.add_disk_gb)
                } else {
                    format!("to template {}", o.to_template)
                };
                let from =
                    if o.from_template.is_empty() { "any template".to_string() } else { o.from_template.to_string() };
                writeln!(
                    out,
                    "{}\t{}\t{}\tfrom {from}\t{}\t{}",
                    o.id,
                    if o.enabled { "enabled" } else { "disabled" },
                    o.name,
                    what,
                    crate::upgrade::format_price(o.price, &o.currency)
                )?;
            }
        }
    }
    Ok(out)
}

/// Runs a settings command for `actor`; answers what to print.
pub async fn execute_settings(
    store: &crate::db::Store,
    config: &Config,
    sealer: &crate::secrets::Sealer,
    command: &SettingsCommand,
    actor: &str,
) -> anyhow::Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    match command {
        SettingsCommand::List => {
            let stored = crate::settings::stored(store).await?;
            for v in crate::settings::views(config, &stored) {
                let value = match (v.secret, v.is_set) {
                    (true, true) => "(set, hidden)".to_string(),
                    (true, false) => "(not set)".to_string(),
                    (false, _) => v.value,
                };
                let origin = match &v.pending {
                    Some(p) => format!("saved here: {p}, in effect after a restart"),
                    None if v.saved => "saved here".to_string(),
                    None => "file/default".to_string(),
                };
                writeln!(out, "{}\t{value}\t{origin}\t{}", v.key, v.label)?;
            }
        }
        SettingsCommand::Set { pairs } => {
            let mut changes = std::collections::BTreeMap::new();
            for pair in pairs {
                let (key, value) = pair.split_once('=').with_context(|| format!("{pair:?}: write KEY=VALUE"))?;
                changes.insert(key.trim().to_string(), value.to_string());
            }
            let changed = crate::settings::change(store, sealer, config, &changes, actor).await?;
            writeln!(out, "{}", crate::settings::change_message(&changed))?;
        }
    }
    Ok(out)
}
