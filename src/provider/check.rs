//! `vmauto provider check`: connect with the configured credentials and show what an admin
//! needs to write a template (AZs with free capacity, images, storage tags, VPCs, subnets).
//!
//! Failures are explained, not just reported: a wrong URL, an untrusted certificate, wrong
//! keys and a skewed clock all look like "it does not work" from the outside, and each has a
//! different fix.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};

use super::sangfor::SangforClient;
use super::traffic::{Traffic, TrafficPolicy};
use super::{Capacity, Image, Network, Provider, ProviderError, StorageTag, Subnet, Zone};
use crate::config::{Config, SangforAuth, SangforConfig};
use crate::telemetry::metrics::GatewayMetrics;

/// A clock difference beyond this is reported as the likely cause of a signature rejection.
const SKEW_WARN_SECS: i64 = 300;

/// One AZ with what it offers.
#[derive(Debug, Clone)]
pub struct ZoneReport {
    pub zone: Zone,
    pub capacity: Option<Capacity>,
    pub storage_tags: Vec<StorageTag>,
}

/// What `provider check` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub base_url: String,
    pub auth: SangforAuth,
    pub version: String,
    pub zones: Vec<ZoneReport>,
    pub images: Vec<Image>,
    pub networks: Vec<(Network, Vec<Subnet>)>,
    /// Things that did not stop the check but deserve a look.
    pub warnings: Vec<String>,
}

/// How long `provider check` may take in all before it gives up.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Connects to the default SCP (`[provider.sangfor]`) and collects the report.
pub async fn check(config: &Config) -> anyhow::Result<CheckReport> {
    check_provider(&config.provider.sangfor).await
}

/// Checks every provider, `default` first: its name and its report or what went wrong.
pub async fn check_all(config: &Config) -> Vec<(String, anyhow::Result<CheckReport>)> {
    let mut out = Vec::new();
    for (name, cfg) in config.provider_configs() {
        out.push((name.to_string(), check_provider(cfg).await));
    }
    out
}

/// Connects to one SCP and collects the report.
pub async fn check_provider(cfg: &SangforConfig) -> anyhow::Result<CheckReport> {
    tokio::time::timeout(CHECK_TIMEOUT, collect(cfg)).await.map_err(|_| {
        anyhow!("SCP did not answer the whole check within {}s; it may be overloaded", CHECK_TIMEOUT.as_secs())
    })?
}

async fn collect(cfg: &SangforConfig) -> anyhow::Result<CheckReport> {
    let policy = TrafficPolicy { max_retries: cfg.max_retries.min(2), ..TrafficPolicy::from_config(cfg) };
    let traffic = Arc::new(Traffic::new(policy, GatewayMetrics::unregistered(), None));
    let client = SangforClient::new(cfg, traffic).map_err(|e| match e {
        ProviderError::NotConfigured => anyhow!(
            "SCP is not configured.\n - Hint: set [provider.sangfor] base_url and the credentials for auth = \"ec2\" \
             (access_key, secret_key) or auth = \"token\" (username, password) in appliance.toml"
        ),
        other => anyhow!("{other}"),
    })?;
    let mut warnings = Vec::new();
    if !cfg.verify_tls {
        warnings
            .push("TLS verification is off (verify_tls = false); use ca_file with SCP's certificate instead".into());
    }
    let version = match client.version().await {
        Ok(v) => v,
        // The request was authenticated (or it would be 401): the endpoint is just missing.
        Err(ProviderError::NotFound { .. } | ProviderError::Forbidden { .. }) => {
            warnings.push("SCP did not report its version (GET /system/version refused)".into());
            "unknown".into()
        }
        Err(e) => return Err(explain(cfg, e)),
    };
    let zones = client.list_zones().await.map_err(|e| explain(cfg, e)).context("listing AZs")?;
    let mut zone_reports = Vec::new();
    for zone in zones {
        let capacity = match client.zone_capacity(Some(&zone.id)).await {
            Ok(c) => Some(c),
            Err(e) => {
                warnings.push(format!("capacity of AZ {}: {e}", zone.name));
                None
            }
        };
        let storage_tags = client.list_storage_tags(&zone.id).await.unwrap_or_else(|e| {
            warnings.push(format!("storage tags of AZ {}: {e}", zone.name));
            Vec::new()
        });
        zone_reports.push(ZoneReport { zone, capacity, storage_tags });
    }
    let images = client.list_images(None).await.map_err(|e| explain(cfg, e)).context("listing images")?;
    let mut networks = Vec::new();
    for net in client.list_networks(None).await.map_err(|e| explain(cfg, e)).context("listing VPCs")? {
        let subnets = client.list_subnets(&net.id).await.unwrap_or_else(|e| {
            warnings.push(format!("subnets of VPC {}: {e}", net.name));
            Vec::new()
        });
        networks.push((net, subnets));
    }
    Ok(CheckReport {
        base_url: cfg.base_url.clone(),
        auth: cfg.auth,
        version,
        zones: zone_reports,
        images,
        networks,
        warnings,
    })
}

