//! Messages shared by several actors.

use actix::Message;

pub use crate::notice::{Notify, NotifyKind, Severity};

/// Asks an actor to finish its current work and stop (graceful shutdown).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Asks a supervised actor to restart itself (an operator's "restart component", and the
/// way tests exercise supervision). The mailbox survives; queued messages are kept.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Restart;

/// Asks a supervised actor how many times it was restarted.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "u64")]
pub struct RestartCount;
