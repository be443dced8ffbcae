//! Admin users: adding, listing, passwords, roles, disabling.

use super::*;

impl Auth {
    pub async fn user_count(&self) -> anyhow::Result<u64> {
        self.store.admin_user_count().await
    }

    pub async fn users(&self) -> anyhow::Result<Vec<User>> {
        self.store.admin_users().await
    }

    /// Adds a user; fails if the name is taken.
    pub async fn add_user(&self, username: &str, password: &str, role: Role) -> anyhow::Result<()> {
        anyhow::ensure!(valid_username(username), "usernames are 1-64 letters, digits, '.', '_', '-' or '@'");
        check_password_policy(password).map_err(anyhow::Error::msg)?;
        let hash = hash_password(password)?;
        self.store.add_admin_user(&Username::from(username), &hash, role).await
    }

    /// Sets a new password, unlocks the account and ends its sessions.
    pub async fn set_password(&self, username: &str, password: &str) -> anyhow::Result<()> {
        check_password_policy(password).map_err(anyhow::Error::msg)?;
        let hash = hash_password(password)?;
        self.failures.lock().forget_user(username);
        self.store.set_admin_password(&Username::from(username), &hash).await
    }

    pub async fn set_role(&self, username: &str, role: Role) -> anyhow::Result<()> {
        self.store.set_admin_role(&Username::from(username), role).await
    }

    /// Disables (or enables) a user; disabling ends their sessions and tokens at once.
    pub async fn set_disabled(&self, username: &str, disabled: bool) -> anyhow::Result<()> {
        self.store.set_admin_disabled(&Username::from(username), disabled).await
    }

    /// Ends every session of a user ("log out everywhere").
    pub async fn end_all_sessions(&self, username: &str) -> anyhow::Result<()> {
        let user = Username::from(username);
        self.store.invalidate_admin_sessions(&user).await?;
        self.store.delete_sessions_of(&user).await
    }
}
