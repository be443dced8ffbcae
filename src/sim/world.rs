//! The simulated cloud: what SCP would hold in its database, and nothing about HTTP.
//!
//! The world is plain data (serde), so the whole of it can be written to the state file and
//! shown by the control endpoint. Catalogue objects that the simulator only lists (images,
//! VPCs, floating IPs, projects, hosts) are kept as the JSON SCP would return, because their
//! only behaviour is to be filtered; objects with behaviour (servers, tasks, volumes, pools)
//! are typed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Milliseconds since the Unix epoch: survives a restart, unlike `Instant`.
pub type Millis = i64;

/// The current wall-clock time in milliseconds.
pub fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// SCP's `YYYY-MM-DD HH:MM:SS` timestamps (platform time; the simulator's platform runs on UTC).
pub fn scp_time(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A resource pool (AZ) and its capacity. Allocation is never stored: it is summed from the
/// servers, so a create consumes and a permanent delete returns without bookkeeping drift.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Az {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub tag: String,
    /// Allocatable vCPUs.
    pub vcpu_total: u64,
    pub memory_total_mb: u64,
    /// Physical CPU frequency sum, for `physical_resources` (MHz).
    pub cpu_total_mhz: u64,
}

/// A storage tag (datastore class) in a pool, with its capacity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorageTag {
    pub id: String,
    pub name: String,
    pub az_id: String,
    pub storage_id: String,
    pub storage_name: String,
    pub total_mb: u64,
}

/// Status of a server (sangfor-scp-api.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmStatus {
    Creating,
    Cloning,
    Starting,
    Running,
    Stopping,
    Stopped,
    Rebooting,
    Suspended,
    Updating,
    Migrating,
    Error,
    VmLost,
}

impl VmStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Cloning => "cloning",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Rebooting => "rebooting",
            Self::Suspended => "suspended",
            Self::Updating => "updating",
            Self::Migrating => "migrating",
            Self::Error => "error",
            Self::VmLost => "vm_lost",
        }
    }
    /// The guest is powered (consumes no less than when running).
    pub fn powered(self) -> bool {
        matches!(self, Self::Running | Self::Rebooting | Self::Stopping | Self::Suspended)
    }
}

/// A virtual NIC of a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Nic {
    pub vif_id: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub connect: i64,
    pub model: String,
    pub mac_address: String,
    /// The address vmtools reports once the guest has booted; empty without a subnet.
    pub ip: String,
}

/// A disk of a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Disk {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub size_mb: u64,
    pub preallocate: Value,
    /// Set for a volume attached with the `attach_volume` action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
}

/// A virtual machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub description: String,
    pub status: VmStatus,
    pub az_id: String,
    pub host_id: String,
    pub storage_tag_id: String,
    pub image_id: String,
    pub project_id: String,
    pub cores: u64,
    pub sockets: u64,
    pub memory_mb: u64,
    pub os_type: String,
    pub os_name: String,
    pub hostname: String,
    pub disks: Vec<Disk>,
    pub networks: Vec<Nic>,
    pub advance_param: Value,
    pub created_ms: Millis,
    /// Creation order, for stable listing.
    pub seq: u64,
    /// When vmtools reports the IP: set when the guest boots, cleared when it stops.
    pub ip_ready_ms: Option<Millis>,
    /// In the recycle bin: hidden from the API until restored (§7).
    pub recycled: bool,
    /// The unfinished task working on this server; other changes are refused meanwhile.
    pub busy_task: Option<String>,
    /// When the guest powered on and off, oldest first (at most [`POWER_LOG_LEN`] marks); the
    /// metrics endpoint draws its series from it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub power_log: Vec<PowerMark>,
}

/// How many power changes a server remembers.
pub const POWER_LOG_LEN: usize = 32;

/// The guest powered on (`on`) or off at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerMark {
    pub at: Millis,
    pub on: bool,
}

impl Server {
    pub fn storage_mb(&self) -> u64 {
        self.disks.iter().map(|d| d.size_mb).sum()
    }
    /// Whether vmtools has reported the guest's addresses at `now`.
    pub fn reports_ip(&self, now: Millis) -> bool {
        self.status == VmStatus::Running && self.ip_ready_ms.is_some_and(|t| now >= t)
    }
    /// Records that the guest powered on or off at `at` (nothing when it already was).
    pub fn mark_power(&mut self, at: Millis, on: bool) {
        if self.power_log.last().is_some_and(|m| m.on == on) {
            return;
        }
        self.power_log.push(PowerMark { at, on });
        if self.power_log.len() > POWER_LOG_LEN {
            self.power_log.remove(0);
        }
    }
    /// Since when the guest has been running at `t`, or `None` when it was off then. Before
    /// the first mark the guest was in the opposite state; without marks (a server from an
    /// older state file) it is taken to have been as it is now since it was created.
    pub fn on_since(&self, t: Millis) -> Option<Millis> {
        match self.power_log.iter().rev().find(|m| m.at <= t) {
            Some(m) => m.on.then_some(m.at),
            None => match self.power_log.first() {
                Some(first) => (!first.on).then_some(self.created_ms),
                None => (self.status == VmStatus::Running).then_some(self.created_ms),
            },
        }
    }
}

