//! The `admin_user` table: one row per admin, keyed by username, with the password hash, the
//! role, the login-failure lock, the times that end sessions, and the two-factor secret
//! (sealed), its replay guard and the recovery-code hashes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::lenient;
use crate::db::Store;

/// What a user may do. Ordered: a higher role includes the lower ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Also what a stored role that cannot be read counts as.
    #[default]
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

id_type!(
    /// The key of an `admin_user` row: the user's name.
    Username
);

/// An admin user as listed (never with its hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminUser {
    pub username: Username,
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

/// What a login checks of a user.
#[derive(Debug, Clone, Deserialize)]
pub struct AdminLogin {
    #[serde(default, deserialize_with = "lenient")]
    pub password_hash: String,
    #[serde(default, deserialize_with = "lenient")]
    pub role: Role,
    #[serde(default, deserialize_with = "lenient")]
    pub disabled: bool,
    /// Failed logins since the last success (the per-user backstop).
    #[serde(default, deserialize_with = "lenient")]
    pub failures: u64,
    #[serde(default, deserialize_with = "lenient")]
    pub locked_until: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient")]
    pub totp_enabled: bool,
}

/// The sealed two-factor secrets of a user (a query selects one of them).
#[derive(Deserialize)]
struct TotpSecrets {
    #[serde(default, deserialize_with = "lenient")]
    totp_secret: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    totp_pending: Option<String>,
}

impl Store {
    /// How many admin users there are.
    pub async fn admin_user_count(&self) -> anyhow::Result<u64> {
        let n: Vec<u64> = self.query_one("SELECT VALUE count() FROM admin_user GROUP ALL", json!({}), 0).await?;
        Ok(n.first().copied().unwrap_or(0))
    }

    /// Every admin user, by name.
    pub async fn admin_users(&self) -> anyhow::Result<Vec<AdminUser>> {
        self.query_one(
            "SELECT username, role, disabled OR false AS disabled, totp_enabled = true AS totp, <string>created_at AS created_at,
                IF last_login_at { <string>last_login_at } AS last_login_at,
                IF locked_until { <string>locked_until } AS locked_until
             FROM admin_user ORDER BY username",
            json!({}),
            0,
        )
        .await
    }

