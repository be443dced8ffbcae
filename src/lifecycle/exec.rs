//! Running one operation against the provider, step by step, persisting every provider task
//! id before waiting on it, so a crash at any point resumes without acting twice.
//!
//! Each step's writes carry an idempotency key derived from the operation id (plus a step
//! name), and a create that lost its task id looks for its tagged VM before creating again.
//! Destructive steps check the VM's ownership tag first and refuse a VM vmauto does not own.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use serde_json::{Value, json};

use super::{OpKind, Operation, Spec, Template, owner_tag};
use crate::actors::gateway::{
    CreateServer, DeleteServer, FindServersByTag, GetServer, PowerOff, ResizeDisk, SangforGateway, SetPassword,
    StartServer, UpdateCompute, WaitTask,
};
use crate::db::Store;
use crate::provider::{NicSpec, OpKey, ProviderError, Server, ServerId, ServerSpec, ServerStatus, TaskId};
use crate::secrets::{Sealer, generate_password};

/// How long a new VM may take to report its IP address.
pub const IP_WAIT: Duration = Duration::from_secs(600);
/// Pause between looks at a booting VM.
pub const IP_POLL: Duration = Duration::from_millis(250);

/// What an operation needs besides its row.
#[derive(Clone)]
pub struct ExecContext {
    pub store: Store,
    pub gateway: Addr<SangforGateway>,
    pub sealer: Arc<Sealer>,
    pub install_id: String,
}

/// How an attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// Done; these VPS fields change with the operation's success.
    Done(Value),
    /// May succeed later: retry with back-off.
    Retry(String),
    /// Will not succeed without an admin.
    Fail(String),
}

impl From<ProviderError> for Outcome {
    fn from(e: ProviderError) -> Self {
        // A 409 from SCP means the VM is busy with a task (typically our own earlier request,
        // whose answer a crash or a timeout lost): retry once it has settled, within the
        // operation's attempt budget.
        if e.is_transient() || matches!(e, ProviderError::Conflict { .. }) {
            Outcome::Retry(e.to_string())
        } else {
            Outcome::Fail(e.to_string())
        }
    }
}

/// Runs the provider calls of an operation.
pub async fn execute(cx: &ExecContext, op: &Operation) -> Outcome {
    let result = match op.kind {
        OpKind::Create => create(cx, op).await,
        OpKind::Suspend => suspend(cx, op).await,
        OpKind::Resume => resume(cx, op).await,
        OpKind::Delete => delete(cx, op).await,
        OpKind::Resize => resize(cx, op).await,
        OpKind::SetPassword | OpKind::Reset => set_password(cx, op).await,
        OpKind::Rebuild => Err(Outcome::Fail("rebuild is not supported yet".into())),
    };
    result.map_or_else(|o| o, Outcome::Done)
}

type Step<T> = Result<T, Outcome>;

async fn call<M>(cx: &ExecContext, msg: M) -> Step<M::Result>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    SangforGateway: actix::Handler<M>,
{
    cx.gateway.send(msg).await.map_err(|_| Outcome::Retry(ProviderError::GatewayGone.to_string()))
}

/// Saves a task id on the operation before it is waited on.
async fn save_task(cx: &ExecContext, op: &Operation, task: &TaskId, extra: Value) -> Step<()> {
    let mut patch = json!({ "task_id": task.as_str(), "state": "waiting_task" });
    if let (Some(p), Some(e)) = (patch.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    cx.store.update_operation(&op.id, patch).await.map_err(|e| Outcome::Retry(format!("store: {e:#}")))
}

async fn wait(cx: &ExecContext, op: &Operation, task: TaskId) -> Step<()> {
    call(cx, WaitTask { task_id: task, timeout: None }).await?.map_err(Outcome::from)?;
    cx.store
        .update_operation(&op.id, json!({ "task_id": Value::Null, "state": "running" }))
        .await
        .map_err(|e| Outcome::Retry(format!("store: {e:#}")))
}

fn key(op: &Operation, step: &str) -> OpKey {
    OpKey::new(op.id.clone()).step(step)
}

async fn template_of(cx: &ExecContext, op: &Operation) -> Step<Template> {
    match cx.store.vps_template(&op.vps).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(Outcome::Fail("the VPS has no template".into())),
        Err(e) => Err(Outcome::Retry(format!("store: {e:#}"))),
    }
}

async fn server_id_of(cx: &ExecContext, op: &Operation) -> Step<Option<String>> {
    cx.store
        .vps(&op.vps)
        .await
        .map(|v| v.and_then(|v| v.server_id))
        .map_err(|e| Outcome::Retry(format!("store: {e:#}")))
}

