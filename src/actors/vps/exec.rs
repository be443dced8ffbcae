//! Running one operation against the provider, step by step, persisting every provider task
//! id before waiting on it, so a crash at any point resumes without acting twice.
//!
//! **Attempts, not replays.** Each step's writes carry an idempotency key derived from the
//! operation id, the attempt ([`Operation::attempt_seq`], persisted before the attempt starts)
//! and the step name. A crash in the middle of an attempt runs the same attempt again, so SCP
//! replays what it already did; a new attempt (after a failure) is new work for SCP, never a
//! replay of the task that failed.
//!
//! An attempt looks at SCP before it acts: a create first looks for the VM carrying the VPS's
//! ownership tag and reuses it when it is healthy, or deletes it (it is ours, by tag) when SCP
//! left it half-built, before creating again. Destructive steps check the tag first and refuse
//! a VM vmauto does not own; a VM already gone counts as deleted.

mod password;
mod power;
mod restore;
mod route;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use serde_json::{Value, json};

use crate::actors::gateway::{
    CreateServer, DeleteServer, FindServersByTag, GetServer, PowerOff, ResizeDisk, SangforGateway, StartServer,
    UpdateCompute, WaitTask,
};
use crate::db::Store;
use crate::lifecycle::Level;
use crate::lifecycle::{OpKind, OpPatch, Operation, Spec, Template, TemplateName, VpsPatch, VpsState, owner_tag};
use crate::provider::{
    NicSpec, OpKey, ProviderError, ProviderResult, Server, ServerId, ServerSpec, ServerStatus, TaskId,
};
use crate::secrets::Sealer;

/// How long a new VM may take to report its IP address.
pub const IP_WAIT: Duration = Duration::from_secs(600);
/// Pause between looks at a booting VM.
pub const IP_POLL: Duration = Duration::from_millis(250);

/// What an operation needs besides its row.
#[derive(Clone)]
pub struct ExecContext {
    pub store: Store,
    /// The gateway of the VPS's provider (see [`ExecContext::for_vps`]).
    pub gateway: Addr<SangforGateway>,
    /// Every provider's gateway.
    pub gateways: crate::actors::gateway::Gateways,
    pub sealer: Arc<Sealer>,
    pub install_id: String,
    /// The VPS's template row as [`ExecContext::for_vps`] read it, until an operation of the
    /// VPS has run (a finished resize or rebuild changes it; nothing else does).
    pub template: Option<Arc<Template>>,
}

/// How an attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// Done; these VPS fields change with the operation's success.
    Done(Box<VpsPatch>),
    /// May succeed later: retry with back-off.
    Retry(String),
    /// Will not succeed without an admin.
    Fail(String),
}

impl From<ProviderError> for Outcome {
    fn from(e: ProviderError) -> Self {
        if let Some(cause) = e.task_failure().filter(|c| c.is_permanent()) {
            // A task SCP failed for a cause nothing but an admin can change: say what to change.
            return Outcome::Fail(format!("{e} — {} (cause: {})", cause.admin_hint(), cause.as_str()));
        }
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
        OpKind::SetPassword => password::set_password(cx, op).await,
        OpKind::Reset => password::reset(cx, op).await,
        OpKind::Rebuild => rebuild(cx, op).await,
        OpKind::Power => power::power(cx, op).await,
        OpKind::Restore => restore::restore(cx, op).await,
    };
    result.map_or_else(|o| o, |patch| Outcome::Done(Box::new(patch)))
}

type Step<T> = Result<T, Outcome>;

fn store_err(e: anyhow::Error) -> Outcome {
    Outcome::Retry(format!("store: {e:#}"))
}

async fn call<M>(cx: &ExecContext, msg: M) -> Step<M::Result>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    SangforGateway: actix::Handler<M>,
{
    cx.gateway.send(msg).await.map_err(|_| Outcome::Retry(ProviderError::GatewayGone.to_string()))
}

/// Saves a task id on the operation before it is waited on.
async fn save_task(cx: &ExecContext, op: &Operation, task: &TaskId) -> Step<()> {
    cx.store.update_operation(&op.id, &OpPatch::waiting_on(task.as_str())).await.map_err(store_err)
}