    /// Adds a user with a password hash; fails if the name is taken.
    pub async fn add_admin_user(&self, username: &Username, password_hash: &str, role: Role) -> anyhow::Result<()> {
        self.execute(
            "IF (SELECT VALUE id FROM type::record('admin_user', $u))[0] != NONE {
                 THROW 'user ' + $u + ' already exists';
             };
             CREATE type::record('admin_user', $u) CONTENT {
                 username: $u, password_hash: $hash, role: $role, disabled: false, failures: 0,
                 created_at: time::now(), sessions_valid_after: time::now()
             };",
            json!({ "u": username, "hash": password_hash, "role": role }),
        )
        .await
    }

    /// What a login checks of `username`, if the user exists.
    pub async fn admin_login(&self, username: &Username) -> anyhow::Result<Option<AdminLogin>> {
        self.query_first::<AdminLogin>(
            "SELECT username, password_hash, role, disabled, failures, locked_until, totp_enabled
                 FROM type::record('admin_user', $u)",
            json!({ "u": username }),
            0,
        )
        .await
    }

    /// Records failed logins: the count, and the lock when `locked_until` is set (none otherwise).
    pub async fn set_login_failures(
        &self,
        username: &Username,
        failures: u64,
        locked_until: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('admin_user', $u) SET failures = $failures,
                locked_until = IF $lock { <datetime>$until } ELSE { NONE }",
            json!({ "u": username, "failures": failures, "lock": locked_until.is_some(),
                    "until": locked_until.map(|t| t.to_rfc3339()) }),
        )
        .await
    }

    /// Sets a new password hash, unlocks the account and ends its sessions.
    pub async fn set_admin_password(&self, username: &Username, password_hash: &str) -> anyhow::Result<()> {
        self.update_admin_user(
            username,
            "UPDATE type::record('admin_user', $u) SET password_hash = $hash, failures = 0, locked_until = NONE,
                sessions_valid_after = time::now()",
            json!({ "hash": password_hash }),
        )
        .await
    }

    /// Gives a user another role (ending their sessions).
    pub async fn set_admin_role(&self, username: &Username, role: Role) -> anyhow::Result<()> {
        self.update_admin_user(
            username,
            "UPDATE type::record('admin_user', $u) SET role = $role, sessions_valid_after = time::now()",
            json!({ "role": role }),
        )
        .await
    }

    /// Disables (or enables) a user, ending their sessions.
    pub async fn set_admin_disabled(&self, username: &Username, disabled: bool) -> anyhow::Result<()> {
        self.update_admin_user(
            username,
            "UPDATE type::record('admin_user', $u) SET disabled = $disabled, sessions_valid_after = time::now()",
            json!({ "disabled": disabled }),
        )
        .await
    }

    /// Makes every session the user has now invalid (they were opened before this moment).
    pub async fn invalidate_admin_sessions(&self, username: &Username) -> anyhow::Result<()> {
        self.update_admin_user(
            username,
            "UPDATE type::record('admin_user', $u) SET sessions_valid_after = time::now()",
            json!({}),
        )
        .await
    }

    /// When the user's second factor is locked until, if it ever was.
    pub async fn mfa_locked_until(&self, username: &Username) -> anyhow::Result<Option<DateTime<Utc>>> {
        let locked: Vec<Option<String>> = self
            .query_one(
                "SELECT VALUE IF mfa_locked_until { <string>mfa_locked_until } FROM type::record('admin_user', $u)",
                json!({ "u": username }),
                0,
            )
            .await?;
        Ok(locked.into_iter().flatten().next().and_then(|s| s.parse::<DateTime<Utc>>().ok()))
    }

    /// Forgets the user's wrong second-factor codes and any lock they caused.
    pub async fn clear_mfa_failures(&self, username: &Username) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('admin_user', $u) SET mfa_failures = 0, mfa_locked_until = NONE",
            json!({ "u": username }),
        )
        .await
    }

    /// Counts a wrong second-factor code; answers the user's count so far.
    pub async fn count_mfa_failure(&self, username: &Username) -> anyhow::Result<u64> {
        let failures: Vec<u64> = self
            .query_one(
                "UPDATE type::record('admin_user', $u) SET mfa_failures = (mfa_failures OR 0) + 1 RETURN VALUE mfa_failures",
                json!({ "u": username }),
                0,
            )
            .await?;
        Ok(failures.first().copied().unwrap_or(0))
    }

    /// Locks the user's second factor until `until` (and starts counting again).
    pub async fn lock_mfa(&self, username: &Username, until: DateTime<Utc>) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('admin_user', $u) SET mfa_failures = 0, mfa_locked_until = <datetime>$until",
            json!({ "u": username, "until": until.to_rfc3339() }),
        )
        .await
    }

    /// The user's sealed, confirmed two-factor secret, if any.
    pub async fn totp_secret(&self, username: &Username) -> anyhow::Result<Option<String>> {
        let rows: Vec<TotpSecrets> = self
            .query_one("SELECT totp_secret FROM type::record('admin_user', $u)", json!({ "u": username }), 0)
            .await?;
        Ok(rows.into_iter().next().and_then(|r| r.totp_secret))
    }

    /// Uses the 30-second TOTP step `step`: true unless the user is gone or used this step or
    /// a later one already (each code works once).
    pub async fn use_totp_step(&self, username: &Username, step: u64) -> anyhow::Result<bool> {
        let fresh: Vec<Value> = self
            .query_one(
                "UPDATE type::record('admin_user', $u) SET totp_last_step = $step
                 WHERE (totp_last_step OR 0) < $step RETURN username",
                json!({ "u": username, "step": step }),
                0,
            )
            .await?;
        Ok(!fresh.is_empty())
    }

    /// Uses up the recovery code stored as `hash`: true when the user had it.
    pub async fn use_recovery_code(&self, username: &Username, hash: &str) -> anyhow::Result<bool> {
        let used: Vec<Value> = self
            .query_one(
                "UPDATE type::record('admin_user', $u) SET recovery = array::remove(recovery, array::find_index(recovery, $h))
                 WHERE $h IN recovery RETURN username",
                json!({ "u": username, "h": hash }),
                0,
            )
            .await?;
        Ok(!used.is_empty())
    }

    /// Whether a user has two-factor on.
    pub async fn has_totp(&self, username: &Username) -> anyhow::Result<bool> {
        let rows: Vec<bool> = self
            .query_one(
                "SELECT VALUE totp_enabled = true FROM type::record('admin_user', $u)",
                json!({ "u": username }),
                0,
            )
            .await?;
        Ok(rows.first().copied().unwrap_or(false))
    }

    /// Keeps a sealed two-factor secret pending until a code confirms it.
    pub async fn set_totp_pending(&self, username: &Username, sealed: &str) -> anyhow::Result<()> {
        self.update_admin_user(
            username,
            "UPDATE type::record('admin_user', $u) SET totp_pending = $sealed",
            json!({ "sealed": sealed }),
        )
        .await
    }

    /// The user's sealed two-factor secret awaiting confirmation, if any.
    pub async fn totp_pending(&self, username: &Username) -> anyhow::Result<Option<String>> {
        let rows: Vec<TotpSecrets> = self
            .query_one("SELECT totp_pending FROM type::record('admin_user', $u)", json!({ "u": username }), 0)
            .await?;
        Ok(rows.into_iter().next().and_then(|r| r.totp_pending))
    }

    /// Turns two-factor on with the confirmed secret and the recovery codes' hashes.
    pub async fn enable_totp(
        &self,
        username: &Username,
        sealed: &str,
        recovery_hashes: &[String],
    ) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('admin_user', $u) SET totp_secret = $sealed, totp_pending = NONE, totp_enabled = true,
                recovery = $hashes",
            json!({ "u": username, "sealed": sealed, "hashes": recovery_hashes }),
        )
        .await
    }

    /// Turns two-factor off: the secrets and recovery codes go.
    pub async fn disable_totp(&self, username: &Username) -> anyhow::Result<()> {
        self.update_admin_user(
            username,
            "UPDATE type::record('admin_user', $u) SET totp_enabled = false, totp_secret = NONE, totp_pending = NONE,
                recovery = []",
            json!({}),
        )
        .await
    }

    /// Runs `sql` (binding `$u` to `username`) on an existing user; fails "no user named …"
    /// when there is none.
    async fn update_admin_user(&self, username: &Username, sql: &str, mut bindings: Value) -> anyhow::Result<()> {
        bindings["u"] = json!(username);
        let sql = format!(
            "IF (SELECT VALUE id FROM type::record('admin_user', $u))[0] == NONE {{ THROW 'no user named ' + $u; }}; {sql};"
        );
        self.execute(&sql, bindings).await
    }
}
