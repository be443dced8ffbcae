//! The `api_token` table: one row per API token (`vma_…`), keyed by the SHA-256 of the
//! token, with its name, role, creator, times and whether it is revoked.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::admin_user::Role;
use super::lenient;
use crate::db::Store;

id_type!(
    /// The key of an `api_token` row: the SHA-256 of the token, hex.
    TokenId
);

/// An API token as listed (never with its value, which is not stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// The record key: the token's hash.
    #[serde(default, deserialize_with = "lenient")]
    pub id: TokenId,
    #[serde(default, deserialize_with = "lenient")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient")]
    pub role: Role,
    #[serde(default, deserialize_with = "lenient")]
    pub created_by: String,
    #[serde(default, deserialize_with = "lenient")]
    pub created_at: String,
    #[serde(default, deserialize_with = "lenient")]
    pub last_used_at: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub revoked: bool,
}

/// Who a token that was just used speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenGrant {
    #[serde(default, deserialize_with = "lenient")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient")]
    pub role: Role,
}

impl Store {
    /// Stores a new API token under its hash.
    pub async fn create_api_token(
        &self,
        hash: &TokenId,
        name: &str,
        role: Role,
        created_by: &str,
    ) -> anyhow::Result<()> {
        self.execute(
            "CREATE type::record('api_token', $h) CONTENT {
                 name: $name, role: $role, created_by: $by, created_at: time::now(), revoked: false
             }",
            json!({ "h": hash, "name": name, "role": role, "by": created_by }),
        )
        .await
    }

    /// Every API token, the newest first.
    pub async fn api_tokens(&self) -> anyhow::Result<Vec<ApiToken>> {
        self.query_one(
            "SELECT record::id(id) AS id, name, role, created_by, <string>created_at AS created_at,
                IF last_used_at { <string>last_used_at } AS last_used_at, revoked
             FROM api_token ORDER BY created_at DESC",
            json!({}),
            0,
        )
        .await
    }

    /// Revokes the token with this id (its hash).
    pub async fn revoke_api_token(&self, id: &TokenId) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('api_token', $id) SET revoked = true, revoked_at = time::now()",
            json!({ "id": id }),
        )
        .await
    }

    /// Uses the token with hash `hash`: stamps it used and answers whom it speaks for, unless
    /// it does not exist or is revoked.
    pub async fn use_api_token(&self, hash: &TokenId) -> anyhow::Result<Option<TokenGrant>> {
        self.query_first::<TokenGrant>(
            "UPDATE type::record('api_token', $h) SET last_used_at = time::now()
                 WHERE revoked = false RETURN name, role",
            json!({ "h": hash }),
            0,
        )
        .await
    }
}
