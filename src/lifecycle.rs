//! The lifecycle model: VPS states, durable operations and the decisions that turn billing
//! events into operations (design.md §1–4).
//!
//! Decisions are pure functions of the stored state and the event ([`decide`]), so the state
//! machine is tested without a store; [`store`] holds the queries that read that state and
//! write a decision's rows in one transaction.

pub mod kpi;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::billing::{BillingEvent, EventKind};

/// States of a VPS record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VpsState {
    Pending,
    Provisioning,
    Active,
    Suspending,
    Suspended,
    Resuming,
    Resizing,
    Resetting,
    Rebuilding,
    Deleting,
    Deleted,
    Failed,
}

impl VpsState {
    /// A VPS that still has (or is getting) a VM.
    pub fn is_live(self) -> bool {
        !matches!(self, Self::Deleted)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Suspending => "suspending",
            Self::Suspended => "suspended",
            Self::Resuming => "resuming",
            Self::Resizing => "resizing",
            Self::Resetting => "resetting",
            Self::Rebuilding => "rebuilding",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
            Self::Failed => "failed",
        }
    }
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Create,
    Suspend,
    Resume,
    Delete,
    Reset,
    Rebuild,
    Resize,
    SetPassword,
}

impl OpKind {
    /// Suspensions and deletions count against the blast-radius guard.
    pub fn is_destructive(self) -> bool {
        matches!(self, Self::Suspend | Self::Delete)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Delete => "delete",
            Self::Reset => "reset",
            Self::Rebuild => "rebuild",
            Self::Resize => "resize",
            Self::SetPassword => "set_password",
        }
    }
}

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpState {
    /// Written, not started (or waiting for its retry time).
    Queued,
    /// Held by the blast-radius guard until an admin approves.
    Held,
    Running,
    /// A provider task is under way; its id is saved.
    WaitingTask,
    Succeeded,
    /// Retries exhausted or a permanent failure; needs an admin.
    Dead,
    /// Rejected by an admin, or made unnecessary by a later event.
    Cancelled,
}

impl OpState {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Dead | Self::Cancelled)
    }
}

/// A template row: what a plan gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub az_id: String,
    pub image_id: String,
    pub storage_tag_id: String,
    #[serde(default)]
    pub vpc_id: String,
    #[serde(default)]
    pub subnet_id: String,
    pub cores: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
    #[serde(default = "default_pattern")]
    pub name_pattern: String,
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Other images (SCP image ids) a rebuild of this template's VPS may choose; the template's
    /// own `image_id` is always allowed.
    #[serde(default)]
    pub allowed_images: Vec<String>,
}

impl Template {
    /// Whether a rebuild may use `image_id`.
    pub fn allows_image(&self, image_id: &str) -> bool {
        image_id == self.image_id || self.allowed_images.iter().any(|i| i == image_id)
    }
}

fn default_pattern() -> String {
    "vps-{id}".into()
}

fn enabled() -> bool {
    true
}

/// The hardware of a VPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub cores: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
}

impl From<&Template> for Spec {
    fn from(t: &Template) -> Self {
        Self { cores: t.cores, memory_mb: t.memory_mb, disk_gb: t.disk_gb }
    }
}

/// A VPS as the lifecycle needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vps {
    pub id: String,
    pub state: VpsState,
    #[serde(default)]
    pub subscription: Option<String>,
    pub template: String,
    pub spec: Spec,
    #[serde(default)]
    pub server_id: Option<String>,
    #[serde(default)]
    pub delete_after: Option<DateTime<Utc>>,
}

/// A durable operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    pub vps: String,
    pub kind: OpKind,
    pub state: OpState,
    #[serde(default)]
    pub params: serde_json::Value,
    /// Attempts counted against `policy.max_attempts` (an admin's retry starts again at 0).
    #[serde(default)]
    pub attempts: u32,
    /// Every attempt ever started, retries by an admin included: it names the attempt in the
    /// idempotency keys of its provider writes, so a new attempt is new work for SCP while a
    /// crash in the middle of one replays the same attempt.
    #[serde(default)]
    pub attempt_seq: u32,
    #[serde(default)]
    pub task_id: Option<String>,
    #[serde(default)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_error: Option<String>,
    pub requested_by: String,
}