/// Waits for a task whose id was saved on the operation, then forgets it.
async fn wait(cx: &ExecContext, op: &Operation, task: TaskId) -> Step<()> {
    wait_unsaved(cx, task).await?;
    cx.store.update_operation(&op.id, &OpPatch::task_done()).await.map_err(store_err)
}

/// Waits for a task that was not saved (a step that is run again under the same key after a
/// crash): nothing to forget, so nothing is written.
async fn wait_unsaved(cx: &ExecContext, task: TaskId) -> Step<()> {
    call(cx, WaitTask { task_id: task, timeout: None }).await?.map(drop).map_err(Outcome::from)
}

/// Starts a task, saves its id, waits for it.
async fn run_task(cx: &ExecContext, op: &Operation, task: ProviderResult<TaskId>) -> Step<()> {
    let task = task.map_err(Outcome::from)?;
    save_task(cx, op, &task).await?;
    wait(cx, op, task).await
}

/// The idempotency key of one step of the current attempt. The first attempt keeps the bare
/// operation id, as operations written before attempts were keyed.
fn key(op: &Operation, step: &str) -> OpKey {
    let base = if op.attempt_seq <= 1 { op.id.to_string() } else { format!("{}#{}", op.id, op.attempt_seq) };
    OpKey::new(base).step(step)
}

/// Merges `patch` into the operation's params and saves them (with `vps`, the VPS's fields
/// to change in the same transaction), before the step that needs them runs; answers the
/// merged params.
async fn save_params(cx: &ExecContext, op: &Operation, patch: Value, vps: Option<&VpsPatch>) -> Step<Value> {
    let mut params = if op.params.is_object() { op.params.clone() } else { json!({}) };
    if let (Some(p), Some(e)) = (params.as_object_mut(), patch.as_object()) {
        p.extend(e.clone());
    }
    let saved = OpPatch { params: Some(params.clone()), ..OpPatch::default() };
    match vps {
        Some(vps) => cx.store.update_operation_and_vps(&op.id, &saved, &op.vps, vps).await,
        None => cx.store.update_operation(&op.id, &saved).await,
    }
    .map_err(store_err)?;
    Ok(params)
}

async fn template_of(cx: &ExecContext, op: &Operation) -> Step<Template> {
    if let Some(template) = &cx.template {
        return Ok(Template::clone(template));
    }
    match cx.store.vps_template(&op.vps).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(Outcome::Fail("the VPS has no template".into())),
        Err(e) => Err(store_err(e)),
    }
}

