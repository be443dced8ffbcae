//! VPSs: the list and search, one VPS and its timeline, and what admins ask of a VPS
//! (actions, retries, held operations, manual creation).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::actors::registry::{Activate, VpsRegistry};
use crate::db::Store;
use crate::db::models::operation::PowerAction;
use crate::db::models::vps::ManualVpsRow;
pub use crate::db::models::vps::{TimelineEntry, VpsDetail, VpsQuery, VpsRow};
use crate::lifecycle::Level;
use crate::lifecycle::new_key;
use crate::lifecycle::{OpKind, OpState, OperationId, Spec, TemplateName, VpsId, VpsState};

/// What an admin can ask of a VPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Power reset and a new root password.
    Reset,
    Suspend,
    Resume,
    Resize,
    Rebuild,
    Delete,
    /// Start, shut down, power off or reboot (`params.action`).
    Power,
    /// A new root password (the guest must run).
    Password,
    /// A deleted VPS back from SCP's recycle bin.
    Restore,
}

impl Action {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(json!(s)).ok()
    }

    fn kind(self) -> OpKind {
        match self {
            Self::Reset => OpKind::Reset,
            Self::Suspend => OpKind::Suspend,
            Self::Resume => OpKind::Resume,
            Self::Resize => OpKind::Resize,
            Self::Rebuild => OpKind::Rebuild,
            Self::Delete => OpKind::Delete,
            Self::Power => OpKind::Power,
            Self::Password => OpKind::SetPassword,
            Self::Restore => OpKind::Restore,
        }
    }
}

/// Queues an admin's action on a VPS; answers the operation id.
pub async fn request_action(
    store: &Store,
    registry: &actix::Addr<VpsRegistry>,
    vps: &VpsId,
    action: Action,
    params: Value,
    actor: &str,
) -> anyhow::Result<OperationId> {
    let Some(current) = store.vps(vps).await? else {
        return Err(crate::error::NotFound::new("VPS", vps.as_str()).into());
    };
    if action == Action::Restore {
        anyhow::ensure!(
            current.state == VpsState::Deleted,
            "this VPS is {}; only a deleted VPS is restored",
            current.state.as_str()
        );
        anyhow::ensure!(current.server_id.is_some(), "this VPS never had a VM; there is nothing to restore");
    } else if current.state == VpsState::Deleted {
        anyhow::bail!("this VPS is deleted; only a restore from SCP's recycle bin can bring it back");
    }
    let mut params = params;
    if action == Action::Resize {
        let spec: Spec = serde_json::from_value(params.get("spec").cloned().unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("a resize needs cores, memory_mb and disk_gb: {e}"))?;
        anyhow::ensure!(spec.cores >= 1 && spec.memory_mb >= 256, "a VPS needs at least 1 core and 256 MB of memory");
        anyhow::ensure!(
            spec.disk_gb >= current.spec.disk_gb,
            "disks only grow: {} GB is less than {} GB",
            spec.disk_gb,
            current.spec.disk_gb
        );
        params = json!({ "spec": spec });
    }
    if action == Action::Power {
        let name = params.get("action").and_then(Value::as_str).unwrap_or_default();
        let Some(power) = PowerAction::parse(name) else {
            anyhow::bail!("a power action is one of start, stop, force_stop, reboot (not {name:?})");
        };
        anyhow::ensure!(
            current.state == VpsState::Active,
            "this VPS is {}; power actions are for an active VPS",
            current.state.as_str()
        );
        params = json!({ "action": power });
    }
    if action == Action::Rebuild {
        let image = params.get("image_id").and_then(Value::as_str).map(str::trim).filter(|i| !i.is_empty());
        params = match (store.vps_template(vps).await?, image) {
            (Some(t), Some(image)) => {
                store.check_rebuild_image(&t, image).await?.map_err(anyhow::Error::msg)?;
                json!({ "image_id": image })
            }
            (None, _) => anyhow::bail!("this VPS has no template to rebuild from"),
            (Some(_), None) => json!({}),
        };
    }
    let id = store.enqueue_operation(vps, action.kind(), params.clone(), actor, None).await?;
    store
        .record_activity(
            Level::Info,
            actor,
            Some(vps.as_str()),
            &format!("{actor} asked for {}", action.kind().as_str()),
            json!({ "operation": id, "params": params }),
        )
        .await?;
    registry.do_send(Activate { vps: vps.clone() });
    Ok(id)
}

/// Why a retry was not started.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no such operation: {0}")]
    NotFound(String),
    /// The retry would do harm or nothing: the message says why and what to do instead.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Retries a dead operation. A retry is a decision, not a replay: the VPS and its
