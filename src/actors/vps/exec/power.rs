//! Power operations: start, graceful shutdown, power cut, reboot. Each looks at the VM first
//! and does nothing when it is already where the customer wants it (a start of a running VM,
//! a stop of a stopped one), so a double click or a retry never acts twice.

use serde_json::Value;

use super::{Outcome, Step, call, key, owned_server, run_task, server_id_of, wait};
use crate::actors::gateway::{RebootServer, StartServer, StopServer};
use crate::db::models::operation::PowerAction;
use crate::db::models::vps::PowerState;
use crate::lifecycle::{Operation, VpsPatch};
use crate::provider::{Power, ServerId, TaskId};

use super::ExecContext;

/// The action a power operation's params name.
pub fn action_of(op: &Operation) -> Result<PowerAction, String> {
    let name = op.params.get("action").and_then(Value::as_str).unwrap_or_default();
    PowerAction::parse(name).ok_or_else(|| format!("unknown power action {name:?}"))
}

pub(super) async fn power(cx: &ExecContext, op: &Operation) -> Step<VpsPatch> {
    let action = action_of(op).map_err(Outcome::Fail)?;
    let server_id = server_id_of(cx, op).await?.ok_or_else(|| Outcome::Fail("the VPS has no VM".into()))?;
    let server =
        owned_server(cx, op, &server_id).await?.ok_or_else(|| Outcome::Fail(format!("VM {server_id} is gone")))?;
    let after = match action {
        PowerAction::Start | PowerAction::Reboot => PowerState::On,
        PowerAction::Stop | PowerAction::ForceStop => PowerState::Off,
    };
    if let Some(task) = &op.task_id {
        // Resumed while this attempt's task ran: it is done once the task is.
        wait(cx, op, TaskId::new(task.clone())).await?;
        return Ok(VpsPatch { power: Some(after), ..VpsPatch::default() });
    }
    let sid = ServerId::new(&server_id);
    let step = action.as_str();
    let task = match (action, server.power) {
        (PowerAction::Start, Power::On) | (PowerAction::Stop | PowerAction::ForceStop, Power::Off) => None,
        (PowerAction::Start | PowerAction::Reboot, Power::Off) => {
            Some(call(cx, StartServer { server_id: sid, op: key(op, step) }).await?)
        }
        (PowerAction::Reboot, _) => {
            Some(call(cx, RebootServer { server_id: sid, op: key(op, step), force: false }).await?)
        }
        (PowerAction::Stop | PowerAction::ForceStop, _) => {
            let force = action == PowerAction::ForceStop;
            Some(call(cx, StopServer { server_id: sid, op: key(op, step), force }).await?)
        }
        (PowerAction::Start, Power::Unknown) => {
            Some(call(cx, StartServer { server_id: sid, op: key(op, step) }).await?)
        }
    };
    if let Some(task) = task {
        run_task(cx, op, task).await?;
    }
    Ok(VpsPatch { power: Some(after), ..VpsPatch::default() })
}
