//! Two-factor login: TOTP enrolment and checks, the per-user attempt budget, recovery codes.

use chrono::{Duration, Utc};
use serde::Serialize;

use super::*;

/// Wrong second-factor codes for one user, across logins, before its second factor locks.
pub const MFA_MAX_FAILURES: u64 = 10;

/// Recovery codes given when two-factor is turned on.
pub const RECOVERY_CODES: usize = 10;

/// A recovery code: 80 random bits as 20 hex digits in groups of five (`1a2b3-c4d5e-…`).
pub(super) fn new_recovery_code() -> String {
    let b: [u8; 10] = rand::random();
    let hex = hex::encode(b);
    (0..4).map(|i| &hex[i * 5..i * 5 + 5]).collect::<Vec<_>>().join("-")
}

/// A recovery code as typed, reduced to what identifies it: lower case, without the dashes and
/// spaces people add or drop.
pub(super) fn normal_recovery_code(code: &str) -> String {
    code.chars().filter(|c| !matches!(c, '-' | ' ')).flat_map(char::to_lowercase).collect()
}

/// What a user's sealed 2FA secret (pending or confirmed) is bound to (see `secrets`).
fn totp_place(username: &str) -> String {
    format!("admin_user:{username}/totp")
}

/// The TOTP generator of a secret (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of skew).
pub fn totp(secret: &[u8], account: &str) -> anyhow::Result<totp_rs::TOTP> {
    totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        secret.to_vec(),
        Some("vmauto".into()),
        account.replace(':', "_"),
    )
    .map_err(|e| anyhow::anyhow!("invalid two-factor secret: {e}"))
}

/// The 30-second step whose code `code` is (now, or one step either side), if any.
fn matching_step(t: &totp_rs::TOTP, code: &str) -> Option<u64> {
    let now = u64::try_from(Utc::now().timestamp()).ok()?;
    [now, now.saturating_sub(30), now + 30]
        .into_iter()
        .find(|time| bool::from(t.generate(*time).as_bytes().ct_eq(code.as_bytes())))
        .map(|time| time / 30)
}

/// A new two-factor enrolment: the secret to type (base32) and the `otpauth://` URL.
#[derive(Debug, Clone, Serialize)]
pub struct TotpSetup {
    pub secret: String,
    pub url: String,
}

impl Auth {
    /// Checks the second factor of a pending session: a current TOTP code or an unused
    /// recovery code (which is then used up). Five wrong codes end the session; across
    /// logins, [`MFA_MAX_FAILURES`] wrong codes lock the user's second factor for
    /// `security.lockout_minutes` (a password alone cannot buy endless guesses).
    pub async fn check_second_factor(
        &self,
        session_hash: &str,
        username: &str,
        code: &str,
    ) -> anyhow::Result<SecondFactor> {
        let now = Utc::now();
        let user = Username::from(username);
        if let Some(until) = self.store.mfa_locked_until(&user).await?
            && until > now
        {
            return Ok(SecondFactor::Locked(until));
        }
        if self.complete_second_factor(session_hash, username, code).await? {
            self.store.clear_mfa_failures(&user).await?;
            return Ok(SecondFactor::Passed);
        }
        let until = now + Duration::minutes(i64::try_from(self.config.lockout_minutes).unwrap_or(15));
        if self.store.count_mfa_failure(&user).await? >= MFA_MAX_FAILURES {
            self.store.lock_mfa(&user, until).await?;
            return Ok(SecondFactor::Locked(until));
        }
        Ok(SecondFactor::Wrong)
    }

    /// Checks a code and, when it is right, clears the session's pending second factor.
    pub async fn complete_second_factor(&self, session_hash: &str, username: &str, code: &str) -> anyhow::Result<bool> {
        let code = code.trim().replace(' ', "");
        let user = Username::from(username);
        let mut ok = false;
        if let Some(sealed) = self.store.totp_secret(&user).await? {
            let secret = hex::decode(self.sealer.open(&sealed, &totp_place(username))?.expose())?;
            if let Some(step) = matching_step(&totp(&secret, username)?, &code) {
                // Each code works once: a step at or before the last one used is a replay.
                ok = self.store.use_totp_step(&user, step).await?;
            }
        }
        if !ok {
            let normal = normal_recovery_code(&code);
            // Codes are stored as keyed hashes; codes given before that, as plain SHA-256.
            for hash in [self.recovery_hash(&normal), token_hash(&normal)] {
                if self.store.use_recovery_code(&user, &hash).await? {
                    ok = true;
                    break;
                }
            }
        }
        let session = SessionId::from(session_hash);
        if ok {
            self.store.pass_session_mfa(&session).await?;
        } else {
            self.store.fail_session_mfa(&session).await?;
        }
        Ok(ok)
    }

    /// Whether a user has two-factor on.
    pub async fn has_totp(&self, username: &str) -> anyhow::Result<bool> {
        self.store.has_totp(&Username::from(username)).await
    }

    /// Starts enrolling two-factor: a new secret, kept pending until a code confirms it.
    /// Refused while two-factor is on: enrolling a new app needs turning it off first, with
    /// a current code, so a stolen session cannot move the second factor to another phone.
    pub async fn begin_totp(&self, username: &str) -> anyhow::Result<TotpSetup> {
        anyhow::ensure!(
            !self.has_totp(username).await?,
            "two-factor login is on: turn it off with a current code (or a recovery code) before setting up a new app"
        );
        let secret: [u8; 20] = rand::random();
        let t = totp(&secret, username)?;
        let sealed = self.sealer.seal(&crate::config::Secret::new(hex::encode(secret)), &totp_place(username));
        self.store.set_totp_pending(&Username::from(username), &sealed).await?;
        Ok(TotpSetup { secret: t.get_secret_base32(), url: t.get_url() })
    }

    /// A recovery code's stored form: HMAC-SHA256 keyed with a key derived from the appliance
    /// key, so a copy of the store alone does not let anyone test guesses offline.
    fn recovery_hash(&self, normal_code: &str) -> String {
        use hmac::{Hmac, Mac};
        let key = self.sealer.derive_key("recovery codes");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key");
        mac.update(normal_code.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Confirms enrolment with a code from the app; answers the recovery codes (shown once).
    pub async fn confirm_totp(&self, username: &str, code: &str) -> anyhow::Result<Option<Vec<String>>> {
        let user = Username::from(username);
        let Some(sealed) = self.store.totp_pending(&user).await? else {
            anyhow::bail!("start two-factor set-up first");
        };
        let secret = hex::decode(self.sealer.open(&sealed, &totp_place(username))?.expose())?;
        if !totp(&secret, username)?.check_current(code.trim()).unwrap_or(false) {
            return Ok(None);
        }
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        let hashes: Vec<String> = codes.iter().map(|c| self.recovery_hash(&normal_recovery_code(c))).collect();
        self.store.enable_totp(&user, &sealed, &hashes).await?;
        Ok(Some(codes))
    }

    /// Turns two-factor off (the user, or an admin resetting another user's).
    pub async fn reset_totp(&self, username: &str) -> anyhow::Result<()> {
        self.store.disable_totp(&Username::from(username)).await
    }
}
