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
    /// A cancellation scheduled a VPS's suspension and deletion: the customer is told what
    /// happens when (email with `sources.<name>.customer_email`, outgoing webhook).
    CustomerWarning,
    /// A scheduled deletion is `policy.warn_before_delete_hours` away: the customer is
    /// reminded.
    DeletionReminder,
    /// A customer paid to restore their suspended VPS: its deletion is cancelled and it is
    /// being resumed (the outgoing webhook lets a billing workflow reactivate the
    /// subscription).
    RestorePaid,
}

impl NotifyKind {
    /// Notices the customer is told of (by email and through the outgoing webhook), which
    /// carry the portal link when `portal.enabled`.
    pub fn is_for_customer(self) -> bool {
        matches!(self, Self::VpsReady | Self::CustomerWarning | Self::DeletionReminder)
    }
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
    /// The customer's portal link, on notices about a VPS the customer is told of
    /// (`vps_ready`, `customer_warning`) when `portal.enabled`. In memory only: never stored
    /// with the notification (the link's token is stored nowhere).
    #[serde(skip)]
    pub portal_url: Option<String>,
}
