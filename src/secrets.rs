//! Secrets at rest: VM root passwords, 2FA secrets and settings are sealed with the appliance
//! key (ChaCha20-Poly1305, a random nonce per value). The key lives in `security.key_file`
//! (default `<data_dir>/appliance.key`, created on first start, owner-only).
//!
//! Each value is bound to its place (the record and field it belongs to, e.g.
//! `vps:abc/root_password`) as AEAD associated data: a sealed value copied into another
//! record or field does not open there, so someone who can write the store cannot make the
//! appliance reveal one VPS's password as another's. Values sealed before binding existed
//! (`v1:`) still open wherever they are.

use std::path::Path;

pub mod token;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::config::Secret;

/// Prefix of values sealed without a place (before binding existed); they still open.
const UNBOUND_PREFIX: &str = "v1:";
/// Prefix of values sealed bound to their place.
const BOUND_PREFIX: &str = "v2:";

/// Seals and opens secrets with the appliance key.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Self {
        Self { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)), key }
    }

    /// A key for one purpose (signing upgrade links, …), derived from the appliance key with
    /// HMAC-SHA256 so a key for one purpose says nothing about the appliance key or another.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(b"vmauto derived key\0");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Reads the hex key file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the appliance key {} (security.key_file)", path.display()))?;
        let bytes = hex::decode(text.trim()).context("the appliance key is not hex")?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| anyhow::anyhow!("the appliance key must be 32 bytes"))?;
        Ok(Self::new(key))
    }

    /// Seals a secret into a printable string that opens only with the same `place` (the
    /// record and field it is stored in, e.g. `vps:abc/root_password`).
    pub fn seal(&self, secret: &Secret, place: &str) -> String {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret.expose().as_bytes(), aad: place.as_bytes() })
            .expect("sealing in memory cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{BOUND_PREFIX}{}", B64.encode(out))
    }

    /// Opens a value made by [`Sealer::seal`] with the same key and `place`.
    pub fn open(&self, sealed: &str, place: &str) -> anyhow::Result<Secret> {
        let (body, aad) = match (sealed.strip_prefix(BOUND_PREFIX), sealed.strip_prefix(UNBOUND_PREFIX)) {
            (Some(body), _) => (body, place.as_bytes()),
            (None, Some(body)) => (body, &[][..]),
            (None, None) => bail!("not a sealed value"),
        };
        let raw = B64.decode(body).context("sealed value is not base64")?;
        if raw.len() < 12 {
            bail!("sealed value is too short");
        }
        let (nonce, ciphertext) = raw.split_at(12);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad }).map_err(|_| {
            anyhow::anyhow!(
                "sealed value does not open with this appliance key here ({place}); was it moved or the key replaced?"
            )
        })?;
        Ok(Secret::new(String::from_utf8(plain).context("sealed value is not text")?))
    }
}

/// Where a VPS's root password is stored: what its sealed value is bound to.
pub fn root_password_place(vps: &str) -> String {
    format!("vps:{vps}/root_password")
}

/// A root password SCP accepts: upper, lower, digit and a special character, 20 characters.
///
/// It starts with a letter or digit, so it can follow a command-line flag or be passed to
/// a tool without being taken for an option (`-C8f…`).
pub fn generate_password() -> Secret {
    use rand::Rng;
    use rand::seq::SliceRandom;
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGIT: &[u8] = b"23456789";
    const SPECIAL: &[u8] = b"!@#%^*_-+=";
    let mut rng = rand::thread_rng();
    let all: Vec<u8> = [UPPER, LOWER, DIGIT, SPECIAL].concat();
    let mut chars: Vec<u8> =
        [UPPER, LOWER, DIGIT, SPECIAL].iter().map(|set| set[rng.gen_range(0..set.len())]).collect();
    while chars.len() < 20 {
        chars.push(all[rng.gen_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    let first = chars.iter().position(u8::is_ascii_alphanumeric).expect("one upper case letter at least");
    chars.swap(0, first);
    Secret::new(String::from_utf8(chars).expect("ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_fails_with_another_key() {
        let a = Sealer::new([7; 32]);
        let place = root_password_place("abc");
        let sealed = a.seal(&Secret::new("hunter2"), &place);
        assert!(sealed.starts_with("v2:"));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(a.open(&sealed, &place).expect("opens").expose(), "hunter2");
        assert_ne!(a.seal(&Secret::new("hunter2"), &place), sealed, "a fresh nonce each time");
        assert!(Sealer::new([8; 32]).open(&sealed, &place).is_err());
        assert!(a.open("v2:AAAA", &place).is_err());
    }

    #[test]
    fn a_sealed_value_opens_only_where_it_was_sealed() {
        let a = Sealer::new([7; 32]);
        let sealed = a.seal(&Secret::new("hunter2"), &root_password_place("abc"));
        let err = a.open(&sealed, &root_password_place("xyz")).expect_err("another VPS's place");
        assert!(err.to_string().contains("vps:xyz/root_password"), "{err}");
        assert!(a.open(&sealed, "setting:smtp.password").is_err());
    }

    #[test]
    fn values_sealed_before_binding_still_open() {
        // A v1 value: nonce + ciphertext without associated data.
        let a = Sealer::new([7; 32]);
        let nonce = [1u8; 12];
        let mut raw = nonce.to_vec();
        raw.extend(a.cipher.encrypt(Nonce::from_slice(&nonce), b"legacy".as_slice()).expect("seal"));
        let v1 = format!("v1:{}", B64.encode(raw));
        assert_eq!(a.open(&v1, "anywhere").expect("opens").expose(), "legacy");
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_appliance_key() {
        let a = Sealer::new([7; 32]);
        assert_eq!(a.derive_key("x"), a.derive_key("x"));
        assert_ne!(a.derive_key("x"), a.derive_key("y"));
        assert_ne!(a.derive_key("x"), Sealer::new([8; 32]).derive_key("x"));
        assert_ne!(a.derive_key("x"), [7; 32]);
    }

    #[test]
    fn generated_passwords_meet_scp_policy() {
        for _ in 0..500 {
            let p = generate_password();
            let s = p.expose();
            assert_eq!(s.len(), 20);
            assert!(s.chars().any(|c| c.is_ascii_uppercase()));
            assert!(s.chars().any(|c| c.is_ascii_lowercase()));
            assert!(s.chars().any(|c| c.is_ascii_digit()));
            assert!(s.chars().any(|c| "!@#%^*_-+=".contains(c)));
            assert!(s.starts_with(|c: char| c.is_ascii_alphanumeric()), "{s} starts like an option");
        }
    }
}
