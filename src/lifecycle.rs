//! The lifecycle model: VPS states, durable operations and the decisions that turn billing
//! events into operations (design.md §1–4).
//!
//! Decisions are pure functions of the stored state and the event ([`decide`]), so the state
//! machine is tested without a store; the rows they read and write, and the queries, are in
//! [`crate::db::models`] (re-exported here under their lifecycle names).

pub mod choices;
pub mod kpi;
pub mod placement;

use crate::billing::{BillingEvent, EventKind};

pub use crate::db::models::activity::Level;
pub use crate::db::models::operation::{NewOperation, OpKind, OpPatch, OpState, Operation, OperationId};
pub use crate::db::models::subscription::{
    DecisionActivity, DecisionWrite, NewVps, SubscriptionId, SubscriptionView, new_key, stable_key,
};
pub use crate::db::models::template::{Template, TemplateName};
pub use crate::db::models::vps::{Spec, Vps, VpsId, VpsPatch, VpsState};
pub use crate::db::models::webhook_event::EventOutcome;

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
        vps: Vec<VpsId>,
        grace_days: u32,
    },
    Suspend {
        vps: Vec<VpsId>,
    },
    Resume {
        vps: Vec<VpsId>,
    },
    /// Change the hardware of every live VPS to the plan's template.
    ChangePlan {
        plan_key: String,
        vps: Vec<VpsId>,
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
    let ids = |pred: fn(VpsState) -> bool| -> Vec<VpsId> {
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
pub fn owner_tag(install_id: &str, vps_id: &VpsId) -> String {
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
            choices: Default::default(),
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
            power: None,
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
