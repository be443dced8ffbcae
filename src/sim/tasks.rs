//! The asynchronous task engine (sangfor-scp-api.md §5.2).
//!
//! A task's life is a function of time: queued (`waiting`, progress -2) until `start_ms`, then
//! `doing` with progress growing linearly, then, once `end_ms` has passed, its effect is
//! applied exactly once and it ends `finish` (100) or `failure` (-1). Nothing runs in the
//! background to drive it: [`advance`] applies every effect that is due, and the dispatcher
//! calls it (cheaply, see `Sim::advance`) before each request, so a reader never sees a task
//! "finished" whose effect is missing.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::world::{Disk, Millis, VmStatus, World, scp_time};

/// Where a task stands once it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Finish,
    Failure,
}

/// A power operation on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerOp {
    Start,
    Stop,
    Reboot,
    Suspend,
    Resume,
}

/// The fields an update (PUT /servers/{id}) changes when its task finishes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub cores: Option<u64>,
    pub sockets: Option<u64>,
    pub memory_mb: Option<u64>,
    pub os_type: Option<String>,
    pub disks: Option<Vec<Disk>>,
    pub advance_param: Option<Value>,
}

/// What a task does to the world when it finishes (or undoes when it fails).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    Create {
        server_ids: Vec<String>,
        power_on: bool,
        /// A failure leaves the servers in `error` instead of removing them (a half-built VM).
        #[serde(default)]
        leave_vm: bool,
    },
    Power {
        server_id: String,
        op: PowerOp,
        prev: VmStatus,
    },
    Update {
        server_id: String,
        patch: ServerPatch,
        prev: VmStatus,
    },
    Delete {
        server_id: String,
        permanent: bool,
        prev: VmStatus,
    },
    Restore {
        server_id: String,
    },
    Password {
        server_id: String,
    },
    Migrate {
        server_id: String,
        host_id: String,
        prev: VmStatus,
    },
    AttachVolume {
        server_id: String,
        volume_id: String,
        device_id: String,
    },
    DetachVolume {
        server_id: String,
        volume_id: String,
    },
    VolumeCreate {
        volume_id: String,
    },
    VolumeResize {
        volume_id: String,
        size_mb: u64,
    },
    VolumeDelete {
        volume_id: String,
    },
}

impl Effect {
    /// The server the task holds busy, if any.
    pub fn server_id(&self) -> Option<&str> {
        match self {
            Self::Power { server_id, .. }
            | Self::Update { server_id, .. }
            | Self::Delete { server_id, .. }
            | Self::Restore { server_id }
            | Self::Password { server_id }
            | Self::Migrate { server_id, .. }
            | Self::AttachVolume { server_id, .. }
            | Self::DetachVolume { server_id, .. } => Some(server_id),
            Self::Create { .. } | Self::VolumeCreate { .. } | Self::VolumeResize { .. } | Self::VolumeDelete { .. } => {
                None
            }
        }
    }
}

/// An SCP task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub object_name: String,
    pub az_id: String,
    pub user_name: String,
    pub user_ip: String,
    pub created_ms: Millis,
    pub start_ms: Millis,
    pub end_ms: Millis,
    pub seq: u64,
    pub state: TaskState,
    /// Failure reason once failed.
    pub description: String,
    /// Decided at submission (capacity, injected fault): the task will fail with this reason.
    pub doomed: Option<String>,
    pub effect: Effect,
}

impl Task {
    /// `(status, progress)` as SCP reports them at `now`.
    pub fn status_at(&self, now: Millis) -> (&'static str, i64) {
        match self.state {
            TaskState::Finish => ("finish", 100),
            TaskState::Failure => ("failure", -1),
            TaskState::Pending if now < self.start_ms => ("waiting", -2),
            TaskState::Pending => {
                let span = (self.end_ms - self.start_ms).max(1);
                ("doing", ((now - self.start_ms) * 100 / span).clamp(0, 99))
            }
        }
    }

    pub fn render(&self, now: Millis) -> Value {
        let (status, progress) = self.status_at(now);
        let end = if self.state == TaskState::Pending { String::new() } else { scp_time(self.end_ms) };
        json!({
            "id": self.id, "task_id": self.id, "action": self.action, "status": status,
            "progress": progress, "description": self.description,
            "object_type": self.object_type, "object_id": self.object_id,
            "object_name": self.object_name, "az_id": self.az_id,
            "user_name": self.user_name, "user_ip": self.user_ip,
            "begin_time": scp_time(self.created_ms), "end_time": end,
            "entities": {"object_id": self.object_id},
        })
    }
}

