//! The `session` table: one row per admin login, keyed by the SHA-256 of its cookie value,
//! with the user, the CSRF token, the client address, its times and the pending second factor.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::admin_user::{Role, Username};
use super::lenient;
use crate::db::Store;

id_type!(
    /// The key of a `session` row: the SHA-256 of the session cookie's value, hex.
    SessionId
);

/// A session as a request checks it, with what its user's row says of it.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    #[serde(default, deserialize_with = "lenient")]
    pub user: Username,
    #[serde(default, deserialize_with = "lenient")]
    pub csrf: String,
    /// The password was right but the second factor is still to come.
    #[serde(default, deserialize_with = "lenient")]
    pub mfa_pending: bool,
    #[serde(default, deserialize_with = "lenient")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient")]
    pub last_seen_at: Option<DateTime<Utc>>,
    /// None when the user no longer exists.
    #[serde(default)]
    pub owner: Option<SessionOwner>,
}

/// What the user's row says of their sessions.
#[derive(Debug, Clone, Deserialize)]
pub struct SessionOwner {
    #[serde(default, deserialize_with = "lenient")]
    pub role: Role,
    #[serde(default, deserialize_with = "lenient")]
    pub disabled: bool,
    /// Sessions created before this are ended.
    #[serde(default, deserialize_with = "lenient")]
    pub valid_after: Option<DateTime<Utc>>,
}

/// Whether a session still stands, as read without touching it.
#[derive(Debug, Clone, Deserialize)]
pub struct SessionStanding {
    #[serde(default, deserialize_with = "lenient")]
    pub created_at: Option<DateTime<Utc>>,
    /// None when the user no longer exists.
    #[serde(default)]
    pub owner: Option<SessionOwner>,
}

impl Store {
    /// A successful login of `username`: clears the user's failed logins, stamps their last
    /// login and creates the session `hash` (with its second factor pending when `mfa_pending`).
    pub async fn open_session(
        &self,
        username: &Username,
        hash: &SessionId,
        csrf: &str,
        ip: &str,
        mfa_pending: bool,
    ) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('admin_user', $u) SET failures = 0, locked_until = NONE, last_login_at = time::now();
             CREATE type::record('session', $h) CONTENT {
                 user: $u, csrf: $csrf, ip: $ip, created_at: time::now(), last_seen_at: time::now(),
                 mfa_pending: $mfa, mfa_failures: 0
             };",
            json!({ "u": username, "h": hash, "csrf": csrf, "ip": ip, "mfa": mfa_pending }),
        )
        .await
    }

    /// The session `hash` with its user's role, lock and session cut-off, if it exists.
    pub async fn session(&self, hash: &SessionId) -> anyhow::Result<Option<Session>> {
        self.query_first::<Session>(
            "SELECT user, csrf, mfa_pending, <string>created_at AS created_at, <string>last_seen_at AS last_seen_at,
                    (SELECT role, disabled, <string>sessions_valid_after AS valid_after
                     FROM ONLY type::record('admin_user', $parent.user)) AS owner
                 FROM type::record('session', $h)",
            json!({ "h": hash }),
            0,
        )
        .await
    }

    /// What decides whether the session `hash` still stands, if it exists.
    pub async fn session_standing(&self, hash: &SessionId) -> anyhow::Result<Option<SessionStanding>> {
        self.query_first::<SessionStanding>(
            "SELECT <string>created_at AS created_at,
                    (SELECT disabled, <string>sessions_valid_after AS valid_after
                     FROM ONLY type::record('admin_user', $parent.user)) AS owner
                 FROM type::record('session', $h)",
            json!({ "h": hash }),
            0,
        )
        .await
    }

    /// Marks the session `hash` used now.
    pub async fn touch_session(&self, hash: &SessionId) -> anyhow::Result<()> {
        self.execute("UPDATE type::record('session', $h) SET last_seen_at = time::now()", json!({ "h": hash })).await
    }

    /// Replaces the session `old_hash` by a new one, `hash`, whose second factor passed.
    pub async fn rotate_session(
        &self,
        old_hash: &SessionId,
        hash: &SessionId,
        username: &Username,
        csrf: &str,
        ip: &str,
    ) -> anyhow::Result<()> {
        self.execute(
            "BEGIN TRANSACTION;
             DELETE type::record('session', $old);
             CREATE type::record('session', $h) CONTENT {
                 user: $u, csrf: $csrf, ip: $ip, created_at: time::now(), last_seen_at: time::now(),
                 mfa_pending: false, mfa_failures: 0
             };
             COMMIT TRANSACTION;",
            json!({ "old": old_hash, "h": hash, "u": username, "csrf": csrf, "ip": ip }),
        )
        .await
    }

    /// The second factor of the session `hash` passed (it counts as used now).
    pub async fn pass_session_mfa(&self, hash: &SessionId) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('session', $h) SET mfa_pending = false, last_seen_at = time::now()",
            json!({ "h": hash }),
        )
        .await
    }

    /// Counts a wrong second-factor code against the session `hash`; the fifth ends it.
    pub async fn fail_session_mfa(&self, hash: &SessionId) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('session', $h) SET mfa_failures += 1;
             DELETE type::record('session', $h) WHERE mfa_failures >= 5;",
            json!({ "h": hash }),
        )
        .await
    }

    /// Ends the session `hash`.
    pub async fn delete_session(&self, hash: &SessionId) -> anyhow::Result<()> {
        self.execute("DELETE type::record('session', $h)", json!({ "h": hash })).await
    }

    /// Ends every session of `username`.
    pub async fn delete_sessions_of(&self, username: &Username) -> anyhow::Result<()> {
        self.execute("DELETE session WHERE user = $u", json!({ "u": username })).await
    }
}
