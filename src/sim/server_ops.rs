//! Server actions (sangfor-scp-api.md §5.1 S7–S18): power, `/action`, the batch endpoint,
//! remote console, password and migration. Each checks the server's state now and returns a
//! task whose effect lands when it finishes.

use serde_json::{Value, json};

use super::auth::decrypt_password;
use super::console;
use super::input::{Ctx, flag, opt_str, req_str};
use super::reply::{ApiError, ApiResult, Outcome};
use super::servers::{idle, set_status, spec};
use super::service::Sim;
use super::tasks::{Effect, PowerOp};
use super::world::VmStatus;

/// Starts a power operation on `id` and returns its task id.
pub fn power(sim: &mut Sim, ctx: &Ctx<'_>, id: &str, op: PowerOp, force: bool) -> Result<String, ApiError> {
    let s = idle(&sim.world, id)?;
    let prev = s.status;
    let (action, transient, factor) = match op {
        PowerOp::Start => ("start_server", VmStatus::Starting, 1.0),
        PowerOp::Stop if force => ("poweroff_server", VmStatus::Stopping, 0.5),
        PowerOp::Stop => ("stop_server", VmStatus::Stopping, 1.0),
        PowerOp::Reboot => ("reboot_server", VmStatus::Rebooting, 1.5),
        PowerOp::Suspend => ("suspend_server", prev, 0.5),
        PowerOp::Resume => ("resume_server", prev, 0.5),
    };
    let wrong_state = |what: &str| ApiError::bad_request(format!("server {id} is {}; cannot {what}", prev.as_str()));
    match op {
        PowerOp::Reboot if prev != VmStatus::Running => return Err(wrong_state("reboot")),
        PowerOp::Suspend if prev != VmStatus::Running => return Err(wrong_state("suspend")),
        PowerOp::Resume if prev != VmStatus::Suspended => return Err(wrong_state("resume")),
        _ => {}
    }
    // Starting a running server or stopping a stopped one is accepted and changes nothing.
    let noop = matches!((op, prev), (PowerOp::Start, VmStatus::Running) | (PowerOp::Stop, VmStatus::Stopped));
    let (name, az) = (s.name.clone(), s.az_id.clone());
    let doomed = ctx.injected(action);
    let effect = Effect::Power { server_id: id.to_string(), op, prev };
    let task = sim.submit(spec(ctx, action, id, name, az, factor, doomed, effect), ctx.now);
    if !noop {
        set_status(sim, id, transient);
    }
    Ok(task)
}

fn task(id: String) -> ApiResult {
    Ok(Outcome::Data(json!({"task_id": id})))
}

/// `POST /servers/{id}/{start|stop|reboot|suspend}`.
pub fn simple(sim: &mut Sim, ctx: &Ctx<'_>, id: &str, op: PowerOp) -> ApiResult {
    let body = ctx.object()?;
    let force = flag(&body, "force", false)?;
    task(power(sim, ctx, id, op, force)?)
}

/// `POST /servers/{id}/action`: `resume`, `attach_volume`, `detach_volume` (and the power
/// verbs, which some clients send this way).
pub fn action(sim: &mut Sim, ctx: &Ctx<'_>, id: &str) -> ApiResult {
    let body = ctx.object()?;
    let verb = req_str(&body, "action")?;
    let op = match verb {
        "resume" => Some((PowerOp::Resume, false)),
        "start" | "power_on" => Some((PowerOp::Start, false)),
        "stop" | "shutdown" => Some((PowerOp::Stop, false)),
        "poweroff" | "power_off" => Some((PowerOp::Stop, true)),
        "reboot" => Some((PowerOp::Reboot, false)),
        "suspend" => Some((PowerOp::Suspend, false)),
        _ => None,
    };
    if let Some((op, force)) = op {
        return task(power(sim, ctx, id, op, force)?);
    }
    let volume_id = req_str(&body, "volume_id")?;
    let s = idle(&sim.world, id)?;
    let (name, az) = (s.name.clone(), s.az_id.clone());
    let v = sim.world.volumes.get(volume_id).ok_or_else(|| ApiError::not_found("volume", volume_id))?;
    let doomed = ctx.injected(verb);
    let effect = match verb {
        "attach_volume" => {
            if !v.server_id.is_empty() {
                return Err(ApiError::conflict(format!("volume {volume_id} is attached to {}", v.server_id)));
            }
            if v.az_id != az {
                return Err(ApiError::bad_request(format!("volume {volume_id} is in another resource pool")));
            }
            let device_id = match opt_str(&body, "device_id")? {
                Some(d) => d.to_string(),
                None => (0..16)
                    .map(|i| format!("ide{i}"))
                    .find(|d| !s.disks.iter().any(|e| &e.id == d))
                    .ok_or_else(|| ApiError::bad_request("no free disk slot (ide0..ide15)"))?,
            };
            if s.disks.iter().any(|d| d.id == device_id) {
                return Err(ApiError::conflict(format!("disk slot {device_id} is in use")));
            }
            Effect::AttachVolume { server_id: id.to_string(), volume_id: volume_id.to_string(), device_id }
        }
        "detach_volume" => {
            if v.server_id != id {
                return Err(ApiError::bad_request(format!("volume {volume_id} is not attached to server {id}")));
            }
            Effect::DetachVolume { server_id: id.to_string(), volume_id: volume_id.to_string() }
        }
        other => return Err(ApiError::bad_request(format!("unknown action {other:?}"))),
    };
    let action = if verb == "attach_volume" { "attach_volume" } else { "detach_volume" };
    task(sim.submit(spec(ctx, action, id, name, az, 1.0, doomed, effect), ctx.now))
}