/// A data volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub description: String,
    pub az_id: String,
    pub storage_tag_id: String,
    pub size_mb: u64,
    pub preallocate: Value,
    pub server_id: String,
    pub created_ms: Millis,
    pub busy_task: Option<String>,
}

/// The whole simulated platform. This is what the state file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct World {
    pub azs: Vec<Az>,
    pub storage_tags: Vec<StorageTag>,
    pub hosts: Vec<Value>,
    pub images: Vec<Value>,
    pub vpcs: Vec<Value>,
    pub subnets: Vec<Value>,
    pub floating_ip_pools: Vec<Value>,
    pub floating_ips: Vec<Value>,
    pub projects: Vec<Value>,
    pub servers: BTreeMap<String, Server>,
    pub volumes: BTreeMap<String, Volume>,
    pub tasks: BTreeMap<String, super::tasks::Task>,
    /// Counter for creation order (servers, tasks).
    pub next_seq: u64,
}

/// What a pool has handed out, summed from its servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocation {
    pub vcpus: u64,
    pub memory_mb: u64,
    pub servers: u64,
    pub running: u64,
}

impl World {
    pub fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    pub fn az(&self, id: &str) -> Option<&Az> {
        self.azs.iter().find(|a| a.id == id)
    }

    /// A live (not recycled) server.
    pub fn server(&self, id: &str) -> Option<&Server> {
        self.servers.get(id).filter(|s| !s.recycled)
    }

    /// CPU and memory handed out in a pool: every server that exists counts, recycled ones
    /// too, because SCP keeps a recycled VM's reservation until it is purged.
    pub fn allocation(&self, az_id: &str) -> Allocation {
        let mut a = Allocation::default();
        for s in self.servers.values().filter(|s| s.az_id == az_id) {
            a.vcpus += s.cores;
            a.memory_mb += s.memory_mb;
            a.servers += 1;
            if s.status.powered() {
                a.running += 1;
            }
        }
        a
    }

    /// Space used on a storage tag by server disks and volumes.
    pub fn storage_used(&self, tag_id: &str) -> u64 {
        let disks: u64 = self
            .servers
            .values()
            .filter(|s| s.storage_tag_id == tag_id)
            .flat_map(|s| s.disks.iter().filter(|d| d.volume_id.is_none()))
            .map(|d| d.size_mb)
            .sum();
        let volumes: u64 = self.volumes.values().filter(|v| v.storage_tag_id == tag_id).map(|v| v.size_mb).sum();
        disks + volumes
    }

    pub fn subnet(&self, id: &str) -> Option<&Value> {
        self.subnets.iter().find(|s| s["id"] == id)
    }

    /// Every address held by a NIC or a subnet's reserved range in a subnet.
    pub fn ip_in_use(&self, subnet_id: &str, ip: &str) -> bool {
        self.servers.values().flat_map(|s| s.networks.iter()).any(|n| n.subnet_id == subnet_id && n.ip == ip)
    }

    /// The first free host address of a subnet's CIDR from `.10` up, skipping the gateway.
    pub fn allocate_ip(&self, subnet_id: &str, taken: &[String]) -> Option<String> {
        let subnet = self.subnet(subnet_id)?;
        let (base, prefix) = parse_cidr(subnet["cidr"].as_str()?)?;
        let size = 1u64 << (32 - prefix);
        let gateway = subnet["gateway_ip"].as_str().unwrap_or("");
        (10..size.saturating_sub(1)).find_map(|offset| {
            let ip = std::net::Ipv4Addr::from(base.wrapping_add(offset as u32)).to_string();
            let free = ip != gateway && !taken.contains(&ip) && !self.ip_in_use(subnet_id, &ip);
            free.then_some(ip)
        })
    }
}

/// `a.b.c.d/n` → (network as u32, n). Only IPv4, as SCP subnets in this simulator are.
pub fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (addr, prefix) = cidr.split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let prefix: u32 = prefix.parse().ok()?;
    if !(8..=30).contains(&prefix) {
        return None;
    }
    let mask = u32::MAX << (32 - prefix);
    Some((u32::from(addr) & mask, prefix))
}