/// The stored state of one subscription, as [`decide`] needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionView {
    /// `None` for a subscription seen for the first time.
    pub status: Option<String>,
    pub last_event_at: Option<DateTime<Utc>>,
    pub plan_key: Option<String>,
    /// Its VPS records that are not deleted.
    pub live: Vec<Vps>,
}

/// What to do about one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to do; the reason is recorded.
    Nothing(String),
    /// Older than the last event applied to this subscription.
    Stale,
    /// Create a VPS from the plan's template.
    Provision {
        plan_key: String,
    },
    /// Cancel: for each live VPS, delete now (grace 0) or suspend and delete later.
    Deprovision {
        vps: Vec<String>,
        grace_days: u32,
    },
    Suspend {
        vps: Vec<String>,
    },
    Resume {
        vps: Vec<String>,
    },
    /// Change the hardware of every live VPS to the plan's template.
    ChangePlan {
        plan_key: String,
        vps: Vec<String>,
    },
    /// The event lacks what is needed to act; park it for an admin.
    Park(String),
}

/// Decides what an event means for a subscription (per-subscription, in arrival order).
pub fn decide(view: &SubscriptionView, event: &BillingEvent, grace_days: u32) -> Decision {
    if let (Some(last), Some(at)) = (view.last_event_at, event.occurred_at)
        && at < last
    {
        return Decision::Stale;
    }
    let ids = |pred: fn(VpsState) -> bool| -> Vec<String> {
        view.live.iter().filter(|v| pred(v.state)).map(|v| v.id.clone()).collect()
    };
    match event.kind {
        EventKind::Ignore => Decision::Nothing(event.ignore_reason()),
        EventKind::Subscribe => {
            if !view.live.is_empty() {
                // A repeated subscribe (or a reactivation) for a subscription that has a VPS:
                // resume it if it was suspended, otherwise nothing.
                let suspended = ids(|s| matches!(s, VpsState::Suspended | VpsState::Suspending));
                return if suspended.is_empty() {
                    Decision::Nothing("the subscription already has a VPS".into())
                } else {
                    Decision::Resume { vps: suspended }
                };
            }
            match event.plan_key.clone().or_else(|| view.plan_key.clone()) {
                Some(plan_key) if !plan_key.is_empty() => Decision::Provision { plan_key },
                _ => Decision::Park("the subscribe event names no plan".into()),
            }
        }
        EventKind::Cancel => {
            let vps = ids(|s| !matches!(s, VpsState::Deleting | VpsState::Deleted));
            if vps.is_empty() {
                Decision::Nothing("the subscription has no VPS to remove".into())
            } else {
                Decision::Deprovision { vps, grace_days }
            }
        }
        EventKind::Suspend => {
            let vps = ids(|s| !matches!(s, VpsState::Suspended | VpsState::Suspending | VpsState::Deleting));
            if vps.is_empty() { Decision::Nothing("nothing to suspend".into()) } else { Decision::Suspend { vps } }
        }
        EventKind::Resume => {
            let vps = ids(|s| matches!(s, VpsState::Suspended | VpsState::Suspending));
            if vps.is_empty() { Decision::Nothing("nothing is suspended".into()) } else { Decision::Resume { vps } }
        }
        EventKind::ChangePlan => match &event.plan_key {
            Some(plan) if Some(plan) == view.plan_key.as_ref() => {
                Decision::Nothing("the subscription is already on this plan".into())
            }
            Some(plan) if !plan.is_empty() => {
                let vps = ids(|s| !matches!(s, VpsState::Deleting | VpsState::Deleted));
                if vps.is_empty() {
                    Decision::Provision { plan_key: plan.clone() }
                } else {
                    Decision::ChangePlan { plan_key: plan.clone(), vps }
                }
            }
            _ => Decision::Park("the change-plan event names no plan".into()),
        },
    }
}

/// The ownership tag written into a VM's description: `vmauto:<install-id>:<vps-id>`.
pub fn owner_tag(install_id: &str, vps_id: &str) -> String {
    format!("vmauto:{install_id}:{vps_id}")
}

