//! Logins and sessions: the per-(user, address) failure table, the login itself, session
//! look-ups, rotation and logout.

use chrono::{DateTime, Duration, Utc};

use super::password::dummy_hash;
use super::*;

/// How long a login waits for its turn at a password check before it is answered "busy".
pub(super) const LOGIN_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// (user, address) pairs whose failures are remembered; a fuller table forgets expired pairs
/// first, then everything (the per-user backstop, kept in the store, still holds).
pub(super) const MAX_FAILURE_PAIRS: usize = 10_000;

/// Failed logins per (user, client address), in memory.
#[derive(Debug, Default)]
pub(super) struct Failures {
    pub(super) pairs: std::collections::HashMap<(String, String), (u32, DateTime<Utc>)>,
}

impl Failures {
    /// When the pair is blocked until, if it is.
    pub(super) fn blocked(&self, user: &str, ip: &str, max: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (n, until) = self.pairs.get(&(user.to_string(), ip.to_string()))?;
        (*n >= max && *until > now).then_some(*until)
    }

    /// Counts a failure; the count lives until `until` (each failure extends it).
    pub(super) fn fail(&mut self, user: &str, ip: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> u32 {
        if self.pairs.len() >= MAX_FAILURE_PAIRS {
            self.pairs.retain(|_, (_, t)| *t > now);
            if self.pairs.len() >= MAX_FAILURE_PAIRS {
                self.pairs.clear();
            }
        }
        let e = self.pairs.entry((user.to_string(), ip.to_string())).or_insert((0, until));
        if e.1 <= now {
            *e = (0, until);
        }
        e.0 += 1;
        e.1 = until;
        e.0
    }

    pub(super) fn forget_user(&mut self, user: &str) {
        self.pairs.retain(|(u, _), _| u != user);
    }
}

impl Auth {
    /// Checks a login. On success answers a new session's cookie value and its principal.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        ip: &str,
    ) -> anyhow::Result<Result<(String, Principal), LoginError>> {
        let user = Username::from(username);
        let row = self.store.admin_login(&user).await?;
        let now = Utc::now();
        let until = now + Duration::minutes(i64::try_from(self.config.lockout_minutes).unwrap_or(15));
        let max = self.config.login_max_failures.max(1);
        if let Some(t) = self.failures.lock().blocked(username, ip, max, now) {
            return Ok(Err(LoginError::Blocked(t)));
        }
        let Some(row) = row else {
            // As long as a real check, so the time does not tell whether the user exists.
            if self.check_password(password, dummy_hash()).await.is_none() {
                return Ok(Err(LoginError::Busy));
            }
            self.failures.lock().fail(username, ip, until, now);
            return Ok(Err(LoginError::BadCredentials));
        };
        if let Some(locked) = row.locked_until
            && locked > now
        {
            return Ok(Err(LoginError::LockedUntil(locked)));
        }
        let Some(matches) = self.check_password(password, &row.password_hash).await else {
            return Ok(Err(LoginError::Busy));
        };
        if !matches {
            let from_here = self.failures.lock().fail(username, ip, until, now);
            let failures = row.failures + 1;
            let lock = failures >= u64::from(self.config.login_max_failures_per_user.max(max));
            self.store.set_login_failures(&user, if lock { 0 } else { failures }, lock.then_some(until)).await?;
            if lock {
                return Ok(Err(LoginError::LockedUntil(until)));
            }
            if from_here >= max {
                return Ok(Err(LoginError::Blocked(until)));
            }
            return Ok(Err(LoginError::BadCredentials));
        }
        if row.disabled {
            return Ok(Err(LoginError::Disabled));
        }
        let role = row.role;
        let two_factor = row.totp_enabled;
        let token = random_token();
        let hash = SessionId::new(token_hash(&token));
        let csrf = random_token();
        self.store.open_session(&user, &hash, &csrf, ip, two_factor).await?;
        Ok(Ok((
            token,
            Principal {
                username: username.to_string(),
                role,
                csrf,
                session_hash: hash.into(),
                via_token: false,
                mfa_pending: two_factor,
            },
        )))
    }

    /// The principal of a session cookie, if the session is still valid (touching it).
    pub async fn session(&self, token: &str) -> anyhow::Result<Option<Principal>> {
        let hash = SessionId::new(token_hash(token));
        let Some(row) = self.store.session(&hash).await? else { return Ok(None) };
        let now = Utc::now();
        let (Some(created), Some(seen)) = (row.created_at, row.last_seen_at) else {
            return Ok(None);
        };
        let idle = Duration::minutes(i64::try_from(self.config.session_idle_minutes).unwrap_or(60));
        let absolute = Duration::hours(i64::try_from(self.config.session_absolute_hours).unwrap_or(12));
        let revoked = row.owner.as_ref().is_some_and(|o| o.valid_after.is_some_and(|t| t > created));
        let owner = match row.owner {
            Some(owner) if !owner.disabled && !revoked && now - seen <= idle && now - created <= absolute => owner,
            _ => {
                self.store.delete_session(&hash).await?;
                return Ok(None);
            }
        };
        // Touch at most once a minute: a page view is not a write.
        if now - seen > Duration::seconds(60) {
            self.store.touch_session(&hash).await?;
        }
        Ok(Some(Principal {
            username: row.user.into(),
            role: owner.role,
            csrf: row.csrf,
            session_hash: hash.into(),
            via_token: false,
            mfa_pending: row.mfa_pending,
        }))
    }

    /// Replaces a session by a new one (a new cookie value and CSRF token) once its second
    /// factor passed, so a cookie value seen before the login completed is worth nothing.
    /// Answers the new cookie value.
    pub async fn rotate_session(&self, old_hash: &str, username: &str, ip: &str) -> anyhow::Result<String> {
        let token = random_token();
        let (old, new) = (SessionId::from(old_hash), SessionId::new(token_hash(&token)));
        self.store.rotate_session(&old, &new, &Username::from(username), &random_token(), ip).await?;
        Ok(token)
    }

    /// Whether the session with this hash still stands (it exists, its user is enabled and
    /// has not ended their sessions since), without touching it: a live-update stream asks
    /// this, and must not keep an idle session alive.
    pub async fn session_stands(&self, session_hash: &str) -> anyhow::Result<bool> {
        let Some(row) = self.store.session_standing(&SessionId::from(session_hash)).await? else { return Ok(false) };
        let Some(owner) = row.owner else { return Ok(false) };
        let revoked = match (owner.valid_after, row.created_at) {
            (Some(after), Some(created)) => after > created,
            _ => false,
        };
        Ok(!owner.disabled && !revoked)
    }

    pub async fn logout(&self, session_hash: &str) -> anyhow::Result<()> {
        self.store.delete_session(&SessionId::from(session_hash)).await
    }
}