/// Whether `ip` is a host address inside `cidr`.
pub fn cidr_contains(cidr: &str, ip: &str) -> bool {
    let (Some((base, prefix)), Ok(addr)) = (parse_cidr(cidr), ip.parse::<std::net::Ipv4Addr>()) else {
        return false;
    };
    let mask = u32::MAX << (32 - prefix);
    u32::from(addr) & mask == base
}

pub const AZ_A: &str = "6b7a1c2e-0a4f-4c1e-9d7e-3f1a0c5e7a01";
pub const AZ_B: &str = "6b7a1c2e-0a4f-4c1e-9d7e-3f1a0c5e7b02";
pub const TAG_A_SSD: &str = "st-a-ssd-0001";
pub const TAG_A_HDD: &str = "st-a-hdd-0002";
pub const TAG_B_SSD: &str = "st-b-ssd-0003";
pub const IMG_UBUNTU: &str = "img-ubuntu-2204-0001";
pub const VPC_A: &str = "vpc-a-0001";
pub const VPC_B: &str = "vpc-b-0002";
pub const SUBNET_A1: &str = "subnet-a1-0001";
pub const SUBNET_A2: &str = "subnet-a2-0002";
pub const SUBNET_B1: &str = "subnet-b1-0003";
pub const PROJECT_DEFAULT: &str = "proj-default-0001";

fn host(id: &str, name: &str, ip: &str, az: &str, cluster: &str, cpu: &str) -> Value {
    json!({
        "id": id, "name": name, "ip": ip, "status": "running", "type": "h", "az_id": az,
        "cluster_name": cluster, "cpu": {"type": cpu, "ratio": 0.21},
        "memory": {"ratio": 0.34, "total_mb": 262_144}, "alarm_count": 0
    })
}

fn image(id: &str, name: &str, format: &str, os_type: &str, disk_mb: u64, status: &str) -> Value {
    let disks = if format == "aCloud" {
        json!([{"id": "ide0", "size_mb": disk_mb, "tpl_config": {"cpu_hotplug": 1, "mem_hotplug": 1}}])
    } else {
        json!([])
    };
    json!({
        "id": id, "name": name, "status": status, "disk_format": format, "image_type": "public",
        "os_type": os_type, "size_mb": disk_mb, "visibility": "public", "azs": [], "disks": disks
    })
}

fn subnet(id: &str, name: &str, vpc: &str, az: &str, cidr: &str, gateway: &str, pool: (&str, &str)) -> Value {
    json!({
        "id": id, "name": name, "status": "active", "vpc_id": vpc, "az_id": az, "cidr": cidr,
        "gateway_ip": gateway, "allocation_pools": [{"start": pool.0, "end": pool.1}],
        "dns_nameservers": ["10.0.0.2"], "shared": 0, "description": ""
    })
}

