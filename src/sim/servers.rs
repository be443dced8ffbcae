//! Servers (VMs): render, list, get, create, clone, update and delete (sangfor-scp-api.md
//! §5.1, §6). Power actions live in `server_ops`.

use serde_json::{Map, Value, json};

use super::auth::decrypt_password;
use super::input::{Ctx, contains_ci, flag, opt_str, opt_u64, req_str, req_u64};
use super::reply::{ApiError, ApiResult, Outcome, page};
use super::server_spec::{capacity_shortfall, check_shape, disks_for, parse_disks, parse_nics};
use super::service::{Sim, TaskSpec};
use super::tasks::{Effect, ServerPatch};
use super::world::{Disk, Millis, Nic, Server, VmStatus, World, scp_time};

/// Largest VM the platform accepts in one request.
pub(super) const MAX_CORES: u64 = 128;
pub(super) const MAX_MEMORY_MB: u64 = 4 * 1_048_576;
pub(super) const MAX_COUNT: u64 = 20;
/// Largest disk or volume (64 TiB); also keeps every capacity sum far from overflowing.
pub const MAX_DISK_MB: u64 = 64 * 1_048_576;

/// The server object of §6, as `GET /servers/{id}` and list items show it.
pub fn render(world: &World, s: &Server, now: Millis) -> Value {
    let az_name = world.az(&s.az_id).map_or("", |a| a.name.as_str());
    let host = world.hosts.iter().find(|h| h["id"] == s.host_id.as_str());
    let host_name = host.and_then(|h| h["name"].as_str()).unwrap_or("");
    let tag = world.storage_tags.iter().find(|t| t.id == s.storage_tag_id);
    let ip_visible = s.reports_ip(now);
    let mut ips = Vec::new();
    let networks: Vec<Value> = s
        .networks
        .iter()
        .map(|n| {
            let ip = if ip_visible && n.connect != 0 && !n.ip.is_empty() { n.ip.as_str() } else { "" };
            if !ip.is_empty() {
                ips.push(ip.to_string());
            }
            let subnet_name = world.subnet(&n.subnet_id).and_then(|sn| sn["name"].as_str()).unwrap_or("");
            json!({
                "vif_id": n.vif_id, "vpc_id": n.vpc_id, "subnet_id": n.subnet_id,
                "subnet_name": subnet_name, "connect": n.connect, "model": n.model,
                "mac_address": n.mac_address, "ip_address": ip,
            })
        })
        .collect();
    let uptime = if ip_visible { s.ip_ready_ms.map_or(0, |t| (now - t).max(0) / 1000) } else { 0 };
    json!({
        "id": s.id, "name": s.name, "description": s.description,
        "status": s.status.as_str(), "power_state": if s.status.powered() { "on" } else { "off" },
        "az_id": s.az_id, "az_name": az_name, "host_id": s.host_id, "host_name": host_name,
        "storage_id": tag.map_or("", |t| t.storage_id.as_str()),
        "storage_name": tag.map_or("", |t| t.storage_name.as_str()),
        "storage_tag_id": s.storage_tag_id, "image_id": s.image_id, "project_id": s.project_id,
        "tenant_id": s.project_id,
        "cores": s.cores, "sockets": s.sockets, "memory_mb": s.memory_mb, "storage_mb": s.storage_mb(),
        "os_type": s.os_type, "os_name": s.os_name, "hostname": s.hostname,
        "disks": s.disks, "networks": networks, "ips": ips,
        "advance_param": s.advance_param, "type": "hci", "vmtype": "hci",
        "uptime": uptime, "is_stopped": i64::from(!s.status.powered()),
        "created_at": scp_time(s.created_ms),
    })
}

