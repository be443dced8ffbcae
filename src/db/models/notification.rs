//! The `notification` table, and the rows of other tables that notifications need.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::db::Store;

/// The VPS fields the customer's "your VPS is ready" email needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpsContact {
    /// The billing source that ordered the VPS.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub customer_email: Option<String>,
    #[serde(default)]
    pub customer_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub ips: Vec<String>,
}

/// The VPS fields the customer's "your upgrade is applied" email needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradedVps {
    #[serde(default)]
    pub customer_email: Option<String>,
    #[serde(default)]
    pub customer_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub spec: UpgradedSpec,
}

/// The hardware of an upgraded VPS, as the email shows it: the shape of `lifecycle::Spec`,
/// which `db` cannot name (`lifecycle` uses `db`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradedSpec {
    pub cores: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
}

/// What a reveal link shows of its VPS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealedVps {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub ips: Vec<String>,
    /// Sealed (see `secrets::root_password_place`).
    #[serde(default)]
    pub root_password: Option<String>,
}

// VPS rows as notifications need them.
impl Store {
    /// The contact fields of VPS `vps` (the key, without `vps:`), if it exists.
    pub async fn vps_contact(&self, vps: &str) -> anyhow::Result<Option<VpsContact>> {
        let rows: Vec<VpsContact> = self
            .query_one(
                "SELECT source, customer_email, customer_name, name, ips FROM type::record('vps', $id)",
                json!({ "id": vps }),
                0,
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// The contact fields and hardware of upgraded VPS `vps`, if it exists.
    pub async fn upgraded_vps(&self, vps: &str) -> anyhow::Result<Option<UpgradedVps>> {
        let rows: Vec<UpgradedVps> = self
            .query_one(
                "SELECT customer_email, customer_name, name, spec FROM type::record('vps', $id)",
                json!({ "id": vps }),
                0,
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// The name of VPS `vps` for the reveal page: None when the VPS or its name is missing.
    pub async fn reveal_vps_name(&self, vps: &str) -> anyhow::Result<Option<String>> {
        let names: Vec<Option<String>> =
            self.query_one("SELECT VALUE name FROM type::record('vps', $id)", json!({ "id": vps }), 0).await?;
        Ok(names.into_iter().next().flatten())
    }

    /// The name, addresses and sealed root password of VPS `vps`, if it exists.
    pub async fn revealed_vps(&self, vps: &str) -> anyhow::Result<Option<RevealedVps>> {
        let rows: Vec<RevealedVps> = self
            .query_one("SELECT name, ips, root_password FROM type::record('vps', $id)", json!({ "id": vps }), 0)
            .await?;
        Ok(rows.into_iter().next())
    }
}
