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

use std::fmt;
use std::sync::Arc;

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::SecurityConfig;
use crate::db::Store;
use crate::secrets::Sealer;

/// What a user may do. Ordered: a higher role includes the lower ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An admin user as listed (never with its hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub role: Role,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub last_login_at: Option<String>,
    #[serde(default)]
    pub locked_until: Option<String>,
    /// Two-factor is on.
    #[serde(default)]
    pub totp: bool,
}

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

/// Wrong second-factor codes for one user, across logins, before its second factor locks.
pub const MFA_MAX_FAILURES: u64 = 10;

/// How long a login waits for its turn at a password check before it is answered "busy".
const LOGIN_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// (user, address) pairs whose failures are remembered; a fuller table forgets expired pairs
/// first, then everything (the per-user backstop, kept in the store, still holds).
const MAX_FAILURE_PAIRS: usize = 10_000;

/// Failed logins per (user, client address), in memory.
#[derive(Debug, Default)]
struct Failures {
    pairs: std::collections::HashMap<(String, String), (u32, DateTime<Utc>)>,
}

impl Failures {
    /// When the pair is blocked until, if it is.
    fn blocked(&self, user: &str, ip: &str, max: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (n, until) = self.pairs.get(&(user.to_string(), ip.to_string()))?;
        (*n >= max && *until > now).then_some(*until)
    }

    /// Counts a failure; the count lives until `until` (each failure extends it).
    fn fail(&mut self, user: &str, ip: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> u32 {
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

    fn forget_user(&mut self, user: &str) {
        self.pairs.retain(|(u, _), _| u != user);
    }
}

/// SHA-256 of a secret token, hex (record ids of sessions and API tokens).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// 256 random bits, base64url without padding.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An argon2id PHC string of `password`.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A recovery code: 80 random bits as 20 hex digits in groups of five (`1a2b3-c4d5e-…`).
fn new_recovery_code() -> String {
    let b: [u8; 10] = rand::random();
    let hex = hex::encode(b);
    (0..4).map(|i| &hex[i * 5..i * 5 + 5]).collect::<Vec<_>>().join("-")
}

/// A recovery code as typed, reduced to what identifies it: lower case, without the dashes and
/// spaces people add or drop.
fn normal_recovery_code(code: &str) -> String {
    code.chars().filter(|c| !matches!(c, '-' | ' ')).flat_map(char::to_lowercase).collect()
}

/// A hash checked when the user does not exist, so a login takes as long either way.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a password").unwrap_or_default())
}

/// Usernames: 1–64 of letters, digits, `.`, `_`, `-`, `@`.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// Passwords: at least 12 characters.
pub fn check_password_policy(password: &str) -> Result<(), String> {
    if password.chars().count() < 12 {
        return Err("a password needs at least 12 characters".into());
    }
    Ok(())
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
    failures: Arc<parking_lot::Mutex<Failures>>,
}

/// Recovery codes given when two-factor is turned on.
pub const RECOVERY_CODES: usize = 10;

/// The TOTP generator of a secret (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of skew).
/// What a user's sealed 2FA secret (pending or confirmed) is bound to (see `secrets`).
fn totp_place(username: &str) -> String {
    format!("admin_user:{username}/totp")
}

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

    pub async fn user_count(&self) -> anyhow::Result<u64> {
        let n: Vec<u64> = self.store.query_one("SELECT VALUE count() FROM admin_user GROUP ALL", json!({}), 0).await?;
        Ok(n.first().copied().unwrap_or(0))
    }

    pub async fn users(&self) -> anyhow::Result<Vec<User>> {
        self.store
            .query_one(
                "SELECT username, role, disabled OR false AS disabled, totp_enabled = true AS totp, <string>created_at AS created_at,
                    IF last_login_at { <string>last_login_at } AS last_login_at,
                    IF locked_until { <string>locked_until } AS locked_until
                 FROM admin_user ORDER BY username",
                json!({}),
                0,
            )
            .await
    }

