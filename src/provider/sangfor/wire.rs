//! SCP's JSON objects translated into the provider-neutral types.
//!
//! Every reader is lenient: missing fields become empty or zero, numbers may be strings,
//! unknown fields are ignored. A surprising answer degrades one field instead of failing the
//! whole operation.

use serde_json::Value;

use super::envelope::{field, number, text, ufield};
use crate::provider::types::{
    Capacity, CapacityItem, Image, Network, Power, Server, ServerId, ServerStatus, StorageTag, Subnet, TaskId,
    TaskState, TaskStatus, Zone,
};
use crate::provider::usage::{MetricSeries, ServerMetrics};

pub fn server(v: &Value) -> Server {
    let status_text = field(v, "status").to_ascii_lowercase();
    let status = match status_text.as_str() {
        "running" => ServerStatus::Running,
        "stopped" | "off" | "shutoff" => ServerStatus::Stopped,
        "suspended" | "paused" => ServerStatus::Suspended,
        "error" => ServerStatus::Error,
        "vm_lost" | "lost" => ServerStatus::Lost,
        "creating" | "cloning" | "starting" | "stopping" | "rebooting" | "updating" | "migrating" | "deleting"
        | "restoring" | "suspending" | "resuming" => ServerStatus::Busy(status_text.clone()),
        _ => ServerStatus::Other(status_text.clone()),
    };
    let power = match field(v, "power_state").to_ascii_lowercase().as_str() {
        "on" | "1" => Power::On,
        "off" | "0" => Power::Off,
        _ => match status {
            ServerStatus::Running => Power::On,
            ServerStatus::Stopped => Power::Off,
            _ => Power::Unknown,
        },
    };
    let mut ips: Vec<String> = Vec::new();
    if let Some(Value::Array(nics)) = v.get("networks") {
        for ip in nics.iter().map(|n| field(n, "ip_address")) {
            if !ip.is_empty() && !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    if let Some(Value::Array(list)) = v.get("ips") {
        for ip in list.iter().map(text) {
            if !ip.is_empty() && !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    let disk_mb =
        system_disk(v).map(|d| ufield(d, "size_mb")).filter(|s| *s > 0).unwrap_or_else(|| ufield(v, "storage_mb"));
    Server {
        id: ServerId(field(v, "id")),
        name: field(v, "name"),
        description: field(v, "description"),
        status,
        power,
        ips,
        cores: u32::try_from(ufield(v, "cores")).unwrap_or(u32::MAX),
        memory_mb: ufield(v, "memory_mb"),
        disk_mb,
        zone_id: field(v, "az_id"),
        image_id: field(v, "image_id"),
    }
}

/// A metrics answer (§5.9): `{"<metric>": {"unit", "granularity", "datapoints": [[time,
/// "14.86"], …]}}`. Values may be strings or numbers; points without a readable time or value
/// (SCP leaves gaps as null or empty) are left out, and the rest sorted oldest first.
/// `None` when `data` is not an object at all.
pub fn metrics(v: &Value) -> Option<ServerMetrics> {
    let parse_time = |t: &Value| chrono::NaiveDateTime::parse_from_str(text(t).trim(), "%Y-%m-%d %H:%M:%S").ok();
    let parse_value = |x: &Value| match x {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let series = v.as_object()?.iter().filter(|(_, m)| m.is_object()).map(|(name, m)| {
        let mut points: Vec<_> = m
            .get("datapoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| Some((parse_time(p.get(0)?)?, parse_value(p.get(1)?).filter(|x| x.is_finite())?)))
            .collect();
        points.sort_by_key(|(at, _)| *at);
        let granularity_secs = u32::try_from(ufield(m, "granularity")).unwrap_or(u32::MAX);
        (name.clone(), MetricSeries { unit: field(m, "unit"), granularity_secs, points })
    });
    Some(series.collect())
}

/// The system disk of a server object: `ide0` if present, else the first disk.
pub fn system_disk(v: &Value) -> Option<&Value> {
    let disks = v.get("disks")?.as_array()?;
    disks.iter().find(|d| field(d, "id") == "ide0").or_else(|| disks.first())
}

pub fn task(id: &TaskId, v: &Value) -> TaskState {
    let progress = number(v.get("progress").unwrap_or(&Value::Null));
    let status = match field(v, "status").to_ascii_lowercase().as_str() {
        "finish" | "finished" | "success" | "succeeded" => TaskStatus::Finished,
        "failure" | "failed" | "error" => TaskStatus::Failed,
        "canceled" | "cancelled" | "canceling" | "cancelling" => TaskStatus::Cancelled,
        "waiting" | "queued" => TaskStatus::Waiting,
        _ if progress >= 100.0 => TaskStatus::Finished,
        _ if progress <= -1.0 && progress > -1.5 => TaskStatus::Failed,
        _ => TaskStatus::Running,
    };
    let object_id = field(v, "object_id");
    TaskState {
        id: id.clone(),
        status,
        progress: if status == TaskStatus::Finished { 100 } else { progress.clamp(0.0, 100.0) as u8 },
        message: field(v, "description"),
        object_id: (!object_id.is_empty()).then_some(object_id),
    }
}

pub fn zone(v: &Value) -> Zone {
    Zone { id: field(v, "id"), name: field(v, "name"), status: field(v, "status") }
}

pub fn storage_tag(v: &Value) -> StorageTag {
    StorageTag { id: field(v, "id"), name: field(v, "name") }
}

pub fn image(v: &Value) -> Image {
    let zones = match v.get("azs") {
        Some(Value::Array(azs)) => {
            azs.iter().map(|a| if a.is_object() { field(a, "id") } else { text(a) }).filter(|s| !s.is_empty()).collect()
        }
        _ => Vec::new(),
    };
    let disk_mb = v
        .get("disks")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .map(|d| ufield(d, "size_mb"))
        .filter(|s| *s > 0)
        .unwrap_or_else(|| ufield(v, "size_mb"));
    Image {
        id: field(v, "id"),
        name: field(v, "name"),
        status: field(v, "status"),
        os_type: field(v, "os_type"),
        disk_mb,
        zones,
    }
}

pub fn network(v: &Value) -> Network {
    Network { id: field(v, "id"), name: field(v, "name"), zone_id: field(v, "az_id") }
}

pub fn subnet(v: &Value) -> Subnet {
    Subnet {
        id: field(v, "id"),
        name: field(v, "name"),
        network_id: field(v, "vpc_id"),
        cidr: field(v, "cidr"),
        gateway: field(v, "gateway_ip"),
    }
}

/// Capacity from an overview or AZ object: `virtual_resources` (allocated / total, what a
/// new VM competes for), falling back to `physical_resources` (used / total).
pub fn capacity(v: &Value) -> Capacity {
    let mut cap = Capacity::default();
    for (key, used_key) in [("physical_resources", "used"), ("virtual_resources", "allocated")] {
        let Some(Value::Array(items)) = v.get(key) else { continue };
        for item in items {
            let used = item.get(used_key).or_else(|| item.get("used")).map(number).unwrap_or_default();
            let entry = CapacityItem {
                total: number(item.get("total").unwrap_or(&Value::Null)),
                used,
                unit: field(item, "unit"),
            };
            match field(item, "name").to_ascii_lowercase().as_str() {
                "cpu" | "vcpu" => cap.cpu = Some(entry),
                "memory" | "mem" => cap.memory = Some(entry),
                "storage" | "disk" => cap.storage = Some(entry),
                _ => {}
            }
        }
    }
    cap
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_the_documented_server_object() {
        let v = json!({"id":"u1","name":"vm1","description":"vmauto:i:v1","status":"running","power_state":"on",
            "az_id":"az","cores":"2","sockets":1,"memory_mb":2048,"storage_mb":81920,"image_id":"img",
            "disks":[{"id":"ide0","type":"derive_disk","size_mb":"81920","preallocate":0}],
            "networks":[{"vif_id":"net0","ip_address":"192.168.10.5"}],"ips":["192.168.10.5","10.0.0.9"],
            "unknown_field":{"x":1}});
        let s = server(&v);
        assert_eq!(s.id.as_str(), "u1");
        assert_eq!(s.status, ServerStatus::Running);
        assert_eq!(s.power, Power::On);
        assert_eq!((s.cores, s.memory_mb, s.disk_mb), (2, 2048, 81920));
        assert_eq!(s.ips, vec!["192.168.10.5", "10.0.0.9"]);
        let busy = server(&json!({"id":"u2","status":"creating"}));
        assert!(busy.status.is_busy());
        assert_eq!(busy.power, Power::Unknown);
    }

    #[test]
    fn task_states() {
        let id = TaskId::from("t");
        assert_eq!(task(&id, &json!({"status":"waiting","progress":-2})).status, TaskStatus::Waiting);
        let doing = task(&id, &json!({"status":"doing","progress":"40"}));
        assert_eq!((doing.status, doing.progress), (TaskStatus::Running, 40));
        assert_eq!(task(&id, &json!({"status":"finish","progress":100})).status, TaskStatus::Finished);
        assert_eq!(task(&id, &json!({"progress":100})).status, TaskStatus::Finished);
        let failed = task(&id, &json!({"status":"failure","progress":-1,"description":"no space"}));
        assert_eq!((failed.status, failed.message.as_str()), (TaskStatus::Failed, "no space"));
        assert_eq!(task(&id, &json!({"status":"canceled"})).status, TaskStatus::Cancelled);
    }

    #[test]
    fn capacity_prefers_virtual_resources() {
        let v = json!({"virtual_resources":[{"name":"CPU","total":64,"allocated":"16","unit":"core"},
            {"name":"Memory","total":262144,"allocated":65536,"unit":"MB"}],
            "physical_resources":[{"name":"storage","total":1000,"used":250}]});
        let c = capacity(&v);
        assert_eq!(c.cpu.as_ref().map(CapacityItem::free), Some(48.0));
        assert_eq!(c.memory.as_ref().map(|m| m.used), Some(65536.0));
        assert_eq!(c.storage.as_ref().map(CapacityItem::free), Some(750.0));
    }

    #[test]
    fn image_zones_as_ids_or_objects() {
        let i = image(&json!({"id":"i","azs":["a",{"id":"b"}],"disks":[{"id":"ide0","size_mb":40960}]}));
        assert_eq!(i.zones, vec!["a", "b"]);
        assert_eq!(i.disk_mb, 40960);
    }
}
