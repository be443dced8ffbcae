//! What a create or clone request asks for, checked as SCP checks it: disks, NICs, the CPU and
//! memory shape, and whether the AZ has room (sangfor-scp-api.md §5.1).

use serde_json::{Value, json};

use super::input::{flag, opt_str, req_u64};
use super::reply::ApiError;
use super::servers::{MAX_CORES, MAX_DISK_MB, MAX_MEMORY_MB};
use super::world::{Disk, Nic, World, cidr_contains};

pub(super) fn parse_disks(list: &Value) -> Result<Vec<Disk>, ApiError> {
    let items = list.as_array().ok_or_else(|| ApiError::bad_request("field `disks` must be an array"))?;
    if items.len() > 16 {
        return Err(ApiError::bad_request("at most 16 disks (ide0..ide15)"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let obj = d.as_object().ok_or_else(|| ApiError::bad_request(format!("disks[{i}] must be an object")))?;
            Ok(Disk {
                id: opt_str(obj, "id")?.map_or_else(|| format!("ide{i}"), str::to_string),
                kind: opt_str(obj, "type")?.unwrap_or("new_disk").to_string(),
                size_mb: disk_size(req_u64(obj, "size_mb")?)?,
                preallocate: obj.get("preallocate").cloned().unwrap_or(json!("off")),
                volume_id: None,
            })
        })
        .collect()
}

/// A disk size within 1..=MAX_DISK_MB.
pub fn disk_size(size_mb: u64) -> Result<u64, ApiError> {
    if (1..=MAX_DISK_MB).contains(&size_mb) {
        Ok(size_mb)
    } else {
        Err(ApiError::bad_request(format!("size_mb must be 1..={MAX_DISK_MB}")))
    }
}

/// The disks of a new VM: given ones checked against the image, or the image's template disk.
pub(super) fn disks_for(image: &Value, given: Option<&Value>) -> Result<Vec<Disk>, ApiError> {
    let iso = image["disk_format"] == "ISO";
    let template = image["disks"].get(0);
    let template_mb = template.and_then(|d| d["size_mb"].as_u64()).unwrap_or(0);
    let disks = match given {
        Some(list) => parse_disks(list)?,
        None if iso => return Err(ApiError::bad_request("an ISO image needs at least one disk of type new_disk")),
        None => vec![Disk {
            id: template.and_then(|d| d["id"].as_str()).unwrap_or("ide0").to_string(),
            kind: "derive_disk".into(),
            size_mb: template_mb,
            preallocate: json!("off"),
            volume_id: None,
        }],
    };
    if iso && !disks.iter().any(|d| d.kind == "new_disk") {
        return Err(ApiError::bad_request("an ISO image needs at least one disk of type new_disk"));
    }
    if let Some(d) = disks.iter().find(|d| d.kind == "derive_disk" && d.size_mb < template_mb) {
        return Err(ApiError::bad_request(format!(
            "disk {} ({} MB) is smaller than the image's disk ({template_mb} MB)",
            d.id, d.size_mb
        )));
    }
    if disks.iter().any(|d| d.size_mb == 0) {
        return Err(ApiError::bad_request("disk size_mb must be greater than 0"));
    }
    Ok(disks)
}

/// Checks the NICs of a create body against the pool's VPCs and subnets. Returns the NICs
/// (without MAC and IP yet) and each one's fixed IP, if asked for.
pub(super) fn parse_nics(
    world: &World,
    az_id: &str,
    list: &Value,
    count: u64,
) -> Result<Vec<(Nic, Option<String>)>, ApiError> {
    let items = list.as_array().ok_or_else(|| ApiError::bad_request("field `networks` must be an array"))?;
    if items.len() > 10 {
        return Err(ApiError::bad_request("at most 10 NICs"));
    }
    let mut out = Vec::new();
    for (i, n) in items.iter().enumerate() {
        let obj = n.as_object().ok_or_else(|| ApiError::bad_request(format!("networks[{i}] must be an object")))?;
        let fixed = obj
            .get("ip_info")
            .and_then(Value::as_object)
            .map(|info| opt_str(info, "ip_address"))
            .transpose()?
            .flatten()
            .map(str::to_string);
        let vif_id = opt_str(obj, "vif_id")?.map_or_else(|| format!("net{i}"), str::to_string);
        let model = opt_str(obj, "model")?.unwrap_or("virtio").to_string();
        let connect = i64::from(flag(obj, "connect", true)?);
        let (vpc_id, subnet_id) = match (opt_str(obj, "vpc_id")?, opt_str(obj, "subnet_id")?) {
            (Some(vpc), Some(subnet)) => {
                if !world.vpcs.iter().any(|v| v["id"] == vpc && v["az_id"] == az_id) {
                    return Err(ApiError::bad_request(format!("vpc {vpc} does not exist in resource pool {az_id}")));
                }
                let sn = world
                    .subnet(subnet)
                    .filter(|s| s["vpc_id"] == vpc)
                    .ok_or_else(|| ApiError::bad_request(format!("subnet {subnet} does not exist in vpc {vpc}")))?;
                if let Some(ip) = &fixed {
                    let cidr = sn["cidr"].as_str().unwrap_or("");
                    if !cidr_contains(cidr, ip) {
                        return Err(ApiError::bad_request(format!("ip {ip} is not in subnet {subnet} ({cidr})")));
                    }
                    if world.ip_in_use(subnet, ip) {
                        return Err(ApiError::conflict(format!("ip {ip} is already in use in subnet {subnet}")));
                    }
                    if count > 1 {
                        return Err(ApiError::bad_request("a fixed ip cannot be used with count > 1"));
                    }
                }
                (vpc.to_string(), subnet.to_string())
            }
            (None, None) if obj.contains_key("device_id") => {
                if obj.get("port_id").is_none() || fixed.is_none() {
                    return Err(ApiError::new(
                        400,
                        "0x12009001005F",
                        "a classic-network NIC needs port_id and ip_info.ip_address",
                    ));
                }
                (String::new(), String::new())
            }
            _ => return Err(ApiError::bad_request(format!("networks[{i}] needs vpc_id and subnet_id"))),
        };
        let nic = Nic { vif_id, vpc_id, subnet_id, connect, model, mac_address: String::new(), ip: String::new() };
        out.push((nic, fixed));
    }
    Ok(out)
}

/// Why a pool cannot take `vcpus`/`memory_mb`/`storage_mb` more, if it cannot.
pub fn capacity_shortfall(
    world: &World,
    az_id: &str,
    tag_id: &str,
    vcpus: u64,
    memory_mb: u64,
    storage_mb: u64,
) -> Option<String> {
    let az = world.az(az_id)?;
    let used = world.allocation(az_id);
    if used.vcpus.saturating_add(vcpus) > az.vcpu_total {
        return Some(format!(
            "Insufficient CPU resources in resource pool {}: {vcpus} vCPU requested, {} available",
            az.name,
            az.vcpu_total.saturating_sub(used.vcpus)
        ));
    }
    if used.memory_mb.saturating_add(memory_mb) > az.memory_total_mb {
        return Some(format!(
            "Insufficient memory in resource pool {}: {memory_mb} MB requested, {} MB available",
            az.name,
            az.memory_total_mb.saturating_sub(used.memory_mb)
        ));
    }
    let tag = world.storage_tags.iter().find(|t| t.id == tag_id)?;
    let free = tag.total_mb.saturating_sub(world.storage_used(tag_id));
    (storage_mb > free).then(|| {
        format!(
            "Insufficient storage on {} in resource pool {}: {storage_mb} MB requested, {free} MB available",
            tag.name, az.name
        )
    })
}

pub(super) fn check_shape(cores: u64, sockets: u64, memory_mb: u64) -> Result<(), ApiError> {
    if sockets == 0 || cores == 0 || cores > MAX_CORES {
        return Err(ApiError::bad_request(format!("cores must be 1..={MAX_CORES} and sockets at least 1")));
    }
    if cores < sockets || !cores.is_multiple_of(sockets) {
        return Err(ApiError::bad_request("cores (total) must be a multiple of sockets"));
    }
    if !(128..=MAX_MEMORY_MB).contains(&memory_mb) {
        return Err(ApiError::bad_request(format!("memory_mb must be 128..={MAX_MEMORY_MB}")));
    }
    Ok(())
}
