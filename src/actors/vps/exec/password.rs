//! Root passwords: set by SCP on a new or reset VM, sealed into the store, and a reset (a
//! power cycle, then a new password once the guest is back).

use serde_json::json;

use super::{ExecContext, Outcome, Step, call, key, owned_server, run_task, save_params, server_id_of, store_err};
use super::{wait, wait_for_ip, wait_unsaved};
use crate::actors::gateway::{RebootServer, SetPassword, StartServer};
use crate::lifecycle::{Operation, VpsPatch, VpsState};
use crate::provider::{ServerId, TaskId};
use crate::secrets::generate_password;

pub(super) async fn set_password(cx: &ExecContext, op: &Operation) -> Step<VpsPatch> {
    let server_id = server_id_of(cx, op).await?.ok_or_else(|| Outcome::Fail("the VPS has no VM".into()))?;
    owned_server(cx, op, &server_id).await?.ok_or_else(|| Outcome::Fail(format!("VM {server_id} is gone")))?;
    let sealed = new_root_password(cx, op, &server_id, None).await?;
    Ok(VpsPatch { state: Some(VpsState::Active), root_password: Some(sealed), ..VpsPatch::default() })
}

/// Reset: a power cycle (a forced reboot of a running VM, a start of a stopped one), then a new
/// root password once the guest is back.
pub(super) async fn reset(cx: &ExecContext, op: &Operation) -> Step<VpsPatch> {
    let server_id = server_id_of(cx, op).await?.ok_or_else(|| Outcome::Fail("the VPS has no VM".into()))?;
    let server =
        owned_server(cx, op, &server_id).await?.ok_or_else(|| Outcome::Fail(format!("VM {server_id} is gone")))?;
    if let Some(task) = &op.task_id {
        // Resumed while this attempt's power cycle ran: it is done once the task is.
        wait(cx, op, TaskId::new(task.clone())).await?;
    } else {
        let sid = ServerId::new(&server_id);
        let task = if server.power == crate::provider::Power::Off {
            call(cx, StartServer { server_id: sid, op: key(op, "power-cycle") }).await?
        } else {
            call(cx, RebootServer { server_id: sid, op: key(op, "power-cycle"), force: true }).await?
        };
        run_task(cx, op, task).await?;
    }
    let server = wait_for_ip(cx, op, &server_id).await?;
    let sealed = new_root_password(cx, op, &server_id, None).await?;
    Ok(VpsPatch {
        state: Some(VpsState::Active),
        ips: Some(server.ips),
        root_password: Some(sealed),
        ..VpsPatch::default()
    })
}

/// Sets a new root password through SCP and returns it sealed for the store. The password is
/// sealed into the operation before SCP is asked, so a crash during this attempt replays the
/// same password under the same key instead of storing one SCP never set. `show`, when
/// given, is written to the VPS with the sealed password (or alone, when the password was
/// sealed by an earlier try of this attempt).
pub(super) async fn new_root_password(
    cx: &ExecContext,
    op: &Operation,
    server_id: &str,
    show: Option<&VpsPatch>,
) -> Step<String> {
    let place = crate::secrets::root_password_place(op.vps.as_str());
    let pending = op.params.get("pending_password");
    let reuse = pending
        .filter(|p| p["attempt"].as_u64() == Some(u64::from(op.attempt_seq)) && p["server_id"] == json!(server_id))
        .and_then(|p| p["sealed"].as_str())
        .and_then(|sealed| cx.sealer.open(sealed, &place).ok().map(|pw| (pw, sealed.to_string())));
    let (password, sealed) = match reuse {
        Some(found) => {
            if let Some(show) = show {
                cx.store.update_vps(&op.vps, show).await.map_err(store_err)?;
            }
            found
        }
        None => {
            let password = generate_password();
            let sealed = cx.sealer.seal(&password, &place);
            let patch =
                json!({ "pending_password": { "attempt": op.attempt_seq, "server_id": server_id, "sealed": sealed } });
            save_params(cx, op, patch, show).await?;
            (password, sealed)
        }
    };
    let task = call(cx, SetPassword { server_id: ServerId::new(server_id), op: key(op, "password"), password })
        .await?
        .map_err(Outcome::from)?;
    wait_unsaved(cx, task).await?;
    Ok(sealed)
}