/// `GET /servers`: filters `az_id`, `name` (partial), `status`, `host_id`, `tenant_id` /
/// `project_id`, `description` (partial) and `keywords` (partial over name, description, id
/// and IPs), so a client can find the VMs it tagged in their description.
pub fn list(sim: &Sim, ctx: &Ctx<'_>) -> ApiResult {
    let q = &ctx.query;
    let (az, name, status, host) = (q.get("az_id"), q.get("name"), q.get("status"), q.get("host_id"));
    let project = q.get("tenant_id").or_else(|| q.get("project_id"));
    let (description, keywords) = (q.get("description"), q.get("keywords"));
    let mut matched: Vec<&Server> = sim
        .world
        .servers
        .values()
        .filter(|s| !s.recycled)
        .filter(|s| az.is_none_or(|v| s.az_id == v))
        .filter(|s| name.is_none_or(|v| contains_ci(&s.name, v)))
        .filter(|s| status.is_none_or(|v| s.status.as_str() == v))
        .filter(|s| host.is_none_or(|v| s.host_id == v))
        .filter(|s| project.is_none_or(|v| s.project_id == v))
        .filter(|s| description.is_none_or(|v| contains_ci(&s.description, v)))
        .filter(|s| {
            keywords.is_none_or(|k| {
                contains_ci(&s.name, k)
                    || contains_ci(&s.description, k)
                    || s.id.contains(k)
                    || s.networks.iter().any(|n| !n.ip.is_empty() && n.ip.contains(k))
            })
        })
        .collect();
    matched.sort_by_key(|s| s.seq);
    Ok(Outcome::Data(page(&matched, q, |s| render(&sim.world, s, ctx.now))?))
}

pub fn get(sim: &Sim, ctx: &Ctx<'_>, id: &str, detailed: bool) -> ApiResult {
    let s = sim.world.server(id).ok_or_else(|| ApiError::not_found("server", id))?;
    let mut v = render(&sim.world, s, ctx.now);
    if detailed && let Value::Object(adv) = &mut v["advance_param"] {
        adv.entry("cpu_type").or_insert(json!("host"));
        adv.entry("bios").or_insert(json!({"bios_type": "SEABIOS", "boot_delay_seconds": 0}));
        adv.entry("graphic_type").or_insert(json!("std"));
        adv.entry("numa").or_insert(json!(0));
    }
    Ok(Outcome::Data(v))
}

/// A live server that is not in the middle of another task.
pub fn idle<'w>(world: &'w World, id: &str) -> Result<&'w Server, ApiError> {
    let s = world.server(id).ok_or_else(|| ApiError::not_found("server", id))?;
    match &s.busy_task {
        Some(task) => Err(ApiError::conflict(format!("server {id} is busy with task {task}"))),
        None => Ok(s),
    }
}

/// Everything about a new server except its id, name and address.
struct Blueprint<'a> {
    az_id: &'a str,
    tag_id: &'a str,
    image_id: &'a str,
    project_id: String,
    description: String,
    hostname: String,
    cores: u64,
    sockets: u64,
    memory_mb: u64,
    disks: Vec<Disk>,
    nics: Vec<(Nic, Option<String>)>,
    advance_param: Value,
    status: VmStatus,
}