    /// Adds a user; fails if the name is taken.
    pub async fn add_user(&self, username: &str, password: &str, role: Role) -> anyhow::Result<()> {
        anyhow::ensure!(valid_username(username), "usernames are 1-64 letters, digits, '.', '_', '-' or '@'");
        check_password_policy(password).map_err(anyhow::Error::msg)?;
        let hash = hash_password(password)?;
        self.store
            .execute(
                "IF (SELECT VALUE id FROM type::record('admin_user', $u))[0] != NONE {
                     THROW 'user ' + $u + ' already exists';
                 };
                 CREATE type::record('admin_user', $u) CONTENT {
                     username: $u, password_hash: $hash, role: $role, disabled: false, failures: 0,
                     created_at: time::now(), sessions_valid_after: time::now()
                 };",
                json!({ "u": username, "hash": hash, "role": role }),
            )
            .await
    }

    /// Sets a new password, unlocks the account and ends its sessions.
    pub async fn set_password(&self, username: &str, password: &str) -> anyhow::Result<()> {
        check_password_policy(password).map_err(anyhow::Error::msg)?;
        let hash = hash_password(password)?;
        self.failures.lock().forget_user(username);
        self.update_existing(
            username,
            "UPDATE type::record('admin_user', $u) SET password_hash = $hash, failures = 0, locked_until = NONE,
                sessions_valid_after = time::now()",
            json!({ "hash": hash }),
        )
        .await
    }

    pub async fn set_role(&self, username: &str, role: Role) -> anyhow::Result<()> {
        self.update_existing(
            username,
            "UPDATE type::record('admin_user', $u) SET role = $role, sessions_valid_after = time::now()",
            json!({ "role": role }),
        )
        .await
    }

    /// Disables (or enables) a user; disabling ends their sessions and tokens at once.
    pub async fn set_disabled(&self, username: &str, disabled: bool) -> anyhow::Result<()> {
        self.update_existing(
            username,
            "UPDATE type::record('admin_user', $u) SET disabled = $disabled, sessions_valid_after = time::now()",
            json!({ "disabled": disabled }),
        )
        .await
    }

    /// Ends every session of a user ("log out everywhere").
    pub async fn end_all_sessions(&self, username: &str) -> anyhow::Result<()> {
        self.update_existing(
            username,
            "UPDATE type::record('admin_user', $u) SET sessions_valid_after = time::now()",
            json!({}),
        )
        .await?;
        self.store.execute("DELETE session WHERE user = $u", json!({ "u": username })).await
    }

    async fn update_existing(&self, username: &str, sql: &str, mut bindings: Value) -> anyhow::Result<()> {
        bindings["u"] = json!(username);
        let sql = format!(
            "IF (SELECT VALUE id FROM type::record('admin_user', $u))[0] == NONE {{ THROW 'no user named ' + $u; }}; {sql};"
        );
        self.store.execute(&sql, bindings).await
    }

    /// Checks a login. On success answers a new session's cookie value and its principal.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        ip: &str,
    ) -> anyhow::Result<Result<(String, Principal), LoginError>> {
        let rows: Vec<Value> = self
            .store
            .query_one(
                "SELECT username, password_hash, role, disabled, failures, locked_until, totp_enabled
                 FROM type::record('admin_user', $u)",
                json!({ "u": username }),
                0,
            )
            .await?;
        let now = Utc::now();
        let until = now + Duration::minutes(i64::try_from(self.config.lockout_minutes).unwrap_or(15));
        let max = self.config.login_max_failures.max(1);
        if let Some(t) = self.failures.lock().blocked(username, ip, max, now) {
            return Ok(Err(LoginError::Blocked(t)));
        }
        let Some(row) = rows.into_iter().next() else {
            // As long as a real check, so the time does not tell whether the user exists.
            if self.check_password(password, dummy_hash()).await.is_none() {
                return Ok(Err(LoginError::Busy));
            }
            self.failures.lock().fail(username, ip, until, now);
            return Ok(Err(LoginError::BadCredentials));
        };
        if let Some(locked) = row["locked_until"].as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok())
            && locked > now
        {
            return Ok(Err(LoginError::LockedUntil(locked)));
        }
        let hash = row["password_hash"].as_str().unwrap_or_default();
        let Some(matches) = self.check_password(password, hash).await else { return Ok(Err(LoginError::Busy)) };
        if !matches {
            let from_here = self.failures.lock().fail(username, ip, until, now);
            let failures = row["failures"].as_u64().unwrap_or(0) + 1;
            let lock = failures >= u64::from(self.config.login_max_failures_per_user.max(max));
            self.store
                .execute(
                    "UPDATE type::record('admin_user', $u) SET failures = $failures,
                        locked_until = IF $lock { <datetime>$until } ELSE { NONE }",
                    json!({ "u": username, "failures": if lock { 0 } else { failures }, "lock": lock,
                            "until": until.to_rfc3339() }),
                )
                .await?;
            if lock {
                return Ok(Err(LoginError::LockedUntil(until)));
            }
            if from_here >= max {
                return Ok(Err(LoginError::Blocked(until)));
            }
            return Ok(Err(LoginError::BadCredentials));
        }
        if row["disabled"].as_bool() == Some(true) {
            return Ok(Err(LoginError::Disabled));
        }
        let role = row["role"].as_str().and_then(Role::parse).unwrap_or(Role::Viewer);
        let two_factor = row["totp_enabled"].as_bool() == Some(true);
        let token = random_token();
        let hash = token_hash(&token);
        let csrf = random_token();
        self.store
            .execute(
                "UPDATE type::record('admin_user', $u) SET failures = 0, locked_until = NONE, last_login_at = time::now();
                 CREATE type::record('session', $h) CONTENT {
                     user: $u, csrf: $csrf, ip: $ip, created_at: time::now(), last_seen_at: time::now(),
                     mfa_pending: $mfa, mfa_failures: 0
                 };",
                json!({ "u": username, "h": hash, "csrf": csrf, "ip": ip, "mfa": two_factor }),
            )
            .await?;
        Ok(Ok((
            token,
            Principal {
                username: username.to_string(),
                role,
                csrf,
                session_hash: hash,
                via_token: false,
                mfa_pending: two_factor,
            },
        )))
    }

    /// The principal of a session cookie, if the session is still valid (touching it).
    pub async fn session(&self, token: &str) -> anyhow::Result<Option<Principal>> {
        let hash = token_hash(token);
        let rows: Vec<Value> = self
            .store
            .query_one(
                "SELECT user, csrf, mfa_pending, <string>created_at AS created_at, <string>last_seen_at AS last_seen_at,
                    (SELECT role, disabled, <string>sessions_valid_after AS valid_after
                     FROM ONLY type::record('admin_user', $parent.user)) AS owner
                 FROM type::record('session', $h)",
                json!({ "h": hash }),
                0,
            )
            .await?;
        let Some(row) = rows.into_iter().next() else { return Ok(None) };
        let now = Utc::now();
        let time = |v: &Value| v.as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok());
        let (Some(created), Some(seen)) = (time(&row["created_at"]), time(&row["last_seen_at"])) else {
            return Ok(None);
        };
        let owner = &row["owner"];
        let idle = Duration::minutes(i64::try_from(self.config.session_idle_minutes).unwrap_or(60));
        let absolute = Duration::hours(i64::try_from(self.config.session_absolute_hours).unwrap_or(12));
        let revoked = time(&owner["valid_after"]).is_some_and(|t| t > created);
        if owner.is_null()
            || owner["disabled"].as_bool() == Some(true)
            || revoked
            || now - seen > idle
            || now - created > absolute
        {
            self.store.execute("DELETE type::record('session', $h)", json!({ "h": hash })).await?;
            return Ok(None);
        }
        // Touch at most once a minute: a page view is not a write.
        if now - seen > Duration::seconds(60) {
            self.store
                .execute("UPDATE type::record('session', $h) SET last_seen_at = time::now()", json!({ "h": hash }))
                .await?;
        }
        Ok(Some(Principal {
            username: row["user"].as_str().unwrap_or_default().to_string(),
            role: owner["role"].as_str().and_then(Role::parse).unwrap_or(Role::Viewer),
            csrf: row["csrf"].as_str().unwrap_or_default().to_string(),
            session_hash: hash,
            via_token: false,
            mfa_pending: row["mfa_pending"].as_bool() == Some(true),
        }))
    }

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
        let locked: Vec<Option<String>> = self
            .store
            .query_one(
                "SELECT VALUE IF mfa_locked_until { <string>mfa_locked_until } FROM type::record('admin_user', $u)",
                json!({ "u": username }),
                0,
            )
            .await?;
        if let Some(until) = locked.into_iter().flatten().next().and_then(|s| s.parse::<DateTime<Utc>>().ok())
            && until > now
        {
            return Ok(SecondFactor::Locked(until));
        }
        if self.complete_second_factor(session_hash, username, code).await? {
            self.store
                .execute(
                    "UPDATE type::record('admin_user', $u) SET mfa_failures = 0, mfa_locked_until = NONE",
                    json!({ "u": username }),
                )
                .await?;
            return Ok(SecondFactor::Passed);
        }
        let until = now + Duration::minutes(i64::try_from(self.config.lockout_minutes).unwrap_or(15));
        let failures: Vec<u64> = self
            .store
            .query_one(
                "UPDATE type::record('admin_user', $u) SET mfa_failures = (mfa_failures OR 0) + 1 RETURN VALUE mfa_failures",
                json!({ "u": username }),
                0,
            )
            .await?;
        if failures.first().copied().unwrap_or(0) >= MFA_MAX_FAILURES {
            self.store
                .execute(
                    "UPDATE type::record('admin_user', $u) SET mfa_failures = 0, mfa_locked_until = <datetime>$until",
                    json!({ "u": username, "until": until.to_rfc3339() }),
                )
                .await?;
            return Ok(SecondFactor::Locked(until));
        }
        Ok(SecondFactor::Wrong)
    }

    /// Replaces a session by a new one (a new cookie value and CSRF token) once its second
    /// factor passed, so a cookie value seen before the login completed is worth nothing.
    /// Answers the new cookie value.
    pub async fn rotate_session(&self, old_hash: &str, username: &str, ip: &str) -> anyhow::Result<String> {
        let token = random_token();
        self.store
            .execute(
                "BEGIN TRANSACTION;
                 DELETE type::record('session', $old);
                 CREATE type::record('session', $h) CONTENT {
                     user: $u, csrf: $csrf, ip: $ip, created_at: time::now(), last_seen_at: time::now(),
                     mfa_pending: false, mfa_failures: 0
                 };
                 COMMIT TRANSACTION;",
                json!({ "old": old_hash, "h": token_hash(&token), "u": username, "csrf": random_token(), "ip": ip }),
            )
            .await?;
        Ok(token)
    }

    /// Checks a code and, when it is right, clears the session's pending second factor.
    pub async fn complete_second_factor(&self, session_hash: &str, username: &str, code: &str) -> anyhow::Result<bool> {
        let code = code.trim().replace(' ', "");
        let rows: Vec<Value> = self
            .store
            .query_one("SELECT totp_secret, recovery FROM type::record('admin_user', $u)", json!({ "u": username }), 0)
            .await?;
        let row = rows.into_iter().next().unwrap_or_default();
        let mut ok = false;
        if let Some(sealed) = row["totp_secret"].as_str() {
            let secret = hex::decode(self.sealer.open(sealed, &totp_place(username))?.expose())?;
            if let Some(step) = matching_step(&totp(&secret, username)?, &code) {
                // Each code works once: a step at or before the last one used is a replay.
                let fresh: Vec<Value> = self
                    .store
                    .query_one(
                        "UPDATE type::record('admin_user', $u) SET totp_last_step = $step
                         WHERE (totp_last_step OR 0) < $step RETURN username",
                        json!({ "u": username, "step": step }),
                        0,
                    )
                    .await?;
                ok = !fresh.is_empty();
            }
        }
        if !ok {
            let normal = normal_recovery_code(&code);
            // Codes are stored as keyed hashes; codes given before that, as plain SHA-256.
            for hash in [self.recovery_hash(&normal), token_hash(&normal)] {
                let used: Vec<Value> = self
                    .store
                    .query_one(
                        "UPDATE type::record('admin_user', $u) SET recovery = array::remove(recovery, array::find_index(recovery, $h))
                         WHERE $h IN recovery RETURN username",
                        json!({ "u": username, "h": hash }),
                        0,
                    )
                    .await?;
                if !used.is_empty() {
                    ok = true;
                    break;
                }
            }
        }
        if ok {
            self.store
                .execute(
                    "UPDATE type::record('session', $h) SET mfa_pending = false, last_seen_at = time::now()",
                    json!({ "h": session_hash }),
                )
                .await?;
        } else {
            self.store
                .execute(
                    "UPDATE type::record('session', $h) SET mfa_failures += 1;
                     DELETE type::record('session', $h) WHERE mfa_failures >= 5;",
                    json!({ "h": session_hash }),
                )
                .await?;
        }
        Ok(ok)
    }

    /// Whether a user has two-factor on.
    pub async fn has_totp(&self, username: &str) -> anyhow::Result<bool> {
        let rows: Vec<bool> = self
            .store
            .query_one(
                "SELECT VALUE totp_enabled = true FROM type::record('admin_user', $u)",
                json!({ "u": username }),
                0,
            )
            .await?;
        Ok(rows.first().copied().unwrap_or(false))
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
        self.update_existing(
            username,
            "UPDATE type::record('admin_user', $u) SET totp_pending = $sealed",
            json!({ "sealed": sealed }),
        )
        .await?;
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
        let rows: Vec<Value> = self
            .store
            .query_one("SELECT totp_pending FROM type::record('admin_user', $u)", json!({ "u": username }), 0)
            .await?;
        let Some(sealed) = rows.first().and_then(|r| r["totp_pending"].as_str()).map(str::to_owned) else {
            anyhow::bail!("start two-factor set-up first");
        };
        let secret = hex::decode(self.sealer.open(&sealed, &totp_place(username))?.expose())?;
        if !totp(&secret, username)?.check_current(code.trim()).unwrap_or(false) {
            return Ok(None);
        }
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        let hashes: Vec<String> = codes.iter().map(|c| self.recovery_hash(&normal_recovery_code(c))).collect();
        self.store
            .execute(
                "UPDATE type::record('admin_user', $u) SET totp_secret = $sealed, totp_pending = NONE, totp_enabled = true,
                    recovery = $hashes",
                json!({ "u": username, "sealed": sealed, "hashes": hashes }),
            )
            .await?;
        Ok(Some(codes))
    }

    /// Turns two-factor off (the user, or an admin resetting another user's).
    pub async fn reset_totp(&self, username: &str) -> anyhow::Result<()> {
        self.update_existing(
            username,
            "UPDATE type::record('admin_user', $u) SET totp_enabled = false, totp_secret = NONE, totp_pending = NONE,
                recovery = []",
            json!({}),
        )
        .await
    }

    /// Whether the session with this hash still stands (it exists, its user is enabled and
    /// has not ended their sessions since), without touching it: a live-update stream asks
    /// this, and must not keep an idle session alive.
    pub async fn session_stands(&self, session_hash: &str) -> anyhow::Result<bool> {
        let rows: Vec<Value> = self
            .store
            .query_one(
                "SELECT <string>created_at AS created_at,
                    (SELECT disabled, <string>sessions_valid_after AS valid_after
                     FROM ONLY type::record('admin_user', $parent.user)) AS owner
                 FROM type::record('session', $h)",
                json!({ "h": session_hash }),
                0,
            )
            .await?;
        let Some(row) = rows.into_iter().next() else { return Ok(false) };
        let time = |v: &Value| v.as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok());
        let owner = &row["owner"];
        let revoked = match (time(&owner["valid_after"]), time(&row["created_at"])) {
            (Some(after), Some(created)) => after > created,
            _ => false,
        };
        Ok(!owner.is_null() && owner["disabled"].as_bool() != Some(true) && !revoked)
    }

    pub async fn logout(&self, session_hash: &str) -> anyhow::Result<()> {
        self.store.execute("DELETE type::record('session', $h)", json!({ "h": session_hash })).await
    }

    /// Creates an API token; answers its value (shown once).
    pub async fn create_token(&self, name: &str, role: Role, created_by: &str) -> anyhow::Result<String> {
        anyhow::ensure!(valid_username(name), "token names are 1-64 letters, digits, '.', '_', '-' or '@'");
        let token = format!("vma_{}", random_token());
        self.store
            .execute(
                "CREATE type::record('api_token', $h) CONTENT {
                     name: $name, role: $role, created_by: $by, created_at: time::now(), revoked: false
                 }",
                json!({ "h": token_hash(&token), "name": name, "role": role, "by": created_by }),
            )
            .await
            .context("cannot create the token")?;
        Ok(token)
    }

    pub async fn tokens(&self) -> anyhow::Result<Vec<Value>> {
        self.store
            .query_one(
                "SELECT record::id(id) AS id, name, role, created_by, <string>created_at AS created_at,
                    IF last_used_at { <string>last_used_at } AS last_used_at, revoked
                 FROM api_token ORDER BY created_at DESC",
                json!({}),
                0,
            )
            .await
    }

    pub async fn revoke_token(&self, id: &str) -> anyhow::Result<()> {
        self.store
            .execute(
                "UPDATE type::record('api_token', $id) SET revoked = true, revoked_at = time::now()",
                json!({ "id": id }),
            )
            .await
    }

    /// The principal of a bearer token, if it exists and is not revoked.
    pub async fn token(&self, token: &str) -> anyhow::Result<Option<Principal>> {
        if !token.starts_with("vma_") {
            return Ok(None);
        }
        let hash = token_hash(token);
        let rows: Vec<Value> = self
            .store
            .query_one(
                "UPDATE type::record('api_token', $h) SET last_used_at = time::now()
                 WHERE revoked = false RETURN name, role",
                json!({ "h": hash }),
                0,
            )
            .await?;
        Ok(rows.into_iter().next().map(|row| Principal {
            username: row["name"].as_str().unwrap_or_default().to_string(),
            role: row["role"].as_str().and_then(Role::parse).unwrap_or(Role::Viewer),
            csrf: String::new(),
            session_hash: hash,
            via_token: true,
            mfa_pending: false,
        }))
    }
}

#[cfg(test)]
mod tests {
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