/// `POST /servers/action`: `{"server_ids": [...], "server_action": {"<name>": ""}}` → 204.
/// Every id is checked before anything starts, so a bad id changes nothing.
pub fn batch(sim: &mut Sim, ctx: &Ctx<'_>) -> ApiResult {
    let body = ctx.object()?;
    let ids: Vec<String> = body
        .get("server_ids")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("missing required field `server_ids`"))?
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(|| ApiError::bad_request("server_ids must be strings")))
        .collect::<Result<_, _>>()?;
    let verb = body
        .get("server_action")
        .and_then(Value::as_object)
        .and_then(|m| m.keys().next().cloned())
        .ok_or_else(|| ApiError::bad_request("missing required field `server_action`"))?;
    for id in &ids {
        idle(&sim.world, id)?;
    }
    for id in &ids {
        let result = match verb.as_str() {
            "soft_del_servers_action" => {
                super::servers::delete(sim, &Ctx { body: b"{}", query: Default::default(), ..*ctx }, id).map(|_| ())
            }
            "start_servers_action" => power(sim, ctx, id, PowerOp::Start, false).map(|_| ()),
            "stop_servers_action" => power(sim, ctx, id, PowerOp::Stop, false).map(|_| ()),
            "poweroff_servers_action" => power(sim, ctx, id, PowerOp::Stop, true).map(|_| ()),
            "reboot_servers_action" => power(sim, ctx, id, PowerOp::Reboot, false).map(|_| ()),
            "suspend_servers_action" => power(sim, ctx, id, PowerOp::Suspend, false).map(|_| ()),
            other => return Err(ApiError::bad_request(format!("unknown server_action {other:?}"))),
        };
        // Like the platform, a batch is best effort: one server in the wrong state does not
        // stop the others, and the caller sees only 204.
        drop(result);
    }
    Ok(Outcome::NoContent)
}

/// `POST /servers/{id}/remote-consoles`: a URL whose token opens the console for a while
/// (see [`console`]).
pub fn console(sim: &mut Sim, ctx: &Ctx<'_>, id: &str) -> ApiResult {
    let body = ctx.object()?;
    sim.world.server(id).ok_or_else(|| ApiError::not_found("server", id))?;
    let rc = match body.get("remote_console") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(ApiError::bad_request("field `remote_console` must be an object")),
    };
    let protocol = rc.and_then(|m| m.get("protocol")).and_then(Value::as_str).unwrap_or("vnc").to_string();
    let kind = rc.and_then(|m| m.get("type")).and_then(Value::as_str).unwrap_or("novnc").to_string();
    if !["vnc", "spice", "rdp"].contains(&protocol.as_str()) {
        return Err(ApiError::bad_request(format!("unsupported console protocol {protocol:?}")));
    }
    if !console::KINDS.contains(&kind.as_str()) {
        return Err(ApiError::bad_request(format!("unsupported console type {kind:?}")));
    }
    let token = sim.new_id().replace('-', "");
    let url = format!("{}{}{kind}/?server_id={id}&token={token}", ctx.base_url, console::PREFIX);
    let ttl_ms = i64::try_from(sim.knobs.console_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let expires_ms = ctx.now.saturating_add(ttl_ms);
    let ticket =
        console::Ticket { server_id: id.to_string(), protocol: protocol.clone(), kind: kind.clone(), expires_ms };
    sim.consoles.issue(token, ticket, ctx.now);
    Ok(Outcome::Data(json!({"url": url, "protocol": protocol, "type": kind})))
}

/// `POST /servers/{id}/server-password`: the new password RSA-encrypted with the platform key;
/// needs vmtools, so a running guest.
pub fn password(sim: &mut Sim, ctx: &Ctx<'_>, id: &str) -> ApiResult {
    let body = ctx.object()?;
    let cipher = req_str(&body, "password")?;
    let key = ctx.rsa.ok_or_else(|| ApiError::internal("platform key not ready"))?;
    let plain = decrypt_password(key, cipher)?;
    if plain.is_empty() {
        return Err(ApiError::bad_request("password must not be empty"));
    }
    let s = idle(&sim.world, id)?;
    if s.status != VmStatus::Running {
        return Err(ApiError::bad_request(format!("server {id} is {}; vmtools must be running", s.status.as_str())));
    }
    let (name, az) = (s.name.clone(), s.az_id.clone());
    let doomed = ctx.injected("change_password");
    let effect = Effect::Password { server_id: id.to_string() };
    task(sim.submit(spec(ctx, "change_password", id, name, az, 1.0, doomed, effect), ctx.now))
}

/// `POST /servers/{id}/migrate`: `compute_location.id` names the target host.
pub fn migrate(sim: &mut Sim, ctx: &Ctx<'_>, id: &str) -> ApiResult {
    let body = ctx.object()?;
    let host_id = body
        .get("compute_location")
        .and_then(|c| c.get("id"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("missing required field `compute_location.id`"))?
        .to_string();
    let s = idle(&sim.world, id)?;
    if !sim.world.hosts.iter().any(|h| h["id"] == host_id.as_str() && h["az_id"] == s.az_id.as_str()) {
        return Err(ApiError::bad_request(format!("host {host_id} does not exist in the server's resource pool")));
    }
    if s.host_id == host_id {
        return Err(ApiError::bad_request(format!("server {id} already runs on {host_id}")));
    }
    let (prev, name, az) = (s.status, s.name.clone(), s.az_id.clone());
    let doomed = ctx.injected("VM migration").map(|r| r.replacen(" failed:", " failed.", 1));
    let effect = Effect::Migrate { server_id: id.to_string(), host_id, prev };
    let t = sim.submit(spec(ctx, "migrate_server", id, name, az, 2.0, doomed, effect), ctx.now);
    set_status(sim, id, VmStatus::Migrating);
    task(t)
}
