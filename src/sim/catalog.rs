//! Everything besides servers: pools and capacity, storage tags, images, networks, floating
//! IPs, projects, volumes, tasks and the system endpoints (sangfor-scp-api.md §5.2–§5.9).

use serde_json::{Value, json};

use super::input::{Ctx, contains_ci, opt_str, opt_u64, req_str, req_u64};
use super::reply::{ApiError, ApiResult, Outcome, Query, page};
use super::service::{Sim, TaskSpec};
use super::tasks::Effect;
use super::world::{Az, Volume, World, scp_time};

fn data(v: Value) -> ApiResult {
    Ok(Outcome::Data(v))
}

/// Keeps the JSON objects whose `field` equals the query parameter of the same name (or
/// contains it, for `name`), for each filter given.
fn filtered<'a>(items: &'a [Value], q: &Query, exact: &[&str]) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|item| {
            exact.iter().all(|f| {
                q.get(f).is_none_or(|want| match &item[*f] {
                    Value::String(s) => s == want,
                    Value::Number(n) => n.to_string() == want,
                    _ => false,
                })
            })
        })
        .filter(|item| q.get("name").is_none_or(|n| contains_ci(item["name"].as_str().unwrap_or(""), n)))
        .filter(|item| {
            q.get("keywords").is_none_or(|k| {
                ["name", "description", "floating_ip", "id"]
                    .iter()
                    .any(|f| item[*f].as_str().is_some_and(|s| contains_ci(s, k)))
            })
        })
        .collect()
}

fn find<'a>(items: &'a [Value], kind: &str, id: &str) -> Result<&'a Value, ApiError> {
    items.iter().find(|i| i["id"] == id).ok_or_else(|| ApiError::not_found(kind, id))
}

fn resources(world: &World, az: &Az) -> (Value, Value) {
    let used = world.allocation(&az.id);
    let tags: Vec<_> = world.storage_tags.iter().filter(|t| t.az_id == az.id).collect();
    let storage_total: u64 = tags.iter().map(|t| t.total_mb).sum();
    let storage_used: u64 = tags.iter().map(|t| world.storage_used(&t.id)).sum();
    let mhz_per_vcpu = az.cpu_total_mhz / az.vcpu_total.max(1);
    let virt = json!([
        {"name": "CPU", "total": az.vcpu_total, "allocated": used.vcpus, "used": used.vcpus, "unit": "core"},
        {"name": "Memory", "total": az.memory_total_mb, "allocated": used.memory_mb, "used": used.memory_mb, "unit": "MB"},
        {"name": "Storage", "total": storage_total, "allocated": storage_used, "used": storage_used, "unit": "MB"},
    ]);
    let phys = json!([
        {"name": "cpu", "total": az.cpu_total_mhz, "used": used.vcpus * mhz_per_vcpu, "unit": "MHz"},
        {"name": "memory", "total": az.memory_total_mb, "used": used.memory_mb, "unit": "MB"},
        {"name": "storage", "total": storage_total, "used": storage_used, "unit": "MB"},
    ]);
    (virt, phys)
}

fn render_az(world: &World, az: &Az, detailed: bool) -> Value {
    let mut v = json!({"id": az.id, "name": az.name, "status": "normal", "type": az.kind, "tag": az.tag});
    if detailed {
        let (virt, phys) = resources(world, az);
        v["version"] = json!("6.10.0");
        v["virtual_resources"] = virt;
        v["physical_resources"] = phys;
        v["dhs"] = json!([]);
    }
    v
}

/// `GET /azs` (a bare list, as the platform answers) and `GET /azs/{id}` with capacity.
pub fn azs(sim: &Sim, q: &Query) -> ApiResult {
    let list: Vec<Value> = sim
        .world
        .azs
        .iter()
        .filter(|a| q.get("type").is_none_or(|t| a.kind == t))
        .filter(|a| q.get("tag").is_none_or(|t| a.tag == t))
        .map(|a| render_az(&sim.world, a, true))
        .collect();
    data(Value::Array(list))
}

pub fn az(sim: &Sim, id: &str) -> ApiResult {
    let az = sim.world.az(id).ok_or_else(|| ApiError::not_found("resource pool", id))?;
    data(render_az(&sim.world, az, true))
}

