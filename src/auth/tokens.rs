//! API tokens (`vma_…`): created, listed, revoked and looked up by their hash.

use anyhow::Context;

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
            .create_api_token(&TokenId::new(token_hash(&token)), name, role, created_by)
            .await
            .context("cannot create the token")?;
        Ok(token)
    }

    /// Every API token, the newest first.
    pub async fn tokens(&self) -> anyhow::Result<Vec<ApiToken>> {
        self.store.api_tokens().await
    }

    pub async fn revoke_token(&self, id: &TokenId) -> anyhow::Result<()> {
        self.store.revoke_api_token(id).await
    }

    /// The principal of a bearer token, if it exists and is not revoked.
    pub async fn token(&self, token: &str) -> anyhow::Result<Option<Principal>> {
        if !token.starts_with("vma_") {
            return Ok(None);
        }
        let hash = TokenId::new(token_hash(token));
        let grant = self.store.use_api_token(&hash).await?;
        Ok(grant.map(|g| Principal {
            username: g.name,
            role: g.role,
            csrf: String::new(),
            session_hash: hash.into(),
            via_token: true,
            mfa_pending: false,
        }))
    }
}