/// Reads the VM and checks it carries this VPS's ownership tag. `None`: the VM is gone.
async fn owned_server(cx: &ExecContext, op: &Operation, server_id: &str) -> Step<Option<Server>> {
    match call(cx, GetServer { server_id: ServerId::new(server_id) }).await? {
        Ok(server) => {
            let tag = owner_tag(&cx.install_id, &op.vps);
            if server.has_tag(&tag) {
                Ok(Some(server))
            } else {
                Err(Outcome::Fail(format!(
                    "refusing to touch VM {server_id}: it does not carry the ownership tag {tag}"
                )))
            }
        }
        Err(ProviderError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn create(cx: &ExecContext, op: &Operation) -> Step<Value> {
    let template = template_of(cx, op).await?;
    let tag = owner_tag(&cx.install_id, &op.vps);
    let mut server_id = op.params.get("server_id").and_then(Value::as_str).map(str::to_owned);
    if let Some(task) = &op.task_id {
        // Resumed after a restart while the create task ran.
        wait(cx, op, TaskId::new(task.clone())).await?;
    } else if server_id.is_none() {
        // A previous attempt may have created the VM without us hearing back.
        let found = call(cx, FindServersByTag { tag: tag.clone() }).await?.map_err(Outcome::from)?;
        if let Some(existing) = found.into_iter().next() {
            server_id = Some(existing.id.0);
        } else {
            let spec = ServerSpec {
                name: vm_name(&template, &op.vps),
                zone_id: template.az_id.clone(),
                image_id: template.image_id.clone(),
                storage_tag_id: template.storage_tag_id.clone(),
                cores: template.cores,
                sockets: 1,
                memory_mb: template.memory_mb,
                disk_mb: Some(template.disk_gb * 1024),
                nics: if template.subnet_id.is_empty() {
                    Vec::new()
                } else {
                    vec![NicSpec {
                        network_id: template.vpc_id.clone(),
                        subnet_id: template.subnet_id.clone(),
                        ip: None,
                    }]
                },
                owner_tag: tag.clone(),
                power_on: true,
            };
            let created = call(cx, CreateServer { spec, op: key(op, "create") }).await?.map_err(Outcome::from)?;
            let sid = created.server_id.as_ref().map(|s| s.0.clone());
            save_task(cx, op, &created.task_id, json!({ "params": { "server_id": sid } })).await?;
            if let Some(sid) = &sid {
                let _ = cx.store.update_vps(&op.vps, json!({ "server_id": sid, "state": "provisioning" })).await;
            }
            wait(cx, op, created.task_id).await?;
            server_id = sid;
        }
    }
    let server_id = match server_id {
        Some(s) => s,
        None => {
            let found = call(cx, FindServersByTag { tag }).await?.map_err(Outcome::from)?;
            found
                .into_iter()
                .next()
                .map(|s| s.id.0)
                .ok_or_else(|| Outcome::Retry("the new VM is not visible yet".into()))?
        }
    };
    cx.store
        .update_vps(&op.vps, json!({ "server_id": server_id, "state": "provisioning" }))
        .await
        .map_err(|e| Outcome::Retry(format!("store: {e:#}")))?;
    let server = wait_for_ip(cx, op, &server_id).await?;
    let sealed = new_root_password(cx, op, &server_id).await?;
    Ok(json!({
        "state": "active", "server_id": server_id, "ips": server.ips, "vm_name": server.name,
        "root_password": sealed, "active_at": chrono::Utc::now().to_rfc3339(),
    }))
}

fn vm_name(template: &Template, vps_id: &str) -> String {
    template.name_pattern.replace("{id}", &vps_id[..vps_id.len().min(8)]).replace("{customer}", "c")
}

/// Waits until the VM reports an address. A VM found stopped (powered off behind our back, or
/// created off by a lost request) is started once; one SCP has lost or failed is not waited on.
async fn wait_for_ip(cx: &ExecContext, op: &Operation, server_id: &str) -> Step<Server> {
    let deadline = tokio::time::Instant::now() + IP_WAIT;
    let mut started = false;
    loop {
        let server = call(cx, GetServer { server_id: ServerId::new(server_id) }).await?.map_err(Outcome::from)?;
        if !server.ips.is_empty() {
            return Ok(server);
        }
        match &server.status {
            ServerStatus::Stopped if !started => {
                tracing::info!(server_id, "the VM is stopped while its address is awaited; starting it");
                let task = call(cx, StartServer { server_id: ServerId::new(server_id), op: key(op, "start-for-ip") })
                    .await?
                    .map_err(Outcome::from)?;
                call(cx, WaitTask { task_id: task, timeout: None }).await?.map_err(Outcome::from)?;
                started = true;
                continue;
            }
            ServerStatus::Error | ServerStatus::Lost => {
                return Err(Outcome::Retry(format!("VM {server_id} is in state {:?} on SCP", server.status)));
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Outcome::Retry(format!("VM {server_id} reported no IP address within {IP_WAIT:?}")));
        }
        tokio::time::sleep(IP_POLL).await;
    }
}

async fn suspend(cx: &ExecContext, op: &Operation) -> Step<Value> {
    let Some(server_id) = server_id_of(cx, op).await? else { return Ok(json!({ "state": "suspended" })) };
    if owned_server(cx, op, &server_id).await?.is_some() {
        call(cx, PowerOff { server_id: ServerId::new(&server_id), op: key(op, "power-off") })
            .await?
            .map_err(Outcome::from)?;
    }
    Ok(json!({ "state": "suspended", "suspended_at": chrono::Utc::now().to_rfc3339() }))
}

async fn resume(cx: &ExecContext, op: &Operation) -> Step<Value> {
    let server_id = server_id_of(cx, op).await?.ok_or_else(|| Outcome::Fail("the VPS has no VM to resume".into()))?;
    owned_server(cx, op, &server_id).await?.ok_or_else(|| Outcome::Fail(format!("VM {server_id} is gone")))?;
    start(cx, op, &server_id, "start").await?;
    let server = wait_for_ip(cx, op, &server_id).await?;
    Ok(json!({ "state": "active", "ips": server.ips, "delete_after": Value::Null }))
}

async fn start(cx: &ExecContext, op: &Operation, server_id: &str, step: &str) -> Step<()> {
    if let Some(task) = &op.task_id {
        return wait(cx, op, TaskId::new(task.clone())).await;
    }
    let task = call(cx, StartServer { server_id: ServerId::new(server_id), op: key(op, step) })
        .await?
        .map_err(Outcome::from)?;
    save_task(cx, op, &task, json!({})).await?;
    wait(cx, op, task).await
}

async fn delete(cx: &ExecContext, op: &Operation) -> Step<Value> {
    let done = json!({ "state": "deleted", "deleted_at": chrono::Utc::now().to_rfc3339(), "ips": [] });
    let Some(server_id) = server_id_of(cx, op).await? else { return Ok(done) };
    if let Some(task) = &op.task_id {
        wait(cx, op, TaskId::new(task.clone())).await?;
        return Ok(done);
    }
    let Some(server) = owned_server(cx, op, &server_id).await? else { return Ok(done) };
    if server.power != crate::provider::Power::Off {
        call(cx, PowerOff { server_id: ServerId::new(&server_id), op: key(op, "power-off") })
            .await?
            .map_err(Outcome::from)?;
    }
    let task = call(cx, DeleteServer { server_id: ServerId::new(&server_id), op: key(op, "delete"), permanent: None })
        .await?
        .map_err(Outcome::from)?;
    save_task(cx, op, &task, json!({})).await?;
    wait(cx, op, task).await?;
    Ok(done)
}

async fn resize(cx: &ExecContext, op: &Operation) -> Step<Value> {
    let spec: Spec = serde_json::from_value(op.params.get("spec").cloned().unwrap_or_default())
        .map_err(|e| Outcome::Fail(format!("resize needs params.spec: {e}")))?;
    let server_id = server_id_of(cx, op).await?.ok_or_else(|| Outcome::Fail("the VPS has no VM to resize".into()))?;
    let server =
        owned_server(cx, op, &server_id).await?.ok_or_else(|| Outcome::Fail(format!("VM {server_id} is gone")))?;
    let sid = ServerId::new(&server_id);
    if server.cores != spec.cores || server.memory_mb != spec.memory_mb {
        call(cx, PowerOff { server_id: sid.clone(), op: key(op, "power-off") }).await?.map_err(Outcome::from)?;
        let task = call(
            cx,
            UpdateCompute {
                server_id: sid.clone(),
                op: key(op, "compute"),
                cores: Some(spec.cores),
                memory_mb: Some(spec.memory_mb),
            },
        )
        .await?
        .map_err(Outcome::from)?;
        wait(cx, op, task).await?;
    }
    let disk_mb = spec.disk_gb * 1024;
    if disk_mb > server.disk_mb {
        let task = call(cx, ResizeDisk { server_id: sid.clone(), op: key(op, "disk"), size_mb: disk_mb })
            .await?
            .map_err(Outcome::from)?;
        wait(cx, op, task).await?;
    }
    let now = call(cx, GetServer { server_id: sid.clone() }).await?.map_err(Outcome::from)?;
    if now.power == crate::provider::Power::Off {
        let task = call(cx, StartServer { server_id: sid, op: key(op, "start") }).await?.map_err(Outcome::from)?;
        wait(cx, op, task).await?;
    }
    let mut done = json!({ "state": "active", "spec": spec });
    if let Some(t) = op.params.get("template").and_then(Value::as_str) {
        done["template"] = json!(t);
    }
    if let Some(row) = op.params.get("template_row") {
        done["template_row"] = row.clone();
    }
    Ok(done)
}

async fn set_password(cx: &ExecContext, op: &Operation) -> Step<Value> {
    let server_id = server_id_of(cx, op).await?.ok_or_else(|| Outcome::Fail("the VPS has no VM".into()))?;
    owned_server(cx, op, &server_id).await?.ok_or_else(|| Outcome::Fail(format!("VM {server_id} is gone")))?;
    let sealed = new_root_password(cx, op, &server_id).await?;
    Ok(json!({ "state": "active", "root_password": sealed }))
}

/// Generates a root password, sets it through SCP, and returns it sealed for the store.
async fn new_root_password(cx: &ExecContext, op: &Operation, server_id: &str) -> Step<String> {
    let password = generate_password();
    let task = call(
        cx,
        SetPassword { server_id: ServerId::new(server_id), op: key(op, "password"), password: password.clone() },
    )
    .await?
    .map_err(Outcome::from)?;
    wait(cx, op, task).await?;
    Ok(cx.sealer.seal(&password))
}
