//! Admin users, sessions and API tokens.
//!
//! - Passwords are argon2id hashes (PHC strings), checked on the blocking pool at most
//!   `security.login_concurrency` at a time, so a flood of logins cannot stall the async
//!   workers that answer webhooks; a login that waits too long for its turn is answered "busy".
//! - `security.login_max_failures` failed logins for one user from one client address block
//!   that pair for `security.lockout_minutes` (kept in memory, in a bounded table); someone
//!   guessing from elsewhere cannot lock the user out. As a backstop,
//!   `security.login_max_failures_per_user` failures from anywhere lock the account itself. A
//!   failed login gets the same answer whatever the cause, so it does not tell which users
//!   exist.
//! - A session is a random 256-bit cookie value; the store keeps only its SHA-256, with the
//!   user, the role, a CSRF token and its times. It ends after `security.session_idle_minutes`
//!   without use or `security.session_absolute_hours` after login, at logout, when the user is
//!   disabled or when they log out everywhere.
//! - API tokens (`vma_…`) are stored the same way (hash only), carry a role and are revoked by
//!   an admin.
//!
//! Roles: `admin` does everything, `operator` acts on VPSs, `viewer` reads.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::SecurityConfig;
use crate::db::Store;
use crate::secrets::Sealer;

mod password;
mod sessions;
mod tokens;
mod totp;
mod users;

use sessions::LOGIN_WAIT;

pub use crate::db::models::admin_user::{AdminUser as User, Role, Username};
pub use crate::db::models::api_token::{ApiToken, TokenId};
pub use crate::db::models::session::SessionId;
pub use password::{check_password_policy, hash_password, valid_username, verify_password};
pub use tokens::{random_token, token_hash};
pub use totp::{MFA_MAX_FAILURES, RECOVERY_CODES, TotpSetup, totp};

/// Who is making a request: a session's user or an API token.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    pub username: String,
    pub role: Role,
    /// The session's CSRF token (empty for API tokens, which need none).
    pub csrf: String,
    /// The hash of the session or token (to end this session).
    #[serde(skip)]
    pub session_hash: String,
    pub via_token: bool,
    /// The password was right but the second factor is still to come: this session may only
    /// open the two-factor page.
    #[serde(skip)]
    pub mfa_pending: bool,
}

impl Principal {
    /// `admin:<user>` or `token:<name>`: how the activity log names this principal.
    pub fn actor(&self) -> String {
        if self.via_token { format!("token:{}", self.username) } else { format!("admin:{}", self.username) }
    }

    pub fn can(&self, role: Role) -> bool {
        self.role >= role
    }
}

/// Why a login was refused. The message shown never says whether the user exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    BadCredentials,
    /// The account is locked (the per-user backstop).
    LockedUntil(DateTime<Utc>),
    /// This user is blocked from this address until then.
    Blocked(DateTime<Utc>),
    Disabled,
    /// Too many password checks are running; try again in a moment.
    Busy,
}

/// The result of a second-factor code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    Passed,
    Wrong,
    /// Too many wrong codes for this user (across logins): no code is checked until then.
    Locked(DateTime<Utc>),
}

/// The users, sessions and tokens of one store.
#[derive(Clone)]
pub struct Auth {
    store: Store,
    config: SecurityConfig,
    /// Seals two-factor secrets at rest.
    sealer: Arc<Sealer>,
    /// Turns at a password check.
    checks: Arc<tokio::sync::Semaphore>,
    failures: Arc<parking_lot::Mutex<sessions::Failures>>,
}

impl Auth {
    pub fn new(store: Store, config: SecurityConfig, sealer: Arc<Sealer>) -> Self {
        let checks = Arc::new(tokio::sync::Semaphore::new(config.login_concurrency.max(1)));
        Self { store, config, sealer, checks, failures: Arc::default() }
    }

    /// Checks a password on the blocking pool when a turn is free within [`LOGIN_WAIT`];
    /// `None`: no turn came.
    async fn check_password(&self, password: &str, hash: &str) -> Option<bool> {
        let turn = tokio::time::timeout(LOGIN_WAIT, self.checks.clone().acquire_owned()).await.ok()?.ok()?;
        let (password, hash) = (password.to_string(), hash.to_string());
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            verify_password(&password, &hash)
        })
        .await
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::sessions::{Failures, MAX_FAILURE_PAIRS};
    use super::totp::{new_recovery_code, normal_recovery_code};
    use super::*;

    #[test]
    fn recovery_codes_carry_80_bits_and_forgive_dashes_and_case() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 23, "{code}");
        let normal = normal_recovery_code(&code);
        assert_eq!(normal.len(), 20);
        assert_eq!(normal_recovery_code(&code.to_uppercase().replace('-', " ")), normal);
        assert_ne!(new_recovery_code(), code);
    }

    #[test]
    fn failures_block_a_user_from_one_address_only_and_expire() {
        let now = Utc::now();
        let until = now + Duration::minutes(15);
        let mut f = Failures::default();
        for n in 1..=3 {
            assert_eq!(f.fail("admin", "192.0.2.1", until, now), n);
        }
        assert_eq!(f.blocked("admin", "192.0.2.1", 3, now), Some(until));
        assert_eq!(f.blocked("admin", "192.0.2.2", 3, now), None, "another address is not blocked");
        assert_eq!(f.blocked("other", "192.0.2.1", 3, now), None, "another user is not blocked");
        assert_eq!(f.blocked("admin", "192.0.2.1", 3, until + Duration::seconds(1)), None, "it expires");
        f.forget_user("admin");
        assert_eq!(f.blocked("admin", "192.0.2.1", 3, now), None, "a password reset forgets");
        for i in 0..MAX_FAILURE_PAIRS + 5 {
            f.fail(&format!("u{i}"), "192.0.2.9", until, now);
        }
        assert!(f.pairs.len() <= MAX_FAILURE_PAIRS, "the table is bounded");
    }

    #[tokio::test]
    async fn a_login_that_gets_no_turn_at_a_password_check_is_busy() {
        let mut c = crate::config::Config::default();
        c.database.url = "mem://".into();
        let store = Store::open(&c).await.expect("store");
        let auth =
            Auth::new(store, SecurityConfig { login_concurrency: 1, ..c.security }, Arc::new(Sealer::new([7; 32])));
        auth.add_user("busy", "a long enough password", Role::Admin).await.expect("user");
        // Every turn is taken (as by a flood of logins): the next login waits, then is told so.
        let held = auth.checks.clone().acquire_owned().await.expect("turn");
        let login = auth.login("busy", "a long enough password", "192.0.2.1").await.expect("login");
        assert!(matches!(login, Err(LoginError::Busy)), "{login:?}");
        drop(held);
        let login = auth.login("busy", "a long enough password", "192.0.2.1").await.expect("login");
        assert!(login.is_ok(), "with a free turn the same login passes");
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn roles_are_ordered_and_policies_hold() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        assert_eq!(Role::parse("operator"), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
        assert!(valid_username("ops.team-1@x") && !valid_username("a b") && !valid_username(""));
        assert!(check_password_policy("short").is_err() && check_password_policy("long enough pw").is_ok());
        assert_ne!(random_token(), random_token());
        assert_eq!(token_hash("a").len(), 64);
    }
}