/// Creates `count` servers from a blueprint and one task for all of them.
fn build(
    sim: &mut Sim,
    ctx: &Ctx<'_>,
    bp: Blueprint<'_>,
    name: &str,
    count: u64,
    action: &'static str,
    power_on: bool,
) -> Result<Value, ApiError> {
    let now = ctx.now;
    let doomed = capacity_shortfall(
        &sim.world,
        bp.az_id,
        bp.tag_id,
        bp.cores * count,
        bp.memory_mb * count,
        bp.disks.iter().map(|d| d.size_mb).sum::<u64>() * count,
    );
    let image = sim.world.images.iter().find(|i| i["id"] == bp.image_id).cloned().unwrap_or(Value::Null);
    let hosts: Vec<String> = sim
        .world
        .hosts
        .iter()
        .filter(|h| h["az_id"] == bp.az_id)
        .filter_map(|h| h["id"].as_str().map(str::to_string))
        .collect();
    let mut ids = Vec::new();
    let mut taken: Vec<String> = Vec::new();
    for i in 0..count {
        let id = sim.new_id();
        let seq = sim.world.seq();
        let mut networks = Vec::new();
        for (nic, fixed) in &bp.nics {
            let mut nic = nic.clone();
            nic.mac_address = sim.new_mac();
            nic.ip = match fixed {
                Some(ip) => ip.clone(),
                None if nic.subnet_id.is_empty() => String::new(),
                None => sim
                    .world
                    .allocate_ip(&nic.subnet_id, &taken)
                    .ok_or_else(|| ApiError::conflict(format!("subnet {} has no free address", nic.subnet_id)))?,
            };
            taken.push(nic.ip.clone());
            networks.push(nic);
        }
        let vm_name = if count == 1 { name.to_string() } else { format!("{name}-{}", i + 1) };
        let host_id = hosts.get((seq as usize) % hosts.len().max(1)).cloned().unwrap_or_default();
        let server = Server {
            id: id.clone(),
            name: vm_name.clone(),
            description: bp.description.clone(),
            status: bp.status,
            az_id: bp.az_id.to_string(),
            host_id,
            storage_tag_id: bp.tag_id.to_string(),
            image_id: bp.image_id.to_string(),
            project_id: bp.project_id.clone(),
            cores: bp.cores,
            sockets: bp.sockets,
            memory_mb: bp.memory_mb,
            os_type: image["os_type"].as_str().unwrap_or("linux").to_string(),
            os_name: image["name"].as_str().unwrap_or("").to_string(),
            hostname: if bp.hostname.is_empty() { vm_name } else { bp.hostname.clone() },
            disks: bp.disks.clone(),
            networks,
            advance_param: bp.advance_param.clone(),
            created_ms: now,
            seq,
            ip_ready_ms: None,
            recycled: false,
            busy_task: None,
            power_log: Vec::new(),
        };
        sim.world.servers.insert(id.clone(), server);
        ids.push(id);
    }
    // Only an injected failure may leave a half-built VM: a capacity refusal builds nothing.
    let leave_vm = doomed.is_none() && ctx.leaves_vm();
    let doomed = doomed.or_else(|| ctx.injected(action));
    let task = sim.submit(
        TaskSpec {
            action,
            object_type: "server",
            object_id: ids.first().cloned().unwrap_or_default(),
            object_name: name.to_string(),
            az_id: bp.az_id.to_string(),
            user: ctx.user(),
            user_ip: ctx.user_ip.to_string(),
            factor: 2.0,
            doomed,
            effect: Effect::Create { server_ids: ids.clone(), power_on, leave_vm },
        },
        now,
    );
    for id in &ids {
        if let Some(s) = sim.world.servers.get_mut(id) {
            s.busy_task = Some(task.clone());
        }
    }
    Ok(json!({"uuids": ids, "uuid": ids.first(), "task_id": task}))
}

/// `POST /servers` (§5.1.1).
pub fn create(sim: &mut Sim, ctx: &Ctx<'_>) -> ApiResult {
    let body = ctx.object()?;
    let az_id = req_str(&body, "az_id")?;
    let image_id = req_str(&body, "image_id")?;
    let tag_id = req_str(&body, "storage_tag_id")?;
    let name = req_str(&body, "name")?;
    let cores = req_u64(&body, "cores")?;
    let memory_mb = req_u64(&body, "memory_mb")?;
    let networks = body.get("networks").ok_or_else(|| ApiError::bad_request("missing required field `networks`"))?;
    let sockets = opt_u64(&body, "sockets")?.unwrap_or(1);
    let count = opt_u64(&body, "count")?.unwrap_or(1);
    let power_on = flag(&body, "power_on", true)?;
    if name.trim().is_empty() || name.len() > 128 {
        return Err(ApiError::bad_request("name must be 1..=128 characters"));
    }
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(ApiError::bad_request(format!("count must be 1..={MAX_COUNT}")));
    }
    check_shape(cores, sockets, memory_mb)?;
    let world = &sim.world;
    if world.az(az_id).is_none() {
        return Err(ApiError::bad_request(format!("resource pool {az_id} does not exist")));
    }
    let image = world
        .images
        .iter()
        .find(|i| i["id"] == image_id)
        .ok_or_else(|| ApiError::bad_request(format!("image {image_id} does not exist")))?;
    if image["status"] != "active" {
        return Err(ApiError::bad_request(format!("image {image_id} is not active")));
    }
    if let Some(azs) = image["azs"].as_array().filter(|a| !a.is_empty())
        && !azs.iter().any(|a| a == az_id || a["id"] == az_id)
    {
        return Err(ApiError::bad_request(format!("image {image_id} is not available in resource pool {az_id}")));
    }
    if !world.storage_tags.iter().any(|t| t.id == tag_id && t.az_id == az_id) {
        return Err(ApiError::bad_request(format!("storage tag {tag_id} does not exist in resource pool {az_id}")));
    }
    let disks = disks_for(image, body.get("disks"))?;
    let nics = parse_nics(world, az_id, networks, count)?;
    if let Some(cipher) = opt_str(&body, "password")? {
        let key = ctx.rsa.ok_or_else(|| ApiError::internal("platform key not ready"))?;
        decrypt_password(key, cipher)?;
    }
    let advance_param = match body.get("advance_param") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(ApiError::bad_request("field `advance_param` must be an object")),
    };
    let bp = Blueprint {
        az_id,
        tag_id,
        image_id,
        project_id: opt_str(&body, "project_id")?.unwrap_or(super::world::PROJECT_DEFAULT).to_string(),
        description: opt_str(&body, "description")?.unwrap_or("").to_string(),
        hostname: opt_str(&body, "hostname")?.unwrap_or("").to_string(),
        cores,
        sockets,
        memory_mb,
        disks,
        nics,
        advance_param,
        status: VmStatus::Creating,
    };
    let name = name.to_string();
    Ok(Outcome::Data(build(sim, ctx, bp, &name, count, "create_server", power_on)?))
}