/// Applies every task due at `now`, oldest deadline first. Returns the earliest deadline still
/// pending (`Millis::MAX` when none), so the caller can skip the scan until then.
pub fn advance(world: &mut World, now: Millis, ip_delay_ms: i64) -> Millis {
    let mut due: Vec<(Millis, u64, String)> = Vec::new();
    let mut next = Millis::MAX;
    for t in world.tasks.values().filter(|t| t.state == TaskState::Pending) {
        if t.end_ms <= now {
            due.push((t.end_ms, t.seq, t.id.clone()));
        } else {
            next = next.min(t.end_ms);
        }
    }
    due.sort();
    for (end, _, id) in due {
        complete(world, &id, end, ip_delay_ms);
    }
    next
}

fn complete(world: &mut World, task_id: &str, at: Millis, ip_delay_ms: i64) {
    let Some(task) = world.tasks.get(task_id) else { return };
    let effect = task.effect.clone();
    let doomed = task.doomed.clone();
    let held: Vec<String> = match &effect {
        Effect::Create { server_ids, .. } => server_ids.clone(),
        other => other.server_id().map(str::to_string).into_iter().collect(),
    };
    for id in &held {
        if let Some(s) = world.servers.get_mut(id)
            && s.busy_task.as_deref() == Some(task_id)
        {
            s.busy_task = None;
        }
    }
    if let Effect::VolumeCreate { volume_id }
    | Effect::VolumeResize { volume_id, .. }
    | Effect::VolumeDelete { volume_id } = &effect
        && let Some(v) = world.volumes.get_mut(volume_id)
        && v.busy_task.as_deref() == Some(task_id)
    {
        v.busy_task = None;
    }
    let failure = match doomed {
        Some(reason) => {
            undo(world, &effect);
            Some(reason)
        }
        None => apply(world, &effect, at, ip_delay_ms).err(),
    };
    if let Some(task) = world.tasks.get_mut(task_id) {
        match failure {
            Some(reason) => {
                task.state = TaskState::Failure;
                task.description = reason;
            }
            None => task.state = TaskState::Finish,
        }
    }
}

/// A failed task leaves the world as it was before the request.
fn undo(world: &mut World, effect: &Effect) {
    match effect {
        Effect::Create { server_ids, leave_vm, .. } => {
            for id in server_ids {
                if *leave_vm {
                    if let Some(s) = world.servers.get_mut(id) {
                        s.status = VmStatus::Error;
                        s.ip_ready_ms = None;
                    }
                } else {
                    world.servers.remove(id);
                }
            }
        }
        Effect::Power { server_id, prev, .. }
        | Effect::Update { server_id, prev, .. }
        | Effect::Delete { server_id, prev, .. }
        | Effect::Migrate { server_id, prev, .. } => {
            if let Some(s) = world.servers.get_mut(server_id) {
                s.status = *prev;
            }
        }
        Effect::VolumeCreate { volume_id } => {
            world.volumes.remove(volume_id);
        }
        Effect::Restore { .. }
        | Effect::Password { .. }
        | Effect::AttachVolume { .. }
        | Effect::DetachVolume { .. }
        | Effect::VolumeResize { .. }
        | Effect::VolumeDelete { .. } => {}
    }
    if let Effect::VolumeResize { volume_id, .. } | Effect::VolumeDelete { volume_id } = effect
        && let Some(v) = world.volumes.get_mut(volume_id)
    {
        v.busy_task = None;
    }
}

