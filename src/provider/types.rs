//! Provider-neutral values: what the lifecycle asks for and what it gets back.
//!
//! Nothing here names an SCP field; the Sangfor client translates to and from its wire
//! format, so another platform can fill the same types.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }
    };
}

id_type!(
    /// A server (VM) id on the provider.
    ServerId
);
id_type!(
    /// An asynchronous task id on the provider; persisted by the caller so a wait survives a
    /// restart.
    TaskId
);

/// The idempotency key of one lifecycle operation (its id, or the id plus a step name).
///
/// The provider derives its request token from it (SCP: `X-Client-Token`), so the same
/// operation retried, or resumed after a crash, sends the same token and the platform
/// answers the replay instead of acting twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpKey(pub String);

impl OpKey {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// A random key, for one-off calls that no operation record stands behind (admin tools,
    /// tests). Retries of the same call still reuse it.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The key of a sub-step of this operation (an operation that makes several writes needs
    /// a distinct token for each, or the platform would treat the second as a replay).
    pub fn step(&self, step: &str) -> Self {
        Self(format!("{}/{step}", self.0))
    }

    /// 32 lower-case hex characters derived from the key and the action: stable across
    /// retries and restarts, distinct per action.
    pub fn token(&self, action: &str) -> String {
        let digest = Sha256::digest(format!("vmauto:{}:{action}", self.0).as_bytes());
        hex::encode(&digest[..16])
    }
}

impl fmt::Display for OpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One network interface of a new server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    pub network_id: String,
    pub subnet_id: String,
    /// A fixed IP address; `None` lets the platform allocate one.
    #[serde(default)]
    pub ip: Option<String>,
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    pub name: String,
    pub zone_id: String,
    pub image_id: String,
    pub storage_tag_id: String,
    pub cores: u32,
    #[serde(default = "one")]
    pub sockets: u32,
    pub memory_mb: u64,
    /// System disk size; `None` keeps the image's size.
    #[serde(default)]
    pub disk_mb: Option<u64>,
    #[serde(default)]
    pub nics: Vec<NicSpec>,
    /// The ownership tag (`vmauto:<install-id>:<vps-id>`), written into the description so
    /// the appliance can find its VMs and never touch one it does not own.
    pub owner_tag: String,
    #[serde(default = "yes")]
    pub power_on: bool,
    /// The guest's hostname, when the order chose one (SCP's `hostname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// Answer to a create: the task to wait for and, when the platform returns it at once, the
/// new server's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub server_id: Option<ServerId>,
    pub task_id: TaskId,
}

/// Lifecycle state of a server as the platform reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerStatus {
    Running,
    Stopped,
    Suspended,
    /// Creating, starting, stopping, rebooting, updating, migrating, …: wait and look again.
    Busy(String),
    Error,
    /// The platform lost track of the VM (SCP `vm_lost`).
    Lost,
    Other(String),
}

impl ServerStatus {
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Busy(_))
    }
}

impl fmt::Display for ServerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Running => f.write_str("running"),
            Self::Stopped => f.write_str("stopped"),
            Self::Suspended => f.write_str("suspended"),
            Self::Busy(s) | Self::Other(s) => f.write_str(s),
            Self::Error => f.write_str("error"),
            Self::Lost => f.write_str("lost"),
        }
    }
}

/// Power state, when the platform reports it separately from the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Power {
    On,
    Off,
    Unknown,
}

/// A server as the lifecycle sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    pub id: ServerId,
    pub name: String,
    pub description: String,
    pub status: ServerStatus,
    pub power: Power,
    /// Addresses the guest reports (empty until its tools are up).
    pub ips: Vec<String>,
    pub cores: u32,
    pub memory_mb: u64,
    /// System disk size.
    pub disk_mb: u64,
    pub zone_id: String,
    pub image_id: String,
}

impl Server {
    /// Whether the description carries `tag` as a whole word.
    pub fn has_tag(&self, tag: &str) -> bool {
        !tag.is_empty() && self.description.split_whitespace().any(|w| w == tag)
    }

    /// The first description word starting with `prefix`, if any.
    pub fn tag_with_prefix(&self, prefix: &str) -> Option<&str> {
        self.description.split_whitespace().find(|w| !prefix.is_empty() && w.starts_with(prefix))
    }
}

/// Task progress as the platform reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Waiting,
    Running,
    Finished,
    Failed,
    Cancelled,
}

impl TaskStatus {
    /// Finished, failed or cancelled: polling again changes nothing.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        })
    }
}

/// One look at a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    pub id: TaskId,
    pub status: TaskStatus,
    /// 0–100; unknown or queued is 0.
    pub progress: u8,
    /// The failure reason, when there is one.
    pub message: String,
    /// The object the task acts on (a server id for server tasks), when reported.
    pub object_id: Option<String>,
}

/// A resource pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    pub id: String,
    pub name: String,
    pub status: String,
}

/// One resource of a capacity overview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityItem {
    pub total: f64,
    pub used: f64,
    pub unit: String,
}

impl CapacityItem {
    pub fn free(&self) -> f64 {
        (self.total - self.used).max(0.0)
    }
}

/// Allocated versus total CPU and memory (and storage when reported).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Capacity {
    pub cpu: Option<CapacityItem>,
    pub memory: Option<CapacityItem>,
    pub storage: Option<CapacityItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageTag {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub status: String,
    pub os_type: String,
    /// Size of the image's system disk (the minimum for a new server), 0 when unknown.
    pub disk_mb: u64,
    /// Zones the image can be used in; empty means any.
    pub zones: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub zone_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub name: String,
    pub network_id: String,
    pub cidr: String,
    pub gateway: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_tokens_are_stable_hex_and_distinct_per_action() {
        let op = OpKey::new("operation:abc");
        let t = op.token("create");
        assert_eq!(t.len(), 32);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(t, OpKey::new("operation:abc").token("create"));
        assert_ne!(t, op.token("start"));
        assert_ne!(op.step("soft").token("stop"), op.step("force").token("stop"));
    }

    #[test]
    fn tag_matches_whole_words_only() {
        let mut s = Server {
            id: "1".into(),
            name: "n".into(),
            description: "vmauto:i:vps-10 created by vmauto".into(),
            status: ServerStatus::Running,
            power: Power::On,
            ips: vec![],
            cores: 1,
            memory_mb: 1,
            disk_mb: 1,
            zone_id: String::new(),
            image_id: String::new(),
        };
        assert!(s.has_tag("vmauto:i:vps-10"));
        assert!(!s.has_tag("vmauto:i:vps-1"));
        assert!(!s.has_tag(""));
        s.description.clear();
        assert!(!s.has_tag("vmauto:i:vps-10"));
    }
}
