//! Restore: a deleted VPS back from SCP's recycle bin (`provider.sangfor.delete_mode =
//! "recycle_bin"`), started, with its addresses: the VPS is `active` again, its record,
//! history and VM the same.

use super::{Outcome, Step, already_done, call, key, owned_server, run_task, server_id_of, wait, wait_for_ip};
use crate::actors::gateway::{RestoreServer, StartServer};
use crate::db::models::vps::PowerState;
use crate::lifecycle::{Operation, VpsPatch, VpsState};
use crate::provider::{Power, ProviderError, ServerId, TaskId};

use super::ExecContext;

pub(super) async fn restore(cx: &ExecContext, op: &Operation) -> Step<VpsPatch> {
    let server_id =
        server_id_of(cx, op).await?.ok_or_else(|| Outcome::Fail("the VPS never had a VM to restore".into()))?;
    let sid = ServerId::new(&server_id);
    if let Some(task) = &op.task_id {
        // Resumed while this attempt's restore (or start) ran.
        wait(cx, op, TaskId::new(task.clone())).await?;
    } else {
        match call(cx, RestoreServer { server_id: sid.clone(), op: key(op, "restore") }).await? {
            Ok(task) => run_task(cx, op, Ok(task)).await?,
            Err(ProviderError::NotFound { .. }) => {
                // Not in the recycle bin: restored already (it is visible again), or gone.
                if owned_server(cx, op, &server_id).await?.is_none() {
                    return Err(Outcome::Fail(format!(
                        "VM {server_id} is no longer in SCP's recycle bin (deleted for good or expired); \
                         it cannot be restored — create a new VPS instead"
                    )));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let server = owned_server(cx, op, &server_id)
        .await?
        .ok_or_else(|| Outcome::Fail(format!("VM {server_id} is not back from the recycle bin")))?;
    if server.power != Power::On {
        match call(cx, StartServer { server_id: sid, op: key(op, "start") }).await? {
            Ok(task) => run_task(cx, op, Ok(task)).await?,
            Err(e) if already_done(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let server = wait_for_ip(cx, op, &server_id).await?;
    Ok(VpsPatch {
        state: Some(VpsState::Active),
        ips: Some(server.ips),
        delete_after: Some(None),
        active_at: Some(chrono::Utc::now().to_rfc3339()),
        power: Some(PowerState::On),
        ..VpsPatch::default()
    })
}