/// subscription are looked at first, and a retry that would bring a VM back to a VPS that is
/// deleted, or to a customer whose subscription is cancelled, is refused. Otherwise the
/// operation starts a fresh series of attempts (new idempotency keys, no stale task id).
/// `registry`: the running appliance's, to start at once; `None` when the appliance is down
/// (it picks the operation up at its next start). Answers the VPS id.
pub async fn retry_operation(
    store: &Store,
    registry: Option<&actix::Addr<VpsRegistry>>,
    op: &OperationId,
    actor: &str,
) -> Result<VpsId, RetryError> {
    let Some(row) = store.operation_for_retry(op).await? else { return Err(RetryError::NotFound(op.to_string())) };
    let vps = row.vps;
    let kind = row.kind;
    if row.state != Some(OpState::Dead) {
        let state = row.state.map_or("unknown", OpState::as_str);
        return Err(RetryError::Refused(format!("operation {op} is {state}: only a dead operation can be retried")));
    }
    let sub_status = match &row.subscription {
        Some(sub) => store.subscription_status(sub).await?,
        None => None,
    };
    let brings_vm_back = !matches!(kind, Some(OpKind::Delete | OpKind::Suspend));
    if brings_vm_back {
        let kind = kind.map_or("operation", OpKind::as_str);
        if row.vps_state == Some(VpsState::Deleted) {
            return Err(RetryError::Refused(format!(
                "refusing to retry the {kind}: VPS {vps} is deleted, and retrying would bring a VM back. \
                 Create a new VPS if the customer should have one."
            )));
        }
        if sub_status.as_deref() == Some("cancelled") {
            return Err(RetryError::Refused(format!(
                "refusing to retry the {kind}: the subscription of VPS {vps} is cancelled, and retrying would give \
                 a VM back to a customer who cancelled. Delete the VPS instead, or wait for the customer to subscribe \
                 again."
            )));
        }
    }
    let requeued = store.requeue_dead_operation(op, actor).await?;
    if !requeued {
        return Err(RetryError::Refused(format!("operation {op} is no longer dead (someone else retried it)")));
    }
    store
        .record_activity(
            Level::Info,
            actor,
            Some(vps.as_str()),
            &format!("{actor} retried a dead operation (a fresh series of attempts)"),
            json!({ "operation": op }),
        )
        .await?;
    if let Some(registry) = registry {
        registry.do_send(Activate { vps: vps.clone() });
    }
    Ok(vps)
}

/// Approves (queues) or rejects (cancels) operations held by the blast-radius guard.
pub async fn decide_held(
    store: &Store,
    registry: &actix::Addr<VpsRegistry>,
    op: &OperationId,
    approve: bool,
    actor: &str,
) -> anyhow::Result<()> {
    let Some(vps) = store.decide_held_operation(op, approve, actor).await? else {
        anyhow::bail!("operation {op} is not held");
    };
    let verb = if approve { "approved" } else { "rejected" };
    store
        .record_activity(
            Level::Warning,
            actor,
            Some(vps.as_str()),
            &format!("{actor} {verb} a held operation"),
            json!({ "operation": op }),
        )
        .await?;
    if approve {
        registry.do_send(Activate { vps });
    }
    Ok(())
}

/// A customer for a VPS created by hand.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ManualVps {
    pub customer_name: String,
    pub customer_email: String,
    pub template: String,
}

/// Creates a VPS by hand from a template; answers its id.
pub async fn create_vps(
    store: &Store,
    registry: &actix::Addr<VpsRegistry>,
    req: &ManualVps,
    actor: &str,
) -> anyhow::Result<VpsId> {
    anyhow::ensure!(!req.customer_name.trim().is_empty(), "the customer's name is required");
    anyhow::ensure!(req.customer_email.contains('@'), "the customer's email address is required");
    let Some(template) = store.template_by_name(&TemplateName::from(req.template.as_str())).await? else {
        anyhow::bail!("no template named {:?}", req.template)
    };
    anyhow::ensure!(template.enabled, "template {} is disabled", template.name);
    let id = VpsId::new(new_key());
    let name = template.name_pattern.replace("{id}", &id.as_str()[..8]).replace("{customer}", "c");
    let spec = Spec::from(&template);
    let op = OperationId::new(new_key());
    store
        .create_manual_vps(&ManualVpsRow {
            id: &id,
            name: &name,
            customer_name: req.customer_name.trim(),
            customer_email: req.customer_email.trim(),
            template: &template,
            spec,
            operation: &op,
            actor,
        })
        .await?;
    registry.do_send(Activate { vps: id.clone() });
    Ok(id)
}
