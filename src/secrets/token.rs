//! Signed bearer tokens for links given to customers (`/upgrade/<token>`, `/my/<token>`).
//!
//! A token is 128 random bits and an HMAC-SHA256 tag over them (each base64url, joined by
//! `.`), keyed by a key derived from the appliance key for one purpose: a forged or mistyped
//! token is refused before the store is asked, and a token of one purpose opens nothing of
//! another. The token itself is never stored: rows are keyed by [`SignedToken::digest`], the
//! SHA-256 of the random part, so a copy of the store opens nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Sealer;

type HmacSha256 = Hmac<Sha256>;

/// Encoded length of each half of a token (16 bytes, base64url without padding).
const HALF_LEN: usize = 22;

/// A token as the customer sees it; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedToken(String);

impl std::fmt::Debug for SignedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignedToken(***)")
    }
}

/// The HMAC of `what` under the key derived for `purpose`.
pub fn tag(sealer: &Sealer, purpose: &str, what: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(&sealer.derive_key(purpose)).expect("HMAC takes any key");
    mac.update(what);
    mac.finalize().into_bytes().into()
}

/// A short tag (base64url of 16 bytes) binding `what` to `purpose`: form tokens and the like.
pub fn short_tag(sealer: &Sealer, purpose: &str, what: &[u8]) -> String {
    B64URL.encode(&tag(sealer, purpose, what)[..16])
}

/// Whether `presented` is [`short_tag`] of `what` (constant time).
pub fn check_short_tag(sealer: &Sealer, purpose: &str, what: &[u8], presented: &str) -> bool {
    bool::from(short_tag(sealer, purpose, what).as_bytes().ct_eq(presented.as_bytes()))
}

impl SignedToken {
    /// A fresh random token signed for `purpose`.
    pub fn generate(sealer: &Sealer, purpose: &str) -> Self {
        let random: [u8; 16] = rand::random();
        let r = B64URL.encode(random);
        let sig = short_tag(sealer, purpose, r.as_bytes());
        Self(format!("{r}.{sig}"))
    }

    /// The token derived from `seed` for `purpose`: the same seed always gives the same
    /// token, which nobody without the appliance key can compute. For links a page hands out
    /// again and again (the portal's way into upgrades) without storing a row per click.
    pub fn derive(sealer: &Sealer, purpose: &str, seed: &[u8]) -> Self {
        let r = B64URL.encode(&tag(sealer, &format!("{purpose} derived"), seed)[..16]);
        let sig = short_tag(sealer, purpose, r.as_bytes());
        Self(format!("{r}.{sig}"))
    }

    /// Accepts only a well-formed token whose tag for `purpose` is right (anything else is
    /// simply unknown).
    pub fn parse(sealer: &Sealer, purpose: &str, s: &str) -> Option<Self> {
        let (r, sig) = s.split_once('.')?;
        let shaped =
            |p: &str| p.len() == HALF_LEN && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !shaped(r) || !shaped(sig) {
            return None;
        }
        check_short_tag(sealer, purpose, r.as_bytes(), sig).then(|| Self(s.to_string()))
    }

    /// The token for a URL; call only where the link is built.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The record key of the token's row: hex SHA-256 of the random part.
    pub fn digest(&self) -> String {
        let r = self.0.split('.').next().unwrap_or_default();
        hex::encode(Sha256::digest(r.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_signed_random_and_hide_nothing_in_their_digest() {
        let s = Sealer::new([3; 32]);
        let a = SignedToken::generate(&s, "p");
        let b = SignedToken::generate(&s, "p");
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 2 * HALF_LEN + 1);
        assert_eq!(SignedToken::parse(&s, "p", a.expose()), Some(a.clone()));
        assert!(SignedToken::parse(&s, "other", a.expose()).is_none(), "another purpose");
        assert!(SignedToken::parse(&Sealer::new([4; 32]), "p", a.expose()).is_none(), "another appliance key");
        let mut forged = a.expose().to_string();
        forged.replace_range(0..1, if forged.starts_with('A') { "B" } else { "A" });
        assert!(SignedToken::parse(&s, "p", &forged).is_none(), "a changed random part fails the tag");
        assert!(SignedToken::parse(&s, "p", "short.token").is_none());
        assert!(!a.digest().contains(a.expose().split('.').next().expect("random part")));
        assert_eq!(a.digest().len(), 64);
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn derived_tokens_repeat_for_one_seed_only_and_are_valid() {
        let s = Sealer::new([3; 32]);
        let a = SignedToken::derive(&s, "p", b"seed 1");
        assert_eq!(a, SignedToken::derive(&s, "p", b"seed 1"));
        assert_ne!(a, SignedToken::derive(&s, "p", b"seed 2"));
        assert_ne!(a, SignedToken::derive(&Sealer::new([4; 32]), "p", b"seed 1"), "another appliance key");
        assert_eq!(SignedToken::parse(&s, "p", a.expose()), Some(a.clone()));
        assert!(SignedToken::parse(&s, "other", a.expose()).is_none());
    }
}
