//! One-time reveal links: the customer's "your VPS is ready" email carries a link that shows
//! the root password once, instead of the password itself.
//!
//! The token is 128 random bits (base64url, 22 characters) and is never stored: the
//! `reveal_link` row's id is the SHA-256 of the token, so a copy of the store reveals nothing.
//! A row holds the VPS, its expiry and a `used` flag; claiming sets the flag in the same
//! statement that checks it, so two requests cannot both see the password.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::db::Store;
use crate::db::models::reveal_link::RevealLinkId;
use crate::db::models::vps::VpsId;
use crate::secrets::Sealer;

/// Length of an encoded token.
pub const TOKEN_LEN: usize = 22;

/// A reveal token as the customer sees it; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct RevealToken(String);

impl std::fmt::Debug for RevealToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RevealToken(***)")
    }
}

impl RevealToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        let bytes: [u8; 16] = rand::random();
        Self(B64URL.encode(bytes))
    }

    /// Accepts only strings shaped like a token (anything else is simply unknown).
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == TOKEN_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.to_string()))
    }

    /// The token for a URL; call only where the link is built.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored key: hex SHA-256 of the token.
    pub fn hash(&self) -> RevealLinkId {
        RevealLinkId::new(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

/// What a VPS's credentials look like on the reveal page.
#[derive(Debug, Clone)]
pub struct Revealed {
    pub vps_name: String,
    pub ips: Vec<String>,
    pub password: Secret,
}

/// The answer to a claim.
#[derive(Debug)]
pub enum Claim {
    Revealed(Revealed),
    /// The link was used already.
    Used,
    /// The link expired unused.
    Expired,
    /// No such link.
    Unknown,
}

/// Stores a new link for VPS `vps` (the key, without `vps:`) valid until `expires_at`.
pub async fn create(store: &Store, vps: &VpsId, expires_at: DateTime<Utc>) -> anyhow::Result<RevealToken> {
    let token = RevealToken::generate();
    store.create_reveal_link(&token.hash(), vps, expires_at).await.context("cannot store the reveal link")?;
    Ok(token)
}

/// What a link would give, without spending it (the confirm page a GET shows, so that mail
/// scanners that follow links do not use it up): `Some(vps name)` while it is usable.
pub async fn peek(store: &Store, token: &RevealToken) -> anyhow::Result<Result<String, Claim>> {
    let link = store.reveal_link(&token.hash()).await.context("cannot read the reveal link")?;
    let Some(link) = link else { return Ok(Err(Claim::Unknown)) };
    if link.used {
        return Ok(Err(Claim::Used));
    }
    if link.expires_at <= Utc::now() {
        return Ok(Err(Claim::Expired));
    }
    Ok(Ok(store.reveal_vps_name(&link.vps).await?.unwrap_or_default()))
}

/// Claims a link: when it is unused and unexpired, reads the VPS's name, IPs and root
/// password, then marks the link used in a statement that checks it is still unused (so of
/// two racing requests only one gets the password). A failure before that mark (the VPS or
/// its password cannot be read) leaves the link usable.
pub async fn claim(store: &Store, sealer: &Sealer, token: &RevealToken) -> anyhow::Result<Claim> {
    let id = token.hash();
    let link = store.reveal_link(&id).await.context("cannot read the reveal link")?;
    let Some(link) = link else { return Ok(Claim::Unknown) };
    if link.used {
        return Ok(Claim::Used);
    }
    if link.expires_at <= Utc::now() {
        return Ok(Claim::Expired);
    }
    let vps = store.revealed_vps(&link.vps).await?.context("the VPS of this link no longer exists")?;
    let sealed = vps.root_password.context("the VPS has no root password yet")?;
    let password = sealer
        .open(&sealed, &crate::secrets::root_password_place(link.vps.as_str()))
        .context("cannot open the root password")?;
    let spent = store.spend_reveal_link(&id).await.context("cannot mark the reveal link used")?;
    if !spent {
        return Ok(Claim::Used);
    }
    Ok(Claim::Revealed(Revealed { vps_name: vps.name.unwrap_or_default(), ips: vps.ips, password }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_128_bit_url_safe_and_hashed() {
        let a = RevealToken::generate();
        assert_eq!(a.expose().len(), TOKEN_LEN);
        assert_eq!(RevealToken::parse(a.expose()), Some(a.clone()));
        assert_ne!(RevealToken::generate(), a);
        assert_eq!(a.hash().as_str().len(), 64);
        assert!(!a.hash().as_str().contains(a.expose()));
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(RevealToken::parse("short"), None);
        assert_eq!(RevealToken::parse("<script>alert(1)</script>"), None);
    }
}
