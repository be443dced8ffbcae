//! The customer's portal: `/my/<token>` opens one VPS's own page (power, console, reinstall,
//! a new root password, usage graphs, upgrades, pay-to-restore) for whoever holds the link.
//!
//! Links are issued by an admin (VPS page, `POST /api/v1/vps/{id}/portal-links`,
//! `vmauto portal link VPS-ID`) and, with `portal.enabled`, go out in the "VPS ready" email,
//! the `vps_ready` outgoing webhook and the customer's warnings. A token is a
//! [`SignedToken`] for this purpose only; its row (`portal_link`, keyed by the token's digest)
//! holds the VPS, the expiry (`portal.link_ttl_days`, renewable) and any revocation. Every
//! customer action is an operation with `requested_by = customer:<link id>`.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::config::Config;
use crate::db::Store;
use crate::lifecycle::{Level, VpsId};
use crate::secrets::Sealer;
use crate::secrets::token::{SignedToken, check_short_tag, short_tag};

pub use crate::db::models::portal_link::{PortalLink, PortalLinkId};

/// The purpose the link-signing key is derived for.
const KEY_PURPOSE: &str = "portal-link v1";

/// A portal token as the customer sees it; `Debug` hides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalToken(SignedToken);

impl PortalToken {
    pub fn generate(sealer: &Sealer) -> Self {
        Self(SignedToken::generate(sealer, KEY_PURPOSE))
    }

    /// Accepts only a well-formed token signed for the portal.
    pub fn parse(sealer: &Sealer, s: &str) -> Option<Self> {
        SignedToken::parse(sealer, KEY_PURPOSE, s).map(Self)
    }

    /// The token for a URL; call only where the link is built.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The `portal_link` record id.
    pub fn id(&self) -> PortalLinkId {
        PortalLinkId::new(self.0.digest())
    }
}

/// The hidden field that proves a form was sent from the link's own page.
pub fn form_token(sealer: &Sealer, link: &PortalLinkId) -> String {
    short_tag(sealer, KEY_PURPOSE, format!("form\0{link}").as_bytes())
}

/// Whether `presented` is the form token of `link` (constant time).
pub fn check_form_token(sealer: &Sealer, link: &PortalLinkId, presented: &str) -> bool {
    check_short_tag(sealer, KEY_PURPOSE, format!("form\0{link}").as_bytes(), presented)
}

/// Who a link's actions are recorded as.
pub fn actor(link: &PortalLinkId) -> String {
    format!("customer:{link}")
}

/// A link just issued.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedPortalLink {
    /// The `portal_link` record id (for revoking and renewing; not a secret).
    pub id: PortalLinkId,
    pub vps: VpsId,
    /// The URL to give the customer (holds the token).
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

fn expiry(config: &Config) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::days(i64::from(config.portal.link_ttl_days))
}

/// The customer's URL for `token`.
pub fn url(config: &Config, token: &PortalToken) -> String {
    format!("{}/my/{}", config.server.public_url.trim_end_matches('/'), token.expose())
}

/// Issues a portal link for `vps_id` (which must exist and not be deleted), valid for
/// `portal.link_ttl_days`; `issued_by` is `admin:<user>`, `api:<token>`, `cli`, `system`…
pub async fn issue(
    store: &Store,
    config: &Config,
    sealer: &Sealer,
    vps_id: &VpsId,
    issued_by: &str,
) -> anyhow::Result<IssuedPortalLink> {
    let vps = store.vps(vps_id).await?.ok_or_else(|| crate::error::NotFound::new("VPS", vps_id.as_str()))?;
    anyhow::ensure!(vps.state.is_live(), "VPS {vps_id} is deleted; a portal link needs a live VPS");
    let token = PortalToken::generate(sealer);
    let id = token.id();
    let expires_at = expiry(config);
    store.create_portal_link(&id, vps_id, issued_by, expires_at).await?;
    let _ = store
        .record_activity(
            Level::Info,
            issued_by,
            Some(&format!("vps:{vps_id}")),
            "portal link issued",
            json!({ "link": id, "expires_at": expires_at.to_rfc3339() }),
        )
        .await;
    Ok(IssuedPortalLink { id, vps: vps_id.clone(), url: url(config, &token), expires_at })
}

/// Revokes a link; false when there is no such link. Its console session ends with it.
pub async fn revoke(store: &Store, id: &PortalLinkId, revoked_by: &str) -> anyhow::Result<bool> {
    let Some(link) = store.portal_link(id).await? else { return Ok(false) };
    store.revoke_portal_link(id, revoked_by).await?;
    let _ = store
        .record_activity(
            Level::Info,
            revoked_by,
            Some(&format!("vps:{}", link.vps)),
            "portal link revoked",
            json!({ "link": id }),
        )
        .await;
    Ok(true)
}

/// Renews a link for another `portal.link_ttl_days` from now; answers the new expiry, or
/// `None` when there is no such link. A revoked link cannot be renewed.
pub async fn renew(
    store: &Store,
    config: &Config,
    id: &PortalLinkId,
    renewed_by: &str,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    let Some(link) = store.portal_link(id).await? else { return Ok(None) };
    anyhow::ensure!(link.revoked_at.is_none(), "portal link {id} was revoked; issue a new one instead");
    let expires_at = expiry(config);
    store.renew_portal_link(id, expires_at).await.context("cannot renew the portal link")?;
    let _ = store
        .record_activity(
            Level::Info,
            renewed_by,
            Some(&format!("vps:{}", link.vps)),
            "portal link renewed",
            json!({ "link": id, "expires_at": expires_at.to_rfc3339() }),
        )
        .await;
    Ok(Some(expires_at))
}

/// What a token opens now.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    Active(PortalLink),
    Revoked,
    Expired,
    Unknown,
}

/// What `token` opens now.
pub async fn open(store: &Store, sealer: &Sealer, token: &str) -> anyhow::Result<Opened> {
    let Some(token) = PortalToken::parse(sealer, token) else { return Ok(Opened::Unknown) };
    let Some(link) = store.portal_link(&token.id()).await? else { return Ok(Opened::Unknown) };
    Ok(match link.state(Utc::now()) {
        "revoked" => Opened::Revoked,
        "expired" => Opened::Expired,
        _ => Opened::Active(link),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portal_tokens_are_not_upgrade_tokens_and_forms_belong_to_one_link() {
        let s = Sealer::new([7; 32]);
        let t = PortalToken::generate(&s);
        assert_eq!(PortalToken::parse(&s, t.expose()), Some(t.clone()));
        assert!(crate::upgrade::links::LinkToken::parse(&s, t.expose()).is_none());
        let up = crate::upgrade::links::LinkToken::generate(&s);
        assert!(PortalToken::parse(&s, up.expose()).is_none());
        let (a, b) = (PortalLinkId::from("a"), PortalLinkId::from("b"));
        assert!(check_form_token(&s, &a, &form_token(&s, &a)));
        assert!(!check_form_token(&s, &b, &form_token(&s, &a)));
        assert_eq!(actor(&a), "customer:a");
    }
}