/// A believable small cloud: two HCI pools (a roomy one and a small one whose limits are easy to
/// reach), storage tags, five images, a VPC per pool with subnets, a floating-IP pool, two
/// projects, and no servers (tests and demos start from an empty tenant).
pub fn seed() -> World {
    let azs = vec![
        Az {
            id: AZ_A.into(),
            name: "POOL-A".into(),
            kind: "hci".into(),
            tag: "public".into(),
            vcpu_total: 192,
            memory_total_mb: 786_432,
            cpu_total_mhz: 3 * 32 * 2_400,
        },
        Az {
            id: AZ_B.into(),
            name: "POOL-B".into(),
            kind: "hci".into(),
            tag: "private".into(),
            vcpu_total: 32,
            memory_total_mb: 65_536,
            cpu_total_mhz: 16 * 2_100,
        },
    ];
    let storage_tags = vec![
        StorageTag {
            id: TAG_A_SSD.into(),
            name: "SSD".into(),
            az_id: AZ_A.into(),
            storage_id: "ds-a-vs-ssd".into(),
            storage_name: "vs_ssd_a".into(),
            total_mb: 20 * 1_048_576,
        },
        StorageTag {
            id: TAG_A_HDD.into(),
            name: "HDD".into(),
            az_id: AZ_A.into(),
            storage_id: "ds-a-vs-hdd".into(),
            storage_name: "vs_hdd_a".into(),
            total_mb: 60 * 1_048_576,
        },
        StorageTag {
            id: TAG_B_SSD.into(),
            name: "SSD".into(),
            az_id: AZ_B.into(),
            storage_id: "ds-b-vs-ssd".into(),
            storage_name: "vs_ssd_b".into(),
            total_mb: 2 * 1_048_576,
        },
    ];
    let hosts = vec![
        host(
            "host-0050569a0001",
            "10.0.0.11",
            "10.0.0.11",
            AZ_A,
            "cluster-a",
            "Intel(R) Xeon(R) Gold 6330 CPU @ 2.00GHz",
        ),
        host(
            "host-0050569a0002",
            "10.0.0.12",
            "10.0.0.12",
            AZ_A,
            "cluster-a",
            "Intel(R) Xeon(R) Gold 6330 CPU @ 2.00GHz",
        ),
        host(
            "host-0050569a0003",
            "10.0.0.13",
            "10.0.0.13",
            AZ_A,
            "cluster-a",
            "Intel(R) Xeon(R) Gold 6330 CPU @ 2.00GHz",
        ),
        host(
            "host-0050569b0001",
            "10.0.1.11",
            "10.0.1.11",
            AZ_B,
            "cluster-b",
            "Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz",
        ),
    ];
    let images = vec![
        image(IMG_UBUNTU, "Ubuntu-22.04-x64", "aCloud", "linux", 40_960, "active"),
        image("img-debian-12-0002", "Debian-12-x64", "aCloud", "linux", 20_480, "active"),
        image("img-rocky-9-0003", "Rocky-9.3-x64", "aCloud", "linux", 40_960, "active"),
        image("img-win2019-0004", "Windows-Server-2019-DC", "aCloud", "windows", 81_920, "active"),
        image("img-ubuntu-iso-0005", "ubuntu-24.04-live-server-amd64.iso", "ISO", "linux", 2_662, "active"),
    ];
    let vpcs = vec![
        json!({"id": VPC_A, "name": "vpc-default-a", "status": "active", "az_id": AZ_A, "type": "vpc", "shared": 0, "description": "default VPC of POOL-A"}),
        json!({"id": VPC_B, "name": "vpc-default-b", "status": "active", "az_id": AZ_B, "type": "vpc", "shared": 0, "description": "default VPC of POOL-B"}),
    ];
    let subnets = vec![
        subnet(SUBNET_A1, "subnet-a-web", VPC_A, AZ_A, "10.10.1.0/24", "10.10.1.1", ("10.10.1.10", "10.10.1.254")),
        subnet(SUBNET_A2, "subnet-a-db", VPC_A, AZ_A, "10.10.2.0/24", "10.10.2.1", ("10.10.2.10", "10.10.2.254")),
        subnet(SUBNET_B1, "subnet-b-app", VPC_B, AZ_B, "10.20.1.0/24", "10.20.1.1", ("10.20.1.10", "10.20.1.254")),
    ];
    let floating_ip_pools = vec![json!({
        "id": "fippool-0001", "name": "internet-line-1", "ip_count": 14,
        "allocation_pools": [{"start": "203.0.113.2", "end": "203.0.113.15"}], "az_ids": [AZ_A, AZ_B]
    })];
    let floating_ips = (2..5)
        .map(|i| {
            json!({
                "id": format!("fip-000{i}"), "project_id": PROJECT_DEFAULT, "subnet_id": "",
                "floating_ip": format!("203.0.113.{i}"), "floatingip_pool_id": "fippool-0001",
                "floating_port_id": format!("port-fip-000{i}"), "sharedbandwidth_id": "",
                "bandwidth": {"qos_uplink": 100_000, "qos_downlink": 100_000}, "status": "active"
            })
        })
        .collect();
    let projects = vec![
        json!({"id": PROJECT_DEFAULT, "name": "default", "user_name": "admin", "enabled": 1, "azs": [AZ_A, AZ_B], "dhs": [], "role_type": "admin"}),
        json!({"id": "proj-tenant-0002", "name": "tenant-demo", "user_name": "demo", "enabled": 1, "azs": [AZ_A], "dhs": [], "role_type": "tenant"}),
    ];
    World {
        azs,
        storage_tags,
        hosts,
        images,
        vpcs,
        subnets,
        floating_ip_pools,
        floating_ips,
        projects,
        servers: BTreeMap::new(),
        volumes: BTreeMap::new(),
        tasks: BTreeMap::new(),
        next_seq: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_helpers() {
        assert_eq!(parse_cidr("10.10.1.0/24"), Some((0x0A0A_0100, 24)));
        assert!(cidr_contains("10.10.1.0/24", "10.10.1.77"));
        assert!(!cidr_contains("10.10.1.0/24", "10.10.2.77"));
        assert!(!cidr_contains("10.10.1.0/24", "nonsense"));
        let w = seed();
        assert_eq!(w.allocate_ip(SUBNET_A1, &[]).as_deref(), Some("10.10.1.10"));
        assert_eq!(w.allocate_ip(SUBNET_A1, &["10.10.1.10".into()]).as_deref(), Some("10.10.1.11"));
    }
}
