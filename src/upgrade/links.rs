//! Upgrade links: `/upgrade/{token}` lets the customer of one VPS buy an upgrade.
//!
//! A token is 128 random bits and an HMAC-SHA256 tag over them (each base64url, joined by
//! `.`), keyed by a key derived from the appliance key: a forged or mistyped token is
//! refused before the store is asked. The token itself is never stored: the `upgrade_link`
//! row's id is the SHA-256 of its random part, so a copy of the store (or Stripe's metadata,
//! which carries the row id) opens nothing. A link expires after `stripe.link_ttl_hours`,
//! can be revoked, and is used up by the first paid upgrade.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::config::Config;
use crate::db::Store;
use crate::db::models::payment::PaymentId;
use crate::lifecycle::{Level, VpsId};
use crate::secrets::Sealer;
use crate::secrets::token::{SignedToken, check_short_tag, short_tag};

pub use crate::db::models::upgrade_link::{Link, LinkId};

/// The purpose the link-signing key is derived for.
const KEY_PURPOSE: &str = "upgrade-link v1";

/// An upgrade link token as the customer sees it; `Debug` hides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkToken(SignedToken);

impl LinkToken {
    /// A fresh random, signed token.
    pub fn generate(sealer: &Sealer) -> Self {
        Self(SignedToken::generate(sealer, KEY_PURPOSE))
    }

    /// Accepts only a well-formed token whose tag is right (anything else is simply unknown).
    pub fn parse(sealer: &Sealer, s: &str) -> Option<Self> {
        SignedToken::parse(sealer, KEY_PURPOSE, s).map(Self)
    }

    /// The token for a URL; call only where the link is built.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The `upgrade_link` record id: hex SHA-256 of the random part.
    pub fn id(&self) -> LinkId {
        LinkId::new(self.0.digest())
    }
}

/// The hidden form field that proves a pay request comes from the link's own page.
pub fn form_token(sealer: &Sealer, link_id: &LinkId) -> String {
    short_tag(sealer, KEY_PURPOSE, format!("form\0{link_id}").as_bytes())
}

/// Whether `presented` is the form token of `link_id` (constant time).
pub fn check_form_token(sealer: &Sealer, link_id: &LinkId, presented: &str) -> bool {
    check_short_tag(sealer, KEY_PURPOSE, format!("form\0{link_id}").as_bytes(), presented)
}

// The row is `db::models::upgrade_link::Link`; what its fields make of a link is decided here.
impl Link {
    /// `active`, `used`, `revoked` or `expired` at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        if self.used_session.is_some() {
            "used"
        } else if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= now {
            "expired"
        } else {
            "active"
        }
    }
}

/// What a token opens.
#[derive(Debug, Clone)]
pub enum LinkStatus {
    Active(Link),
    /// Paid for; the progress page still answers.
    Used(Link),
    Revoked(Link),
    Expired(Link),
    Unknown,
}

/// A link just issued.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedLink {
    /// The `upgrade_link` record id (for revoking; not a secret).
    pub id: LinkId,
    pub vps: VpsId,
    /// The URL to give the customer (holds the token).
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Issues an upgrade link for `vps_id` (which must exist and not be deleted), valid for
/// `stripe.link_ttl_hours`; `issued_by` is `admin:<user>`, `api:<token>`, `cli`, `email`…
pub async fn issue_link(
    store: &Store,
    config: &Config,
    sealer: &Sealer,
    vps_id: &VpsId,
    issued_by: &str,
) -> anyhow::Result<IssuedLink> {
    issue_token(store, config, vps_id, issued_by, LinkToken::generate(sealer)).await
}

/// The upgrade link the customer's portal link `portal_link` opens for `vps_id`. Derived
/// from the portal link and a generation number, so every "See upgrades" answers the same
/// link until it is used, revoked or within an hour of its expiry, and then the next one:
/// rows grow with paid upgrades and expiries, never with clicks.
pub async fn link_for_portal(
    store: &Store,
    config: &Config,
    sealer: &Sealer,
    vps_id: &VpsId,
    portal_link: &str,
    issued_by: &str,
) -> anyhow::Result<IssuedLink> {
    let base = config.server.public_url.trim_end_matches('/');
    for generation in 0..10_000u32 {
        let seed = format!("portal\0{portal_link}\0{generation}");
        let token = LinkToken(SignedToken::derive(sealer, KEY_PURPOSE, seed.as_bytes()));
        match store.upgrade_link(&token.id()).await? {
            None => return issue_token(store, config, vps_id, issued_by, token).await,
            Some(link) if link.state(Utc::now() + chrono::Duration::hours(1)) == "active" => {
                let url = format!("{base}/upgrade/{}", token.expose());
                return Ok(IssuedLink { id: link.id, vps: link.vps, url, expires_at: link.expires_at });
            }
            Some(_) => {}
        }
    }
    bail!("portal link {portal_link} has used up its upgrade links; issue the customer a new portal link")
}

