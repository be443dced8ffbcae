//! Secrets at rest: VM root passwords and settings are sealed with the appliance key
//! (ChaCha20-Poly1305, a random nonce per value). The key lives in `security.key_file`
//! (default `<data_dir>/appliance.key`, created on first start, owner-only).

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::config::Secret;

/// Prefix of sealed values, so the format can change later.
const VERSION_PREFIX: &str = "v1:";

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

    /// Seals a secret into a printable string.
    pub fn seal(&self, secret: &Secret) -> String {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), secret.expose().as_bytes())
            .expect("sealing in memory cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{VERSION_PREFIX}{}", B64.encode(out))
    }

    /// Opens a value made by [`Sealer::seal`] with the same key.
    pub fn open(&self, sealed: &str) -> anyhow::Result<Secret> {
        let Some(body) = sealed.strip_prefix(VERSION_PREFIX) else { bail!("not a sealed value") };
        let raw = B64.decode(body).context("sealed value is not base64")?;
        if raw.len() < 12 {
            bail!("sealed value is too short");
        }
        let (nonce, ciphertext) = raw.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| anyhow::anyhow!("sealed value does not open with this appliance key"))?;
        Ok(Secret::new(String::from_utf8(plain).context("sealed value is not text")?))
    }
}

/// A root password SCP accepts: upper, lower, digit and a special character, 20 characters.
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
    Secret::new(String::from_utf8(chars).expect("ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_fails_with_another_key() {
        let a = Sealer::new([7; 32]);
        let sealed = a.seal(&Secret::new("hunter2"));
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(a.open(&sealed).expect("opens").expose(), "hunter2");
        assert_ne!(a.seal(&Secret::new("hunter2")), sealed, "a fresh nonce each time");
        assert!(Sealer::new([8; 32]).open(&sealed).is_err());
        assert!(a.open("v1:AAAA").is_err());
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
        for _ in 0..50 {
            let p = generate_password();
            let s = p.expose();
            assert_eq!(s.len(), 20);
            assert!(s.chars().any(|c| c.is_ascii_uppercase()));
            assert!(s.chars().any(|c| c.is_ascii_lowercase()));
            assert!(s.chars().any(|c| c.is_ascii_digit()));
            assert!(s.chars().any(|c| "!@#%^*_-+=".contains(c)));
        }
    }
}
