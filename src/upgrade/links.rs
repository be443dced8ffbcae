//! Upgrade links: `/upgrade/{token}` lets the customer of one VPS buy an upgrade.
//!
//! A token is 128 random bits and an HMAC-SHA256 tag over them (each base64url, joined by
//! `.`), keyed by a key derived from the appliance key: a forged or mistyped token is
//! refused before the store is asked. The token itself is never stored: the `upgrade_link`
//! row's id is the SHA-256 of its random part, so a copy of the store (or Stripe's metadata,
//! which carries the row id) opens nothing. A link expires after `stripe.link_ttl_hours`,
//! can be revoked, and is used up by the first paid upgrade.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::db::Store;
use crate::db::models::payment::PaymentId;
use crate::lifecycle::{Level, VpsId};
use crate::secrets::Sealer;

pub use crate::db::models::upgrade_link::{Link, LinkId};

/// The purpose the link-signing key is derived for.
const KEY_PURPOSE: &str = "upgrade-link v1";
/// Encoded length of each half of a token (16 bytes, base64url without padding).
const HALF_LEN: usize = 22;

type HmacSha256 = Hmac<Sha256>;

/// An upgrade link token as the customer sees it; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkToken(String);

impl std::fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkToken(***)")
    }
}

fn tag(sealer: &Sealer, what: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(&sealer.derive_key(KEY_PURPOSE)).expect("HMAC takes any key");
    mac.update(what);
    mac.finalize().into_bytes().into()
}

impl LinkToken {
    /// A fresh random, signed token.
    pub fn generate(sealer: &Sealer) -> Self {
        let random: [u8; 16] = rand::random();
        let r = B64URL.encode(random);
        let sig = B64URL.encode(&tag(sealer, r.as_bytes())[..16]);
        Self(format!("{r}.{sig}"))
    }

    /// Accepts only a well-formed token whose tag is right (anything else is simply unknown).
    pub fn parse(sealer: &Sealer, s: &str) -> Option<Self> {
        let (r, sig) = s.split_once('.')?;
        let shaped =
            |p: &str| p.len() == HALF_LEN && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !shaped(r) || !shaped(sig) {
            return None;
        }
        let expected = B64URL.encode(&tag(sealer, r.as_bytes())[..16]);
        bool::from(expected.as_bytes().ct_eq(sig.as_bytes())).then(|| Self(s.to_string()))
    }

    /// The token for a URL; call only where the link is built.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The `upgrade_link` record id: hex SHA-256 of the random part.
    pub fn id(&self) -> LinkId {
        let r = self.0.split('.').next().unwrap_or_default();
        LinkId::new(hex::encode(Sha256::digest(r.as_bytes())))
    }
}

/// The hidden form field that proves a pay request comes from the link's own page.
pub fn form_token(sealer: &Sealer, link_id: &LinkId) -> String {
    B64URL.encode(&tag(sealer, format!("form\0{link_id}").as_bytes())[..16])
}

/// Whether `presented` is the form token of `link_id` (constant time).
pub fn check_form_token(sealer: &Sealer, link_id: &LinkId, presented: &str) -> bool {
    bool::from(form_token(sealer, link_id).as_bytes().ct_eq(presented.as_bytes()))
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
    let vps = store.vps(vps_id).await?.with_context(|| format!("there is no VPS {vps_id}"))?;
    if !vps.state.is_live() {
        bail!("VPS {vps_id} is {}; an upgrade link needs a live VPS", vps.state.as_str());
    }
    let token = LinkToken::generate(sealer);
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
    fn tokens_are_signed_random_and_hide_nothing_in_their_id() {
        let s = Sealer::new([3; 32]);
        let a = LinkToken::generate(&s);
        let b = LinkToken::generate(&s);
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 2 * HALF_LEN + 1);
        assert_eq!(LinkToken::parse(&s, a.expose()), Some(a.clone()));
        assert!(LinkToken::parse(&Sealer::new([4; 32]), a.expose()).is_none(), "another appliance key");
        let mut forged = a.expose().to_string();
        forged.replace_range(0..1, if forged.starts_with('A') { "B" } else { "A" });
        assert!(LinkToken::parse(&s, &forged).is_none(), "a changed random part fails the tag");
        assert!(LinkToken::parse(&s, "short.token").is_none());
        assert!(!a.id().as_str().contains(a.expose().split('.').next().expect("random part")));
        assert_eq!(a.id().as_str().len(), 64);
        assert!(!format!("{a:?}").contains(a.expose()));
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