/// `GET /overview`, for one pool (`az_id`) or the whole platform.
pub fn overview(sim: &Sim, q: &Query) -> ApiResult {
    let w = &sim.world;
    let azs: Vec<&Az> = match q.get("az_id") {
        Some(id) => vec![w.az(id).ok_or_else(|| ApiError::not_found("resource pool", id))?],
        None => w.azs.iter().collect(),
    };
    let mut virt = json!([
        {"name": "CPU", "total": 0, "allocated": 0, "used": 0, "unit": "core"},
        {"name": "Memory", "total": 0, "allocated": 0, "used": 0, "unit": "MB"},
        {"name": "Storage", "total": 0, "allocated": 0, "used": 0, "unit": "MB"},
    ]);
    let mut phys = json!([
        {"name": "cpu", "total": 0, "used": 0, "unit": "MHz"},
        {"name": "memory", "total": 0, "used": 0, "unit": "MB"},
        {"name": "storage", "total": 0, "used": 0, "unit": "MB"},
    ]);
    let add = |acc: &mut Value, part: &Value| {
        for (a, p) in acc.as_array_mut().into_iter().flatten().zip(part.as_array().into_iter().flatten()) {
            for key in ["total", "allocated", "used"] {
                if let (Some(x), Some(y)) = (a[key].as_u64(), p[key].as_u64()) {
                    a[key] = json!(x + y);
                }
            }
        }
    };
    let (mut servers, mut running) = (0, 0);
    for az in &azs {
        let (v, p) = resources(w, az);
        add(&mut virt, &v);
        add(&mut phys, &p);
        let a = w.allocation(&az.id);
        servers += a.servers;
        running += a.running;
    }
    let hosts = w.hosts.iter().filter(|h| azs.iter().any(|a| h["az_id"] == a.id.as_str())).count();
    data(json!({
        "virtual_resources": virt, "physical_resources": phys,
        "host": {"total": hosts, "online_count": hosts, "offline_count": 0},
        "server": {"total": servers, "running_count": running, "stopped_count": servers - running},
        "nfv": {"total": 0}, "az": {"total": azs.len(), "online_count": azs.len()},
    }))
}

/// `GET /storages/tags?az_id=`: a bare list with capacity per tag.
pub fn storage_tags(sim: &Sim, q: &Query) -> ApiResult {
    let list: Vec<Value> = sim
        .world
        .storage_tags
        .iter()
        .filter(|t| q.get("az_id").is_none_or(|a| t.az_id == a))
        .map(|t| {
            let used = sim.world.storage_used(&t.id);
            json!({
                "id": t.id, "name": t.name, "az_id": t.az_id, "storage_id": t.storage_id,
                "storage_name": t.storage_name, "total_mb": t.total_mb, "used_mb": used,
                "ratio": used as f64 / t.total_mb.max(1) as f64,
            })
        })
        .collect();
    data(Value::Array(list))
}

/// Paged lists of catalogue objects, with their documented exact-match filters.
pub fn list(items: &[Value], q: &Query, exact: &[&str]) -> ApiResult {
    let matched = filtered(items, q, exact);
    data(page(&matched, q, |v| (*v).clone())?)
}

/// `GET /{kind}/{id}` for catalogue objects.
pub fn one(items: &[Value], kind: &str, id: &str) -> ApiResult {
    data(find(items, kind, id)?.clone())
}

/// A bare list (`floatingippools`, §3.1).
pub fn bare(items: &[Value], q: &Query, exact: &[&str]) -> ApiResult {
    data(Value::Array(filtered(items, q, exact).into_iter().cloned().collect()))
}

pub fn images(sim: &Sim, q: &Query) -> ApiResult {
    let matched: Vec<&Value> = filtered(&sim.world.images, q, &["disk_format", "image_type", "os_type", "status"])
        .into_iter()
        .filter(|i| {
            q.get("az_id").is_none_or(|az| {
                i["azs"].as_array().is_none_or(|l| l.is_empty() || l.iter().any(|a| a == az || a["id"] == az))
            })
        })
        .collect();
    data(page(&matched, q, |v| (*v).clone())?)
}