fn apply(world: &mut World, effect: &Effect, at: Millis, ip_delay_ms: i64) -> Result<(), String> {
    let boot = Some(at.saturating_add(ip_delay_ms));
    match effect {
        Effect::Create { server_ids, power_on, .. } => {
            for id in server_ids {
                if let Some(s) = world.servers.get_mut(id) {
                    if *power_on {
                        s.status = VmStatus::Running;
                        s.ip_ready_ms = boot;
                        s.mark_power(at, true);
                    } else {
                        s.status = VmStatus::Stopped;
                    }
                }
            }
        }
        Effect::Power { server_id, op, .. } => {
            let s = world.servers.get_mut(server_id).ok_or("server vanished")?;
            match op {
                PowerOp::Start | PowerOp::Reboot => {
                    s.status = VmStatus::Running;
                    s.ip_ready_ms = boot;
                }
                PowerOp::Resume => {
                    s.status = VmStatus::Running;
                    s.ip_ready_ms = Some(at);
                }
                PowerOp::Stop => {
                    s.status = VmStatus::Stopped;
                    s.ip_ready_ms = None;
                }
                PowerOp::Suspend => s.status = VmStatus::Suspended,
            }
            s.mark_power(at, s.status == VmStatus::Running);
        }
        Effect::Update { server_id, patch, prev } => {
            let s = world.servers.get_mut(server_id).ok_or("server vanished")?;
            s.status = *prev;
            if let Some(v) = &patch.name {
                s.name.clone_from(v);
            }
            if let Some(v) = &patch.description {
                s.description.clone_from(v);
            }
            if let Some(v) = patch.cores {
                s.cores = v;
            }
            if let Some(v) = patch.sockets {
                s.sockets = v;
            }
            if let Some(v) = patch.memory_mb {
                s.memory_mb = v;
            }
            if let Some(v) = &patch.os_type {
                s.os_type.clone_from(v);
            }
            if let Some(v) = &patch.disks {
                s.disks.clone_from(v);
            }
            if let Some(Value::Object(extra)) = &patch.advance_param
                && let Value::Object(current) = &mut s.advance_param
            {
                current.extend(extra.clone());
            }
        }
        Effect::Delete { server_id, permanent, .. } => {
            if *permanent {
                if let Some(s) = world.servers.remove(server_id) {
                    detach_all(world, &s.id);
                }
            } else if let Some(s) = world.servers.get_mut(server_id) {
                s.recycled = true;
                s.status = VmStatus::Stopped;
                s.ip_ready_ms = None;
                s.mark_power(at, false);
            }
        }
        Effect::Restore { server_id } => {
            let s = world.servers.get_mut(server_id).ok_or("server vanished")?;
            s.recycled = false;
            s.status = VmStatus::Stopped;
        }
        Effect::Password { .. } => {}
        Effect::Migrate { server_id, host_id, prev } => {
            let s = world.servers.get_mut(server_id).ok_or("server vanished")?;
            s.status = *prev;
            s.host_id.clone_from(host_id);
        }
        Effect::AttachVolume { server_id, volume_id, device_id } => {
            let size = world.volumes.get(volume_id).map(|v| (v.size_mb, v.preallocate.clone()));
            let (size_mb, preallocate) = size.ok_or("volume vanished")?;
            let s = world.servers.get_mut(server_id).ok_or("server vanished")?;
            s.disks.push(Disk {
                id: device_id.clone(),
                kind: "new_disk".into(),
                size_mb,
                preallocate,
                volume_id: Some(volume_id.clone()),
            });
            if let Some(v) = world.volumes.get_mut(volume_id) {
                v.server_id.clone_from(server_id);
            }
        }
        Effect::DetachVolume { server_id, volume_id } => {
            if let Some(s) = world.servers.get_mut(server_id) {
                s.disks.retain(|d| d.volume_id.as_deref() != Some(volume_id.as_str()));
            }
            if let Some(v) = world.volumes.get_mut(volume_id) {
                v.server_id.clear();
            }
        }
        Effect::VolumeCreate { .. } => {}
        Effect::VolumeResize { volume_id, size_mb } => {
            let v = world.volumes.get_mut(volume_id).ok_or("volume vanished")?;
            v.size_mb = *size_mb;
            v.busy_task = None;
            let server_id = v.server_id.clone();
            if let Some(s) = world.servers.get_mut(&server_id) {
                for d in s.disks.iter_mut().filter(|d| d.volume_id.as_deref() == Some(volume_id.as_str())) {
                    d.size_mb = *size_mb;
                }
            }
        }
        Effect::VolumeDelete { volume_id } => {
            world.volumes.remove(volume_id);
        }
    }
    Ok(())
}

/// A permanently deleted server frees the volumes it had attached.
fn detach_all(world: &mut World, server_id: &str) {
    for v in world.volumes.values_mut().filter(|v| v.server_id == server_id) {
        v.server_id.clear();
    }
}