async fn issue_token(
    store: &Store,
    config: &Config,
    vps_id: &VpsId,
    issued_by: &str,
    token: LinkToken,
) -> anyhow::Result<IssuedLink> {
    let vps = store.vps(vps_id).await?.with_context(|| format!("there is no VPS {vps_id}"))?;
    if !vps.state.is_live() {
        bail!("VPS {vps_id} is {}; an upgrade link needs a live VPS", vps.state.as_str());
    }
    let id = token.id();
    let hours = i64::try_from(config.stripe.link_ttl_hours).unwrap_or(i64::MAX / 3_600_000).min(24 * 365 * 10);
    let expires_at = Utc::now() + chrono::Duration::hours(hours);
    store.create_upgrade_link(&id, vps_id, issued_by, expires_at).await?;
    let _ = store
        .record_activity(
            Level::Info,
            issued_by,
            Some(&format!("vps:{vps_id}")),
            "upgrade link issued",
            json!({ "link": id, "expires_at": expires_at.to_rfc3339() }),
        )
        .await;
    let url = format!("{}/upgrade/{}", config.server.public_url.trim_end_matches('/'), token.expose());
    Ok(IssuedLink { id, vps: vps_id.clone(), url, expires_at })
}

/// Revokes a link by its record id; answers false when there is no such link. A paid link
/// stays paid (its upgrade is not undone).
pub async fn revoke_link(store: &Store, link_id: &LinkId, revoked_by: &str) -> anyhow::Result<bool> {
    let Some(link) = link_by_id(store, link_id).await? else { return Ok(false) };
    store.revoke_upgrade_link(link_id, revoked_by).await?;
    let _ = store
        .record_activity(
            Level::Info,
            revoked_by,
            Some(&format!("vps:{}", link.vps)),
            "upgrade link revoked",
            json!({ "link": link_id }),
        )
        .await;
    Ok(true)
}

/// A link by its record id.
pub async fn link_by_id(store: &Store, link_id: &LinkId) -> anyhow::Result<Option<Link>> {
    store.upgrade_link(link_id).await
}

/// The links of a VPS, newest first (for the admin UI).
pub async fn links_of_vps(store: &Store, vps_id: &VpsId) -> anyhow::Result<Vec<Link>> {
    store.upgrade_links_of_vps(vps_id).await
}

/// What `token` opens now.
pub async fn resolve(store: &Store, sealer: &Sealer, token: &str) -> anyhow::Result<(LinkStatus, Option<LinkToken>)> {
    let Some(token) = LinkToken::parse(sealer, token) else { return Ok((LinkStatus::Unknown, None)) };
    let Some(link) = link_by_id(store, &token.id()).await? else { return Ok((LinkStatus::Unknown, None)) };
    let status = match link.state(Utc::now()) {
        "used" => LinkStatus::Used(link),
        "revoked" => LinkStatus::Revoked(link),
        "expired" => LinkStatus::Expired(link),
        _ => LinkStatus::Active(link),
    };
    Ok((status, Some(token)))
}

/// Marks the link used by `session` unless another session used it first. Answers whether
/// `session` is (now) the one that used it.
pub async fn claim_link(store: &Store, link_id: &LinkId, session: &PaymentId) -> anyhow::Result<bool> {
    store.claim_upgrade_link(link_id, session).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_tokens_open_upgrade_links_only() {
        let s = Sealer::new([3; 32]);
        let a = LinkToken::generate(&s);
        assert_eq!(LinkToken::parse(&s, a.expose()), Some(a.clone()));
        let other = SignedToken::generate(&s, "portal-link v1");
        assert!(LinkToken::parse(&s, other.expose()).is_none());
        assert_eq!(a.id().as_str().len(), 64);
    }

    #[test]
    fn form_tokens_belong_to_one_link() {
        let s = Sealer::new([3; 32]);
        let (l1, l2) = (LinkId::from("l1"), LinkId::from("l2"));
        let f = form_token(&s, &l1);
        assert!(check_form_token(&s, &l1, &f));
        assert!(!check_form_token(&s, &l2, &f));
        assert!(!check_form_token(&s, &l1, ""));
    }

    #[test]
    fn link_state_prefers_used_over_revoked_over_expired() {
        let now = Utc::now();
        let mut l = Link {
            id: "l".into(),
            vps: "v".into(),
            issued_by: "t".into(),
            created_at: now,
            expires_at: now + chrono::Duration::hours(1),
            revoked_at: None,
            revoked_by: None,
            used_at: None,
            used_session: None,
        };
        assert_eq!(l.state(now), "active");
        assert_eq!(l.state(now + chrono::Duration::hours(2)), "expired");
        l.revoked_at = Some(now);
        assert_eq!(l.state(now), "revoked");
        l.used_session = Some("cs".into());
        assert_eq!(l.state(now), "used");
    }
}