/// Capped exponential back-off with jitter for the `attempt`-th retry (1-based).
pub fn retry_delay(attempt: u32, base_secs: u64, max_secs: u64) -> std::time::Duration {
    let exp = base_secs.saturating_mul(1u64 << attempt.saturating_sub(1).min(20)).min(max_secs.max(base_secs));
    let jitter = rand::random::<f64>() * 0.25 + 0.875;
    std::time::Duration::from_secs_f64((exp as f64 * jitter).max(0.05))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::billing::Customer;

    fn event(kind: EventKind, plan: Option<&str>, at: Option<&str>) -> BillingEvent {
        BillingEvent {
            kind,
            source_event_id: None,
            occurred_at: at.map(|s| s.parse().expect("time")),
            subscription_id: Some("sub1".into()),
            customer: Customer::default(),
            plan_key: plan.map(Into::into),
            attributes: BTreeMap::new(),
        }
    }

    fn vps(id: &str, state: VpsState) -> Vps {
        Vps {
            id: id.into(),
            state,
            subscription: Some("sub1".into()),
            template: "t".into(),
            spec: Spec { cores: 1, memory_mb: 1024, disk_gb: 20 },
            server_id: None,
            delete_after: None,
        }
    }

    #[test]
    fn subscribe_provisions_once() {
        let view = SubscriptionView::default();
        assert_eq!(
            decide(&view, &event(EventKind::Subscribe, Some("starter"), None), 3),
            Decision::Provision { plan_key: "starter".into() }
        );
        let view = SubscriptionView { live: vec![vps("a", VpsState::Active)], ..Default::default() };
        assert!(matches!(decide(&view, &event(EventKind::Subscribe, Some("starter"), None), 3), Decision::Nothing(_)));
        assert!(matches!(
            decide(&SubscriptionView::default(), &event(EventKind::Subscribe, None, None), 3),
            Decision::Park(_)
        ));
    }

    #[test]
    fn cancel_and_resume() {
        let view = SubscriptionView { live: vec![vps("a", VpsState::Active)], ..Default::default() };
        assert_eq!(
            decide(&view, &event(EventKind::Cancel, None, None), 0),
            Decision::Deprovision { vps: vec!["a".into()], grace_days: 0 }
        );
        let view = SubscriptionView { live: vec![vps("a", VpsState::Suspended)], ..Default::default() };
        assert_eq!(decide(&view, &event(EventKind::Resume, None, None), 3), Decision::Resume { vps: vec!["a".into()] });
        assert_eq!(
            decide(&view, &event(EventKind::Subscribe, Some("x"), None), 3),
            Decision::Resume { vps: vec!["a".into()] },
            "re-subscribing inside the grace period resumes"
        );
    }

    #[test]
    fn stale_events_are_ignored() {
        let view = SubscriptionView {
            last_event_at: Some("2026-01-02T00:00:00Z".parse().expect("time")),
            ..Default::default()
        };
        assert_eq!(decide(&view, &event(EventKind::Cancel, None, Some("2026-01-01T00:00:00Z")), 0), Decision::Stale);
        assert_ne!(decide(&view, &event(EventKind::Cancel, None, Some("2026-01-03T00:00:00Z")), 0), Decision::Stale);
    }

    #[test]
    fn change_plan_resizes_live_vps() {
        let view = SubscriptionView {
            plan_key: Some("starter".into()),
            live: vec![vps("a", VpsState::Active)],
            ..Default::default()
        };
        assert_eq!(
            decide(&view, &event(EventKind::ChangePlan, Some("pro"), None), 3),
            Decision::ChangePlan { plan_key: "pro".into(), vps: vec!["a".into()] }
        );
        assert!(matches!(decide(&view, &event(EventKind::ChangePlan, Some("starter"), None), 3), Decision::Nothing(_)));
    }

    #[test]
    fn retry_delay_grows_and_caps() {
        assert!(retry_delay(1, 2, 300).as_secs_f64() <= 2.5);
        assert!(retry_delay(3, 2, 300).as_secs_f64() >= 7.0);
        assert!(retry_delay(30, 2, 300).as_secs_f64() <= 300.0 * 1.125 + 0.01);
    }
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventOutcome {
    /// `processed`, `ignored`, `stale`, `parked` or `failed`.
    pub status: &'static str,
    pub detail: String,
}

impl EventOutcome {
    pub fn new(status: &'static str, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into() }
    }
}
