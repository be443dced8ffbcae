//! Admin users: adding, listing, passwords, roles, disabling.

use serde_json::{Value, json};

use super::*;

impl Auth {
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

    pub(super) async fn update_existing(&self, username: &str, sql: &str, mut bindings: Value) -> anyhow::Result<()> {
        bindings["u"] = json!(username);
        let sql = format!(
            "IF (SELECT VALUE id FROM type::record('admin_user', $u))[0] == NONE {{ THROW 'no user named ' + $u; }}; {sql};"
        );
        self.store.execute(&sql, bindings).await
    }
}