/// Turns a failure into a message that names the likely cause and the fix.
pub fn explain(cfg: &SangforConfig, e: ProviderError) -> anyhow::Error {
    let hint = match &e {
        ProviderError::Connection(_) | ProviderError::Timeout(_) => format!(
            "cannot reach SCP at {}.\n - Hint: check base_url (scheme, address and port; SCP's API often listens on 443 \
             or 4430), DNS, routing and firewalls from this machine.",
            cfg.base_url
        ),
        ProviderError::Tls(_) => format!(
            "SCP's TLS certificate is not trusted.\n - Hint: SCP uses a self-signed certificate by default. Save it \
             (e.g. `openssl s_client -connect {}:443 -showcerts </dev/null`) to a PEM file and set \
             provider.sangfor.ca_file to it. verify_tls = false works for a lab only.",
            url::Url::parse(&cfg.base_url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default()
        ),
        ProviderError::Unauthorized { clock_skew_secs: Some(skew), .. } if skew.abs() > SKEW_WARN_SECS => format!(
            "SCP rejected the request and its clock differs from this machine's by {skew} s.\n - Hint: signatures carry \
             a timestamp; synchronise both clocks (NTP) and try again."
        ),
        ProviderError::Unauthorized { .. } => match cfg.auth {
            SangforAuth::Ec2 => {
                "SCP rejected the signature.\n - Hint: check access_key and secret_key, and that region \
                 and service match what SCP expects (defaults cn-south-1 / open-api)."
                    .into()
            }
            SangforAuth::Token => "SCP rejected the token.\n - Hint: check username and password.".into(),
        },
        ProviderError::Auth(_) => "login failed.\n - Hint: check provider.sangfor.username and password.".into(),
        ProviderError::Protocol(_) => format!(
            "the answer from {} is not SCP's API.\n - Hint: base_url must be SCP's address itself \
             (https://host[:port]), without a path.",
            cfg.base_url
        ),
        ProviderError::Forbidden { .. } => {
            "SCP accepted the credentials but denies the request.\n - Hint: give the account admin rights.".into()
        }
        ProviderError::RateLimited { .. } | ProviderError::CircuitOpen { .. } => {
            "SCP is throttling or failing; try again in a minute.".into()
        }
        _ => return anyhow!("{e}"),
    };
    anyhow!("{hint}\n - Detail: {e}")
}

fn capacity_line(c: &Capacity) -> String {
    let part = |name: &str, item: &Option<super::CapacityItem>| {
        item.as_ref().map(|i| {
            let unit = if i.unit.is_empty() { String::new() } else { format!(" {}", i.unit) };
            format!("{name} {:.0}/{:.0}{unit} free", i.free(), i.total)
        })
    };
    let parts: Vec<String> =
        [part("cpu", &c.cpu), part("memory", &c.memory), part("storage", &c.storage)].into_iter().flatten().collect();
    if parts.is_empty() { "capacity not reported".into() } else { parts.join(", ") }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match self.auth {
            SangforAuth::Ec2 => "EC2 signature",
            SangforAuth::Token => "token",
        };
        writeln!(f, "SCP {}: authenticated ({auth}), version {}", self.base_url, self.version)?;
        writeln!(f, "\nAZs (az_id):")?;
        if self.zones.is_empty() {
            writeln!(f, "  (none visible to this account)")?;
        }
        for z in &self.zones {
            writeln!(
                f,
                "  {}  {}  [{}]  {}",
                z.zone.id,
                z.zone.name,
                z.zone.status,
                z.capacity.as_ref().map(capacity_line).unwrap_or_default()
            )?;
            for t in &z.storage_tags {
                writeln!(f, "      storage_tag_id {}  {}", t.id, t.name)?;
            }
        }
        writeln!(f, "\nImages (image_id):")?;
        for i in &self.images {
            let size = if i.disk_mb > 0 { format!("{} MB disk", i.disk_mb) } else { String::new() };
            let zones = if i.zones.is_empty() { "all AZs".to_string() } else { i.zones.join(",") };
            writeln!(f, "  {}  {}  [{}]  {}  {size}  {zones}", i.id, i.name, i.status, i.os_type)?;
        }
        writeln!(f, "\nVPCs (vpc_id) and subnets (subnet_id):")?;
        for (n, subnets) in &self.networks {
            writeln!(f, "  {}  {}  az {}", n.id, n.name, n.zone_id)?;
            for s in subnets {
                writeln!(f, "      {}  {}  {}  gw {}", s.id, s.name, s.cidr, s.gateway)?;
            }
        }
        for w in &self.warnings {
            writeln!(f, "\nwarning: {w}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_the_usual_mistakes() {
        let cfg = SangforConfig { base_url: "https://10.1.2.3".into(), ..Default::default() };
        let skew =
            ProviderError::Unauthorized { message: String::new(), code: String::new(), clock_skew_secs: Some(3600) };
        assert!(explain(&cfg, skew).to_string().contains("clock"));
        let bad = ProviderError::Unauthorized { message: String::new(), code: String::new(), clock_skew_secs: Some(2) };
        assert!(explain(&cfg, bad).to_string().contains("secret_key"));
        assert!(explain(&cfg, ProviderError::Tls("x".into())).to_string().contains("ca_file"));
        assert!(explain(&cfg, ProviderError::Connection("x".into())).to_string().contains("base_url"));
    }
}
