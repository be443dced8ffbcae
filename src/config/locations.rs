//! `[locations.<name>]`: where an order may ask its VPS to be built. A location is an
//! ordered list of (provider, AZ) candidates and a placement policy; a template lists the
//! locations an order may choose (`Template::locations`).

use serde::{Deserialize, Serialize};

/// One place a location may build in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    /// The provider's name (`default`: `[provider.sangfor]`).
    #[serde(default = "default_provider")]
    pub provider: String,
    /// The SCP availability zone (resource pool) id.
    pub az: String,
    /// The storage tag, VPC and subnet in this AZ; empty: the template's (which belong to the
    /// template's own AZ).
    #[serde(default)]
    pub storage_tag_id: String,
    #[serde(default)]
    pub vpc_id: String,
    #[serde(default)]
    pub subnet_id: String,
}

fn default_provider() -> String {
    "default".into()
}

/// How a location picks among its candidates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementPolicy {
    /// The first candidate that can hold the VM (fill one AZ before the next).
    #[default]
    Fill,
    /// The candidate with the most room left (spread VMs over the AZs).
    Spread,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocationConfig {
    pub candidates: Vec<Candidate>,
    pub policy: PlacementPolicy,
}

/// Checks the locations; the error names the key.
pub fn check_locations(
    locations: &std::collections::BTreeMap<String, LocationConfig>,
    providers: &[&str],
) -> Result<(), String> {
    for (name, l) in locations {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
            return Err(format!("locations.{name}: a location name may hold only letters, digits, '-', '_' and '.'"));
        }
        if l.candidates.is_empty() {
            return Err(format!(
                "locations.{name}.candidates: list at least one {{ provider, az }}, e.g. candidates = [{{ az = \"az-1\" }}]"
            ));
        }
        for (i, c) in l.candidates.iter().enumerate() {
            if c.az.trim().is_empty() {
                return Err(format!("locations.{name}.candidates[{i}].az: must not be empty"));
            }
            if !providers.contains(&c.provider.as_str()) {
                return Err(format!(
                    "locations.{name}.candidates[{i}].provider: {:?} is not a configured provider (known: {})",
                    c.provider,
                    providers.join(", ")
                ));
            }
        }
    }
    Ok(())
}
