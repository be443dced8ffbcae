//! API tokens (`vma_…`): created, listed, revoked and looked up by their hash.

use anyhow::Context;
use serde_json::{Value, json};

use super::*;

/// SHA-256 of a secret token, hex (record ids of sessions and API tokens).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// 256 random bits, base64url without padding.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Auth {
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