/// `GET /janus/20190725/hosts`.
pub fn hosts(sim: &Sim, q: &Query) -> ApiResult {
    list(&sim.world.hosts, q, &["az_id", "ip", "status", "type"])
}

pub fn tasks(sim: &Sim, ctx: &Ctx<'_>) -> ApiResult {
    let q = &ctx.query;
    let mut matched: Vec<_> = sim
        .world
        .tasks
        .values()
        .filter(|t| q.get("status").is_none_or(|s| t.status_at(ctx.now).0 == s))
        .filter(|t| q.get("object_id").is_none_or(|s| t.object_id == s))
        .filter(|t| q.get("object_type").is_none_or(|s| t.object_type == s))
        .filter(|t| q.get("az_id").is_none_or(|s| t.az_id == s))
        .filter(|t| q.get("action").is_none_or(|s| t.action == s))
        .filter(|t| q.get("begin_time").is_none_or(|b| scp_time(t.created_ms).as_str() >= b))
        .filter(|t| q.get("end_time").is_none_or(|e| scp_time(t.created_ms).as_str() <= e))
        .collect();
    matched.sort_by_key(|t| std::cmp::Reverse(t.seq));
    data(page(&matched, q, |t| t.render(ctx.now))?)
}

pub fn task(sim: &Sim, ctx: &Ctx<'_>, id: &str) -> ApiResult {
    let t = sim.world.tasks.get(id).ok_or_else(|| ApiError::not_found("task", id))?;
    data(t.render(ctx.now))
}

fn render_volume(v: &Volume) -> Value {
    let status = if v.busy_task.is_some() {
        "creating"
    } else if v.server_id.is_empty() {
        "available"
    } else {
        "in-use"
    };
    json!({
        "id": v.id, "name": v.name, "description": v.description, "status": status,
        "size_mb": v.size_mb, "az_id": v.az_id, "storage_tag_id": v.storage_tag_id,
        "server_id": v.server_id, "type": "new_disk", "preallocate": v.preallocate,
        "created_at": scp_time(v.created_ms),
    })
}

pub fn volumes(sim: &Sim, q: &Query) -> ApiResult {
    let matched: Vec<&Volume> = sim
        .world
        .volumes
        .values()
        .filter(|v| q.get("az_id").is_none_or(|a| v.az_id == a))
        .filter(|v| q.get("name").is_none_or(|n| contains_ci(&v.name, n)))
        .filter(|v| q.get("status").is_none_or(|s| render_volume(v)["status"] == s))
        .collect();
    data(page(&matched, q, |v| render_volume(v))?)
}

pub fn volume(sim: &Sim, id: &str) -> ApiResult {
    data(render_volume(sim.world.volumes.get(id).ok_or_else(|| ApiError::not_found("volume", id))?))
}

fn volume_task(sim: &mut Sim, ctx: &Ctx<'_>, action: &'static str, v: &Volume, effect: Effect) -> String {
    let doomed = ctx.injected(action);
    sim.submit(
        TaskSpec {
            action,
            object_type: "volume",
            object_id: v.id.clone(),
            object_name: v.name.clone(),
            az_id: v.az_id.clone(),
            user: ctx.user(),
            user_ip: ctx.user_ip.to_string(),
            factor: 1.0,
            doomed,
            effect,
        },
        ctx.now,
    )
}