/// `POST /servers/{id}/clone` (v1 and v2): a full copy with new MACs and addresses.
pub fn clone(sim: &mut Sim, ctx: &Ctx<'_>, id: &str) -> ApiResult {
    let body = ctx.object()?;
    let src = sim.world.server(id).ok_or_else(|| ApiError::not_found("server", id))?.clone();
    let name = req_str(&body, "name")?.to_string();
    let count = opt_u64(&body, "count")?.unwrap_or(1);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(ApiError::bad_request(format!("count must be 1..={MAX_COUNT}")));
    }
    let az_id = opt_str(&body, "az_id")?.unwrap_or(&src.az_id).to_string();
    let tag_id = opt_str(&body, "storage_tag_id")?.unwrap_or(&src.storage_tag_id).to_string();
    if !sim.world.storage_tags.iter().any(|t| t.id == tag_id && t.az_id == az_id) {
        return Err(ApiError::bad_request(format!("storage tag {tag_id} does not exist in resource pool {az_id}")));
    }
    let nics = match body.get("networks") {
        Some(list) => parse_nics(&sim.world, &az_id, list, count)?,
        None => src.networks.iter().map(|n| (n.clone(), None)).collect(),
    };
    let bp = Blueprint {
        az_id: &az_id,
        tag_id: &tag_id,
        image_id: &src.image_id,
        project_id: src.project_id.clone(),
        description: opt_str(&body, "description")?.unwrap_or(&src.description).to_string(),
        hostname: String::new(),
        cores: src.cores,
        sockets: src.sockets,
        memory_mb: src.memory_mb,
        disks: src.disks.iter().filter(|d| d.volume_id.is_none()).cloned().collect(),
        nics,
        advance_param: src.advance_param.clone(),
        status: VmStatus::Cloning,
    };
    let power_on = flag(&body, "power_on", false)?;
    Ok(Outcome::Data(build(sim, ctx, bp, &name, count, "clone_server", power_on)?))
}

fn parse_patch(body: &Map<String, Value>, current: &Server) -> Result<ServerPatch, ApiError> {
    let mut patch = ServerPatch {
        name: opt_str(body, "name")?.map(str::to_string),
        description: opt_str(body, "description")?.map(str::to_string),
        cores: opt_u64(body, "cores")?,
        sockets: opt_u64(body, "sockets")?,
        memory_mb: opt_u64(body, "memory_mb")?,
        os_type: opt_str(body, "os_type")?.map(str::to_string),
        disks: None,
        advance_param: None,
    };
    if patch.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    check_shape(
        patch.cores.unwrap_or(current.cores),
        patch.sockets.unwrap_or(current.sockets),
        patch.memory_mb.unwrap_or(current.memory_mb),
    )?;
    if let Some(list) = body.get("disks") {
        let mut disks = current.disks.clone();
        for d in parse_disks(list)? {
            match disks.iter_mut().find(|e| e.id == d.id) {
                Some(e) if d.size_mb < e.size_mb => {
                    return Err(ApiError::bad_request(format!("disk {} can only grow ({} MB now)", e.id, e.size_mb)));
                }
                Some(e) => e.size_mb = d.size_mb,
                None => disks.push(d),
            }
        }
        patch.disks = Some(disks);
    }
    match body.get("advance_param") {
        None | Some(Value::Null) => {}
        Some(v @ Value::Object(_)) => patch.advance_param = Some(v.clone()),
        Some(_) => return Err(ApiError::bad_request("field `advance_param` must be an object")),
    }
    Ok(patch)
}

