//! What admins are told about: a [`Notify`] message with its [`NotifyKind`] and
//! [`Severity`]. A leaf module: whatever notices something (the gateway, an operation, a
//! payment) builds one and sends it to the notifier actor, which stores and delivers it.

use actix::Message;
use serde::{Deserialize, Serialize};

/// How loud a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// What happened, as a stable kind that notification channels and templates key on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    VpsReady,
    VpsDeleted,
    OperationDead,
    EventParked,
    /// A billing event could not be applied (the store refused the decision); it waits in
    /// the inbox for a replay.
    EventFailed,
    BreakerOpen,
    BreakerClosed,
    GuardTripped,
    ReconcileFinding,
    PaymentIssue,
    /// An admin's test from the settings page.
    Test,
    /// A paid upgrade was applied (the customer is emailed when SMTP is on).
    UpgradeApplied,
}

/// Asks the notifier to tell admins about something (in the UI, by email, by webhook).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Notify {
    pub kind: NotifyKind,
    pub severity: Severity,
    pub title: String,
    pub body: String,
    /// The record this is about (`vps:…`, `operation:…`), when there is one.
    pub subject: Option<String>,
}