/// `POST /volumes` → `{volume_id, task_id}`.
pub fn create_volume(sim: &mut Sim, ctx: &Ctx<'_>) -> ApiResult {
    let body = ctx.object()?;
    let az_id = req_str(&body, "az_id")?.to_string();
    let tag_id = req_str(&body, "storage_tag_id")?.to_string();
    let size_mb = req_u64(&body, "size_mb")?;
    let name = req_str(&body, "name")?.to_string();
    if !sim.world.storage_tags.iter().any(|t| t.id == tag_id && t.az_id == az_id) {
        return Err(ApiError::bad_request(format!("storage tag {tag_id} does not exist in resource pool {az_id}")));
    }
    let size_mb = super::server_spec::disk_size(size_mb)?;
    let short = super::server_spec::capacity_shortfall(&sim.world, &az_id, &tag_id, 0, 0, size_mb);
    let v = Volume {
        id: sim.new_id(),
        name,
        description: opt_str(&body, "description")?.unwrap_or("").to_string(),
        az_id,
        storage_tag_id: tag_id,
        size_mb,
        preallocate: body.get("preallocate").cloned().unwrap_or(json!(0)),
        server_id: String::new(),
        created_ms: ctx.now,
        busy_task: None,
    };
    let effect = Effect::VolumeCreate { volume_id: v.id.clone() };
    let task = volume_task(sim, ctx, "create_volume", &v, effect);
    if let Some(reason) = short
        && let Some(t) = sim.world.tasks.get_mut(&task)
    {
        t.doomed = Some(reason);
    }
    let id = v.id.clone();
    sim.world.volumes.insert(id.clone(), Volume { busy_task: Some(task.clone()), ..v });
    Ok(Outcome::Data(json!({"volume_id": id, "id": id, "task_id": task})))
}

fn idle_volume<'w>(world: &'w World, id: &str) -> Result<&'w Volume, ApiError> {
    let v = world.volumes.get(id).ok_or_else(|| ApiError::not_found("volume", id))?;
    match &v.busy_task {
        Some(t) => Err(ApiError::conflict(format!("volume {id} is busy with task {t}"))),
        None => Ok(v),
    }
}

/// `PUT /volumes/{id}` `{"size_mb": n}`: grow only.
pub fn resize_volume(sim: &mut Sim, ctx: &Ctx<'_>, id: &str) -> ApiResult {
    let body = ctx.object()?;
    let size_mb =
        opt_u64(&body, "size_mb")?.ok_or_else(|| ApiError::bad_request("missing required field `size_mb`"))?;
    let size_mb = super::server_spec::disk_size(size_mb)?;
    let v = idle_volume(&sim.world, id)?.clone();
    if size_mb <= v.size_mb {
        return Err(ApiError::bad_request(format!("volume {id} can only grow ({} MB now)", v.size_mb)));
    }
    let short =
        super::server_spec::capacity_shortfall(&sim.world, &v.az_id, &v.storage_tag_id, 0, 0, size_mb - v.size_mb);
    let effect = Effect::VolumeResize { volume_id: id.to_string(), size_mb };
    let task = volume_task(sim, ctx, "resize_volume", &v, effect);
    if let Some(t) = sim.world.tasks.get_mut(&task)
        && short.is_some()
    {
        t.doomed = short;
    }
    if let Some(v) = sim.world.volumes.get_mut(id) {
        v.busy_task = Some(task.clone());
    }
    Ok(Outcome::Data(json!({"task_id": task})))
}

/// `DELETE /volumes/{id}`: the volume must be detached.
pub fn delete_volume(sim: &mut Sim, ctx: &Ctx<'_>, id: &str) -> ApiResult {
    let v = idle_volume(&sim.world, id)?.clone();
    if !v.server_id.is_empty() {
        return Err(ApiError::bad_request(format!(
            "volume {id} is attached to server {}; detach it first",
            v.server_id
        )));
    }
    let effect = Effect::VolumeDelete { volume_id: id.to_string() };
    let task = volume_task(sim, ctx, "delete_volume", &v, effect);
    if let Some(v) = sim.world.volumes.get_mut(id) {
        v.busy_task = Some(task.clone());
    }
    Ok(Outcome::Data(json!({"task_id": task})))
}

pub fn system_version() -> ApiResult {
    data(json!({"build_version": "SCP6.10.0 B-2024-06-18 10:21:07", "custom_version": []}))
}

pub fn maintenance() -> ApiResult {
    data(json!({"maintain_mode": 0}))
}

pub fn platform(ctx: &Ctx<'_>) -> ApiResult {
    data(json!({
        "manage_mode": "single", "version": "6.10.0", "build_time": "2024-06-18 10:21:07",
        "region_info": {"id": "regionOne", "name": "regionOne"},
        "dcluster_info": {"cluster_ip": ctx.base_url, "cluster_port": 4430},
    }))
}

pub fn licenses() -> ApiResult {
    data(json!({"username": "vmauto-sim", "status": "valid", "key_id": "SIM-0000-0000", "products": []}))
}