/// `PUT /servers/{id}`: rename, describe, resize. Growth beyond the pool fails the task.
pub fn update(sim: &mut Sim, ctx: &Ctx<'_>, id: &str) -> ApiResult {
    let body = ctx.object()?;
    let s = idle(&sim.world, id)?;
    let patch = parse_patch(&body, s)?;
    let grow_cpu = patch.cores.map_or(0, |c| c.saturating_sub(s.cores));
    let grow_mem = patch.memory_mb.map_or(0, |m| m.saturating_sub(s.memory_mb));
    let grow_disk =
        patch.disks.as_ref().map_or(0, |d| d.iter().map(|d| d.size_mb).sum::<u64>().saturating_sub(s.storage_mb()));
    let doomed = capacity_shortfall(&sim.world, &s.az_id, &s.storage_tag_id, grow_cpu, grow_mem, grow_disk)
        .or_else(|| ctx.injected("update_server"));
    let (prev, name, az) = (s.status, s.name.clone(), s.az_id.clone());
    let effect = Effect::Update { server_id: id.to_string(), patch, prev };
    let task = sim.submit(spec(ctx, "update_server", id, name, az, 1.0, doomed, effect), ctx.now);
    set_status(sim, id, VmStatus::Updating);
    Ok(Outcome::Data(json!({"task_id": task})))
}

/// `DELETE /servers/{id}`: `force: 0` to the recycle bin, `1` for good.
pub fn delete(sim: &mut Sim, ctx: &Ctx<'_>, id: &str) -> ApiResult {
    let body = ctx.object()?;
    let permanent = flag(&body, "force", false)? || ctx.query.get("force") == Some("1");
    let s = idle(&sim.world, id)?;
    let (prev, name, az) = (s.status, s.name.clone(), s.az_id.clone());
    let doomed = ctx.injected("delete_server");
    let effect = Effect::Delete { server_id: id.to_string(), permanent, prev };
    let task = sim.submit(spec(ctx, "delete_server", id, name, az, 1.0, doomed, effect), ctx.now);
    if prev.powered() {
        set_status(sim, id, VmStatus::Stopping);
    }
    Ok(Outcome::Data(json!({"task_id": task})))
}

/// `POST /servers/{id}/restore`: back from the recycle bin, powered off.
pub fn restore(sim: &mut Sim, ctx: &Ctx<'_>, id: &str) -> ApiResult {
    let s = sim.world.servers.get(id).ok_or_else(|| ApiError::not_found("server", id))?;
    if !s.recycled {
        return Err(ApiError::bad_request(format!("server {id} is not in the recycle bin")));
    }
    if let Some(task) = &s.busy_task {
        return Err(ApiError::conflict(format!("server {id} is busy with task {task}")));
    }
    let (name, az) = (s.name.clone(), s.az_id.clone());
    let doomed = ctx.injected("restore_server");
    let effect = Effect::Restore { server_id: id.to_string() };
    let task = sim.submit(spec(ctx, "restore_server", id, name, az, 1.0, doomed, effect), ctx.now);
    Ok(Outcome::Data(json!({"task_id": task})))
}

pub fn set_status(sim: &mut Sim, id: &str, status: VmStatus) {
    if let Some(s) = sim.world.servers.get_mut(id) {
        s.status = status;
    }
}

/// A task spec for a task about one server.
#[expect(clippy::too_many_arguments, reason = "a task spec has that many independent parts")]
pub fn spec(
    ctx: &Ctx<'_>,
    action: &'static str,
    id: &str,
    name: String,
    az_id: String,
    factor: f64,
    doomed: Option<String>,
    effect: Effect,
) -> TaskSpec {
    TaskSpec {
        action,
        object_type: "server",
        object_id: id.to_string(),
        object_name: name,
        az_id,
        user: ctx.user(),
        user_ip: ctx.user_ip.to_string(),
        factor,
        doomed,
        effect,
    }
}