async fn server_id_of(cx: &ExecContext, op: &Operation) -> Step<Option<String>> {
    cx.store.vps(&op.vps).await.map(|v| v.and_then(|v| v.server_id)).map_err(store_err)
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

/// Whether SCP's refusal says the work is already done: the VM is gone, already stopped, or
/// already in the recycle bin.
fn already_done(e: &ProviderError) -> bool {
    match e {
        ProviderError::NotFound { .. } => true,
        ProviderError::BadRequest { message, .. } | ProviderError::Api { message, .. } => {
            let m = message.to_ascii_lowercase();
            m.contains("already") || m.contains("recycle bin") || m.contains(" is stopped")
        }
        _ => false,
    }
}

/// A VM in one of these states was left half-built or broken by SCP: it is replaced, not used.
fn is_broken(server: &Server) -> bool {
    matches!(server.status, ServerStatus::Error | ServerStatus::Lost)
}

/// Powers a VM off and deletes it (`permanent: None` follows `provider.sangfor.delete_mode`).
/// A VM already gone, stopped or recycled counts as done. The caller has checked that the VM
/// is ours. `prefix` names the keys' steps when one operation removes several VMs.
async fn remove_vm(
    cx: &ExecContext,
    op: &Operation,
    server_id: &str,
    prefix: &str,
    permanent: Option<bool>,
) -> Step<()> {
    let step = |s: &str| if prefix.is_empty() { key(op, s) } else { key(op, &format!("{prefix}/{s}")) };
    let sid = ServerId::new(server_id);
    match call(cx, PowerOff { server_id: sid.clone(), op: step("power-off") }).await? {
        Ok(_) => {}
        Err(ProviderError::NotFound { .. }) => return Ok(()),
        Err(e) if already_done(&e) => {}
        Err(e) => return Err(e.into()),
    }
    match call(cx, DeleteServer { server_id: sid, op: step("delete"), permanent }).await? {
        Ok(task) => run_task(cx, op, Ok(task)).await,
        Err(e) if already_done(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Finds the VM of this VPS by its ownership tag (ignoring `exclude`, the VM a rebuild
/// replaces) or creates it. A healthy VM found is reused; broken ones are deleted first. With
/// several healthy ones (a create SCP finished after we had given up on it), the first is kept
/// and the others are deleted, so one VPS never ends with two VMs.
///
/// With [`Created::Pending`], the create task's id is still saved on the operation: the
/// caller forgets it ([`OpPatch::task_done`]) with its next write, one commit fewer (a crash
/// before that write waits on the ended task again).
async fn ensure_vm(
    cx: &ExecContext,
    op: &Operation,
    template: &Template,
    image_id: &str,
    exclude: Option<&str>,
) -> Step<Created> {
    let tag = owner_tag(&cx.install_id, &op.vps);
    let mut found = call(cx, FindServersByTag { tag: tag.clone() }).await?.map_err(Outcome::from)?;
    found.retain(|s| Some(s.id.0.as_str()) != exclude && s.has_tag(&tag));
    found.sort_by_key(|s| (is_broken(s), s.id.0.clone()));
    let mut keep: Option<String> = None;
    for server in found {
        if keep.is_none() && !is_broken(&server) {
            keep = Some(server.id.0);
            continue;
        }
        tracing::warn!(server_id = %server.id, status = ?server.status, "removing a VM of this VPS that SCP left broken or doubled");
        let _ = cx
            .store
            .record_activity(
                Level::Warning,
                "system",
                Some(&format!("vps:{}", op.vps)),
                &format!("removing VM {} ({:?}) before trying again", server.id, server.status),
                json!({ "operation": op.id, "server_id": server.id.0 }),
            )
            .await;
        remove_vm(cx, op, &server.id.0, &format!("discard-{}", server.id.0), Some(true)).await?;
    }
    if let Some(id) = keep {
        return Ok(Created::Found(id));
    }
    let spec = ServerSpec {
        name: vm_name(template, op.vps.as_str()),
        zone_id: template.az_id.clone(),
        image_id: image_id.to_string(),
        storage_tag_id: template.storage_tag_id.clone(),
        cores: template.cores,
        sockets: 1,
        memory_mb: template.memory_mb,
        disk_mb: Some(template.disk_gb * 1024),
        nics: if template.subnet_id.is_empty() {
            Vec::new()
        } else {
            vec![NicSpec { network_id: template.vpc_id.clone(), subnet_id: template.subnet_id.clone(), ip: None }]
        },
        owner_tag: tag.clone(),
        power_on: true,
        hostname: op.params.get("hostname").and_then(serde_json::Value::as_str).map(str::to_string),
    };
    let created = call(cx, CreateServer { spec, op: key(op, "create") }).await?.map_err(Outcome::from)?;
    let sid = created.server_id.as_ref().map(|s| s.0.clone());
    save_task(cx, op, &created.task_id).await?;
    wait_unsaved(cx, created.task_id).await?;
    match sid {
        Some(s) => Ok(Created::Pending(s)),
        None => {
            let found = call(cx, FindServersByTag { tag }).await?.map_err(Outcome::from)?;
            found
                .into_iter()
                .map(|s| s.id.0)
                .find(|id| Some(id.as_str()) != exclude)
                .map(Created::Pending)
                .ok_or_else(|| Outcome::Retry("the new VM is not visible yet".into()))
        }
    }
}

/// The VM [`ensure_vm`] answers with.
enum Created {
    /// An existing VM of this VPS.
    Found(String),
    /// A VM just created; the operation still holds its create task's id.
    Pending(String),
}

impl Created {
    fn id(&self) -> &str {
        match self {
            Created::Found(id) | Created::Pending(id) => id,
        }
    }

    /// The VM's id, forgetting the create task on the operation first when it holds one.
    async fn settled(self, cx: &ExecContext, op: &Operation) -> Step<String> {
        match self {
            Created::Found(id) => Ok(id),
            Created::Pending(id) => {
                cx.store.update_operation(&op.id, &OpPatch::task_done()).await.map_err(store_err)?;
                Ok(id)
            }
        }
    }
}

async fn create(cx: &ExecContext, op: &Operation) -> Step<VpsPatch> {
    let template = template_of(cx, op).await?;
    if let Some(task) = &op.task_id {
        // Resumed after a restart while a task of this attempt ran.
        wait(cx, op, TaskId::new(task.clone())).await?;
    }
    let created = ensure_vm(cx, op, &template, &template.image_id, None).await?;
    let server_id = created.id().to_string();
    let has_vm = VpsPatch {
        server_id: Some(server_id.clone()),
        state: Some(VpsState::Provisioning),
        vm_at: Some(crate::db::models::vps::vm_time(chrono::Utc::now())),
        ..VpsPatch::default()
    };
    match created {
        Created::Found(_) => cx.store.update_vps(&op.vps, &has_vm).await,
        Created::Pending(_) => cx.store.update_operation_and_vps(&op.id, &OpPatch::task_done(), &op.vps, &has_vm).await,
    }
    .map_err(store_err)?;
    let server = wait_for_ip(cx, op, &server_id).await?;
    // The VM runs with an address: show it while the password step (which can fail and be
    // retried alone) finishes.
    let shown = VpsPatch { ips: Some(server.ips.clone()), vm_name: Some(server.name.clone()), ..VpsPatch::default() };
    let sealed = password::new_root_password(cx, op, &server_id, Some(&shown)).await?;
    Ok(VpsPatch {
        state: Some(VpsState::Active),
        server_id: Some(server_id),
        ips: Some(server.ips),
        vm_name: Some(server.name),
        root_password: Some(sealed),
        active_at: Some(chrono::Utc::now().to_rfc3339()),
        ..VpsPatch::default()
    })
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
        let server = call(cx, GetServer { server_id: ServerId::new(server_id) }).await?.map_err(|e| match e {
            // The VM vanished (a failed task removed it): the next attempt looks again.
            ProviderError::NotFound { .. } => Outcome::Retry(format!("VM {server_id} is gone from SCP")),
            e => e.into(),
        })?;
        if !server.ips.is_empty() && server.status == ServerStatus::Running {
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

async fn suspend(cx: &ExecContext, op: &Operation) -> Step<VpsPatch> {
    let done = VpsPatch {
        state: Some(VpsState::Suspended),
        suspended_at: Some(chrono::Utc::now().to_rfc3339()),
        ..VpsPatch::default()
    };
    let Some(server_id) = server_id_of(cx, op).await? else { return Ok(done) };
    if owned_server(cx, op, &server_id).await?.is_some() {
        match call(cx, PowerOff { server_id: ServerId::new(&server_id), op: key(op, "power-off") }).await? {
            Ok(_) => {}
            Err(e) if already_done(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

async fn resume(cx: &ExecContext, op: &Operation) -> Step<VpsPatch> {
    let server_id = server_id_of(cx, op).await?.ok_or_else(|| Outcome::Fail("the VPS has no VM to resume".into()))?;
    owned_server(cx, op, &server_id).await?.ok_or_else(|| Outcome::Fail(format!("VM {server_id} is gone")))?;
    start(cx, op, &server_id, "start").await?;
    let server = wait_for_ip(cx, op, &server_id).await?;
    Ok(VpsPatch {
        state: Some(VpsState::Active),
        ips: Some(server.ips),
        delete_after: Some(None),
        ..VpsPatch::default()
    })
}

async fn start(cx: &ExecContext, op: &Operation, server_id: &str, step: &str) -> Step<()> {
    if let Some(task) = &op.task_id {
        return wait(cx, op, TaskId::new(task.clone())).await;
    }
    let task = call(cx, StartServer { server_id: ServerId::new(server_id), op: key(op, step) }).await?;
    run_task(cx, op, task).await
}

async fn delete(cx: &ExecContext, op: &Operation) -> Step<VpsPatch> {
    let done = VpsPatch {
        state: Some(VpsState::Deleted),
        deleted_at: Some(chrono::Utc::now().to_rfc3339()),
        ips: Some(Vec::new()),
        ..VpsPatch::default()
    };
    let Some(server_id) = server_id_of(cx, op).await? else { return Ok(done) };
    if let Some(task) = &op.task_id {
        // Resumed while a task of this attempt ran; then look at the VM again below.
        wait(cx, op, TaskId::new(task.clone())).await?;
    }
    if owned_server(cx, op, &server_id).await?.is_some() {
        remove_vm(cx, op, &server_id, "", None).await?;
    }
    Ok(done)
}

async fn resize(cx: &ExecContext, op: &Operation) -> Step<VpsPatch> {
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
        wait_unsaved(cx, task).await?;
    }
    let disk_mb = spec.disk_gb * 1024;
    if disk_mb > server.disk_mb {
        let task = call(cx, ResizeDisk { server_id: sid.clone(), op: key(op, "disk"), size_mb: disk_mb })
            .await?
            .map_err(Outcome::from)?;
        wait_unsaved(cx, task).await?;
    }
    let now = call(cx, GetServer { server_id: sid.clone() }).await?.map_err(Outcome::from)?;
    if now.power == crate::provider::Power::Off {
        let task = call(cx, StartServer { server_id: sid, op: key(op, "start") }).await?.map_err(Outcome::from)?;
        wait_unsaved(cx, task).await?;
    }
    Ok(VpsPatch {
        state: Some(VpsState::Active),
        spec: Some(spec),
        template: op.params.get("template").and_then(Value::as_str).map(TemplateName::from),
        template_row: op.params.get("template_row").and_then(|r| serde_json::from_value(r.clone()).ok()),
        ..VpsPatch::default()
    })
}

/// Rebuild: a new VM from the template's image (or another image the template allows), with a
/// new root password; the VPS record, its subscription and its history stay. The old VM is
/// deleted only once the new one runs with an address, and only if it carries the VPS's tag.
/// SCP gives the new VM its own address: the old one's is released with the old VM.
async fn rebuild(cx: &ExecContext, op: &Operation) -> Step<VpsPatch> {
    let mut op = op.clone();
    let mut template = template_of(cx, &op).await?;
    // The new VM has the VPS's hardware as it is now (resized or upgraded since it was made).
    if let Some(vps) = cx.store.vps(&op.vps).await.map_err(store_err)? {
        template.cores = vps.spec.cores;
        template.memory_mb = vps.spec.memory_mb;
        template.disk_gb = vps.spec.disk_gb;
    }
    let image_id = op.params.get("image_id").and_then(Value::as_str).unwrap_or(&template.image_id).to_string();
    cx.store.check_rebuild_image(&template, &image_id).await.map_err(store_err)?.map_err(Outcome::Fail)?;
    // The VM being replaced, remembered before anything changes so a resumed rebuild never
    // mistakes the new VM for the old one.
    let old = match op.params.get("old_server_id") {
        Some(v) => v.as_str().map(str::to_owned),
        None => {
            let old = server_id_of(cx, &op).await?;
            op.params = save_params(cx, &op, json!({ "old_server_id": old }), None).await?;
            old
        }
    };
    if let Some(old) = &old {
        // Refuse before building anything if the VM we would delete is not ours.
        owned_server(cx, &op, old).await?;
    }
    if let Some(task) = &op.task_id {
        wait(cx, &op, TaskId::new(task.clone())).await?;
    }
    let new_id = ensure_vm(cx, &op, &template, &image_id, old.as_deref()).await?.settled(cx, &op).await?;
    let server = wait_for_ip(cx, &op, &new_id).await?;
    let sealed = password::new_root_password(cx, &op, &new_id, None).await?;
    // The VPS points at the new VM from here on; the old one is deleted next.
    cx.store
        .update_vps(
            &op.vps,
            &VpsPatch {
                server_id: Some(new_id.clone()),
                ips: Some(server.ips.clone()),
                vm_name: Some(server.name.clone()),
                root_password: Some(sealed.clone()),
                image_id: Some(image_id.clone()),
                ..VpsPatch::default()
            },
        )
        .await
        .map_err(store_err)?;
    if let Some(old) = old.filter(|o| *o != new_id)
        && owned_server(cx, &op, &old).await?.is_some()
    {
        remove_vm(cx, &op, &old, "remove-old", Some(true)).await?;
    }
    Ok(VpsPatch {
        state: Some(VpsState::Active),
        server_id: Some(new_id),
        ips: Some(server.ips),
        vm_name: Some(server.name),
        root_password: Some(sealed),
        image_id: Some(image_id),
        rebuilt_at: Some(chrono::Utc::now().to_rfc3339()),
        ..VpsPatch::default()
    })
}
