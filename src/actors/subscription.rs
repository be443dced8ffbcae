//! SubscriptionActor: applies billing events to subscriptions one at a time, in arrival
//! order, and turns each decision into VPS and operation rows written in one transaction.
//!
//! Events of one subscription are therefore never interleaved; events older than the last one
//! applied are recorded as stale and ignored; an unknown plan parks the event and alerts.

use std::sync::Arc;

use actix::{Actor, Addr, AtomicResponse, Context, Handler, Message, Recipient, WrapFuture};
use chrono::Utc;
use serde_json::json;

mod placer;

use super::gateway::Gateways;
use super::messages::{Notify, NotifyKind, Severity, Shutdown};
use super::plugins::{ChooseTemplate, PluginHost};
use super::registry::{Activate, VpsRegistry};
use super::supervisor::Supervision;
use crate::billing::{BillingEvent, EventKind};
use crate::config::Config;
use crate::db::Store;
use crate::db::models::webhook_event::InboxKey;
use crate::lifecycle::Level;
use crate::lifecycle::placement::Placed;
use crate::lifecycle::{Decision, OpKind, Spec, Template, TemplateName, VpsId, VpsState, decide};
use crate::lifecycle::{DecisionActivity, DecisionWrite, NewOperation, NewVps, SubscriptionId, new_key, stable_key};
use crate::plugin_host::{DEFAULT_MAPPER, TemplateChoice};
use crate::telemetry::metrics::Metrics;

/// Apply billing events from one source.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<EventOutcome>")]
pub struct HandleEvents {
    pub source: String,
    /// Who asked: `webhook:<inbox id>`, `admin:<user>`, `system`.
    pub requested_by: String,
    pub events: Vec<BillingEvent>,
}

/// Apply a verified Stripe payment event (an upgrade paid, refunded or disputed); queued
/// behind billing events like any other lifecycle event.
#[derive(Debug, Clone, Message)]
#[rtype(result = "anyhow::Result<EventOutcome>")]
pub struct HandlePayment {
    pub event: serde_json::Value,
}

pub use crate::lifecycle::EventOutcome;

pub struct SubscriptionActor {
    store: Store,
    config: Arc<Config>,
    plugins: Addr<PluginHost>,
    registry: Addr<VpsRegistry>,
    notify: Recipient<Notify>,
    gateways: Gateways,
    placer: placer::Placer,
    sup: Supervision,
}

impl SubscriptionActor {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        plugins: Addr<PluginHost>,
        registry: Addr<VpsRegistry>,
        notify: Recipient<Notify>,
        gateways: Gateways,
        metrics: Arc<Metrics>,
    ) -> Self {
        let sup = Supervision::new("subscription", metrics);
        Self { store, config, plugins, registry, notify, gateways, placer: placer::Placer::default(), sup }
    }
}

impl Actor for SubscriptionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
    }
}

crate::supervised_child!(SubscriptionActor);

impl Handler<HandleEvents> for SubscriptionActor {
    type Result = AtomicResponse<Self, Vec<EventOutcome>>;

    fn handle(&mut self, msg: HandleEvents, _: &mut Self::Context) -> Self::Result {
        let ctx = Apply {
            store: self.store.clone(),
            config: self.config.clone(),
            plugins: self.plugins.clone(),
            registry: self.registry.clone(),
            notify: self.notify.clone(),
            gateways: self.gateways.clone(),
            placer: self.placer.clone(),
        };
        // Atomic: the next message waits until these events are applied.
        AtomicResponse::new(Box::pin(
            async move {
                let mut outcomes = Vec::with_capacity(msg.events.len());
                if !ctx.store.may_work() {
                    // Another node runs the lifecycle; the row waits in the inbox for it.
                    let why = "this node does not hold the work lease; the node that holds it applies the event";
                    outcomes.push(EventOutcome::new(crate::db::models::webhook_event::DEFERRED, why));
                    return outcomes;
                }
                for event in &msg.events {
                    let outcome = match ctx.apply(&msg.source, &msg.requested_by, event).await {
                        Ok(outcome) => outcome,
                        // Not the event's fault: it is applied again once the server answers,
                        // and the events after it wait for it.
                        Err(e) if crate::db::link::is_unavailable(&e) => {
                            outcomes
                                .push(EventOutcome::new(crate::db::models::webhook_event::DEFERRED, format!("{e:#}")));
                            break;
                        }
                        Err(e) => ctx.failed(&msg.source, &msg.requested_by, event, &format!("{e:#}")).await,
                    };
                    outcomes.push(outcome);
                }
                outcomes
            }
            .into_actor(self),
        ))
    }
}

impl Handler<HandlePayment> for SubscriptionActor {
    type Result = AtomicResponse<Self, anyhow::Result<EventOutcome>>;

    fn handle(&mut self, msg: HandlePayment, _: &mut Self::Context) -> Self::Result {
        // A payment is applied by the node Stripe reached, as an admin's action is: its
        // writes are transactions of their own, and the sender waits for them.
        let (store, config, notifier) = (self.store.unfenced(), self.config.clone(), self.notify.clone());
        let registry = self.registry.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let ctx = crate::upgrade::fulfil::Ctx {
                    store: &store,
                    config: &config,
                    notifier,
                    wake: Arc::new(move |vps: &VpsId| registry.do_send(Activate { vps: vps.clone() })),
                };
                crate::upgrade::fulfil::handle_event(&ctx, &msg.event).await
            }
            .into_actor(self),
        ))
    }
}

impl Handler<Shutdown> for SubscriptionActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {}
}

/// What applying an event needs.
struct Apply {
    store: Store,
    config: Arc<Config>,
    plugins: Addr<PluginHost>,
    registry: Addr<VpsRegistry>,
    notify: Recipient<Notify>,
    gateways: Gateways,
    placer: placer::Placer,
}

impl Apply {
    async fn apply(&self, source: &str, requested_by: &str, event: &BillingEvent) -> anyhow::Result<EventOutcome> {
        if event.kind == EventKind::Ignore {
            return Ok(EventOutcome::new("ignored", event.ignore_reason()));
        }
        let external = match self.subscription_of(source, event).await? {
            Ok(id) => id,
            Err(reason) => return Ok(self.park(source, event, &reason).await),
        };
        let sub_key = SubscriptionId::of(source, &external);
        let view = self.store.subscription_view(&sub_key).await?;
        let plan = event.plan_key.clone().or_else(|| view.plan_key.clone()).unwrap_or_default();
        let grace = self.config.policy.grace_days_by_plan.get(&plan).copied().unwrap_or(self.config.policy.grace_days);
        let decision = decide(&view, event, grace);
        let mut w = DecisionWrite {
            source: source.to_string(),
            subscription_key: Some(sub_key.clone()),
            subscription_external_id: Some(external.clone()),
            plan_key: event.plan_key.clone(),
            occurred_at: event.occurred_at,
            inbox: requested_by
                .strip_prefix("webhook:")
                .map(|key| (InboxKey::from(key), super::webhook::event_fingerprint(event))),
            ..Default::default()
        };
        let op = |vps: &VpsId, kind: OpKind| NewOperation {
            vps: vps.clone(),
            kind,
            params: json!({}),
            requested_by: requested_by.to_string(),
            not_before: None,
            held: false,
        };
        // Where a new VPS goes, added to that AZ's running sum once written.
        let mut placed = None;
        let outcome = match &decision {
            Decision::Stale => return Ok(EventOutcome::new("stale", "older than the last event applied")),
            Decision::Nothing(why) => {
                w.plan_key = None;
                EventOutcome::new("ignored", why.clone())
            }
            Decision::Park(why) => return Ok(self.park(source, event, why).await),
            Decision::Provision { plan_key } => {
                let template = match self.resolve_template(source, event, plan_key).await? {
                    Ok(t) => t,
                    Err(why) => return Ok(self.park(source, event, &why).await),
                };
                let wanted = match crate::lifecycle::choices::check(&template, &event.choices, &self.config.locations) {
                    Ok(w) => w,
                    Err(why) => return Ok(self.park(source, event, &why).await),
                };
                let spec = Spec::from(&template);
                let at = match self.placer.place(&self.store, &self.gateways, &wanted, spec).await? {
                    Placed::Room(i) | Placed::Unknown(i) => &wanted.candidates[i],
                    Placed::Full(why) => {
                        let place = wanted.location.as_deref().map_or_else(
                            || format!("AZ {} of provider {}", wanted.candidates[0].az, wanted.candidates[0].provider),
                            |l| format!("location {l}"),
                        );
                        let why = format!("no capacity for {} in {place} ({})", template.name, why.join("; "));
                        return Ok(self.park(source, event, &why).await);
                    }
                };
                let chosen = wanted.build(&template, at);
                let id = VpsId::new(new_key());
                let name = template.name_pattern.replace("{id}", &id.as_str()[..8]).replace("{customer}", "c");
                w.subscription_status = Some("active");
                let recorded = (!event.choices.is_empty()).then(|| {
                    json!({
                        "chosen": &chosen, "source": source, "event_id": event.source_event_id,
                        "requested_by": requested_by,
                    })
                });
                let template = chosen.apply(&template);
                placed = Some((at.clone(), Spec::from(&template)));
                w.new_vps.push(NewVps { id: id.clone(), name, template, choices: recorded });
                let params = chosen.hostname.as_ref().map_or_else(|| json!({}), |h| json!({ "hostname": h }));
                w.operations.push(NewOperation { params, ..op(&id, OpKind::Create) });
                EventOutcome::new("processed", format!("provisioning VPS {id}"))
            }
            Decision::Deprovision { vps, grace_days } => {
                w.subscription_status = Some("cancelled");
                let held = self.guard_trips(vps.len()).await?;
                if *grace_days == 0 {
                    for v in vps {
                        if !held {
                            w.vps_states.push((v.clone(), VpsState::Deleting, None));
                        }
                        w.operations.push(NewOperation { held, ..op(v, OpKind::Delete) });
                    }
                } else {
                    let due = Utc::now() + chrono::Duration::days(i64::from(*grace_days));
                    for v in vps {
                        if !held {
                            w.vps_states.push((v.clone(), VpsState::Suspending, Some(due)));
                        }
                        w.operations.push(NewOperation { held, ..op(v, OpKind::Suspend) });
                        w.operations.push(NewOperation { held, not_before: Some(due), ..op(v, OpKind::Delete) });
                    }
                }
                EventOutcome::new(
                    "processed",
                    if held {
                        "held by the blast-radius guard until an admin approves".to_string()
                    } else if *grace_days == 0 {
                        format!("deleting {} VPS", vps.len())
                    } else {
                        format!("suspending {} VPS, deletion in {grace_days} day(s)", vps.len())
                    },
                )
            }
            Decision::Suspend { vps } => {
                w.subscription_status = Some("suspended");
                let held = self.guard_trips(vps.len()).await?;
                for v in vps {
                    w.operations.push(NewOperation { held, ..op(v, OpKind::Suspend) });
                }
                EventOutcome::new("processed", format!("suspending {} VPS", vps.len()))
            }
            Decision::Resume { vps } => {
                w.subscription_status = Some("active");
                for v in vps {
                    w.cancel_pending_deletes_of.push(v.clone());
                    w.operations.push(op(v, OpKind::Resume));
                }
                EventOutcome::new("processed", format!("resuming {} VPS", vps.len()))
            }
            Decision::ChangePlan { plan_key, vps } => {
                let template = match self.resolve_template(source, event, plan_key).await? {
                    Ok(t) => t,
                    Err(why) => return Ok(self.park(source, event, &why).await),
                };
                for v in vps {
                    w.operations.push(NewOperation {
                        params: json!({ "spec": Spec::from(&template), "template": template.name, "template_row": template }),
                        ..op(v, OpKind::Resize)
                    });
                }
                EventOutcome::new("processed", format!("moving {} VPS to {}", vps.len(), template.name))
            }
        };
        w.activity = Some(DecisionActivity {
            actor: requested_by.to_string(),
            subject: format!("subscription:{sub_key}"),
            message: format!("{:?} for subscription {external}: {}", event.kind, outcome.detail),
            data: json!({ "source": source, "event": event }),
        });
        self.store.write_decision(event, &w).await?;
        if let Some((at, spec)) = &placed {
            self.placer.placed(at, *spec);
        }
        if matches!(decision, Decision::Deprovision { .. }) {
            self.warn_customer(&w.vps_states);
        }
        let touched: std::collections::BTreeSet<&VpsId> = w.operations.iter().map(|o| &o.vps).collect();
        for vps in touched {
            self.registry.do_send(Activate { vps: vps.clone() });
        }
        Ok(outcome)
    }

    /// The subscription an event is about. A cancel that names only a customer acts when that
    /// customer has exactly one live subscription; other events without a subscription id
    /// use the customer id (one subscription per customer).
    async fn subscription_of(&self, source: &str, event: &BillingEvent) -> anyhow::Result<Result<String, String>> {
        if let Some(id) = event.subscription_id.as_ref().filter(|s| !s.is_empty()) {
            return Ok(Ok(id.clone()));
        }
        if event.customer.id.is_empty() {
            return Ok(Err("the event names neither a subscription nor a customer".into()));
        }
        if matches!(event.kind, EventKind::Cancel | EventKind::Suspend) {
            let live = self.store.live_subscriptions_of_customer(source, &event.customer.id).await?;
            let by_customer = SubscriptionId::of(source, &event.customer.id);
            return Ok(match live.len() {
                1 => Ok(live[0].clone()),
                0 if self.store.subscription_view(&by_customer).await?.status.is_some() => {
                    Ok(event.customer.id.clone())
                }
                n => Err(format!("customer {} has {n} live subscriptions; an admin must choose", event.customer.id)),
            });
        }
        Ok(Ok(event.customer.id.clone()))
    }

    /// The template a plan maps to, chosen by the plan-mapping plugin over the store's
    /// templates and this source's mappings; `Err(reason)` when there is none to use.
    async fn resolve_template(
        &self,
        source: &str,
        event: &BillingEvent,
        plan_key: &str,
    ) -> anyhow::Result<Result<Template, String>> {
        let catalogued = self.store.catalogued().await?;
        let catalogue = catalogued.for_source(source);
        let mut event = event.clone();
        event.plan_key = Some(plan_key.to_string());
        let settings = self.config.sources.get(source).map(|s| s.settings.clone()).unwrap_or_default();
        let choice = self
            .plugins
            .send(ChooseTemplate {
                plugin: DEFAULT_MAPPER.into(),
                source: source.to_string(),
                event,
                catalogue,
                settings,
            })
            .await
            .map_err(|e| anyhow::anyhow!("the plugin host is not running: {e}"))?
            .map_err(|e| anyhow::anyhow!("the plan mapper failed: {e}"))?;
        let name = match choice {
            TemplateChoice::Template(name) => TemplateName::from(name),
            TemplateChoice::None(reason) => {
                return Ok(Err(format!("plan {plan_key:?} of source {source:?}: {reason}")));
            }
        };
        Ok(match catalogued.templates.get(&name).cloned() {
            Some(t) if t.enabled => Ok(t),
            Some(_) => Err(format!("plan {plan_key:?} maps to template {name:?}, which is disabled")),
            None => Err(format!("plan {plan_key:?} maps to template {name:?}, which does not exist")),
        })
    }

    /// Tells the customer (email, outgoing webhook) what a cancellation scheduled for each
    /// VPS it suspends or deletes; held ones wait for an admin and are not announced.
    fn warn_customer(&self, scheduled: &[(VpsId, VpsState, Option<chrono::DateTime<Utc>>)]) {
        for (vps, state, due) in scheduled {
            let body = match (state, due) {
                (VpsState::Suspending, Some(due)) => {
                    format!("VPS {vps} is suspended now and deleted at {}; its customer was told.", due.to_rfc3339())
                }
                _ => format!("VPS {vps} is deleted now; its customer was told."),
            };
            self.notify.do_send(Notify {
                kind: NotifyKind::CustomerWarning,
                severity: Severity::Info,
                title: format!("Customer warned: VPS {vps} scheduled for deletion"),
                body,
                subject: Some(format!("vps:{vps}")),
                portal_url: None,
            });
        }
    }

    /// Whether `n` more destructive operations would exceed the hourly threshold.
    async fn guard_trips(&self, n: usize) -> anyhow::Result<bool> {
        let recent = self.store.destructive_ops_last_hour().await?;
        let limit = u64::from(self.config.policy.max_destructive_per_hour);
        if recent + n as u64 > limit {
            self.notify.do_send(Notify {
                kind: NotifyKind::GuardTripped,
                severity: Severity::Critical,
                title: "Destructive automation paused".into(),
                body: format!(
                    "{} suspensions/deletions in the last hour would exceed policy.max_destructive_per_hour = {limit}. \
                     The new ones wait for an admin to approve or reject them.",
                    recent + n as u64
                ),
                subject: None,
                portal_url: None,
            });
            return Ok(true);
        }
        Ok(false)
    }

    /// An event the store refused: logged, recorded, and an admin is told, since nothing
    /// happens for that customer until the event is replayed from the inbox.
    async fn failed(&self, source: &str, requested_by: &str, event: &BillingEvent, error: &str) -> EventOutcome {
        tracing::error!(source = %source, error = %error, "event could not be applied");
        let what =
            format!("{:?} for subscription {}", event.kind, event.subscription_id.as_deref().unwrap_or("(none)"));
        let replay = match requested_by.strip_prefix("webhook:") {
            Some(key) => format!("replay webhook {key} from the inbox"),
            None => "send it again".to_string(),
        };
        let body = format!("{what} could not be applied: {error}. Once the cause is fixed, {replay}.");
        let (notice, activity) = (
            (NotifyKind::EventFailed, Severity::Critical, format!("Billing event not applied ({source})"), body),
            (Level::Error, requested_by, format!("event not applied: {what}: {error}")),
        );
        self.tell(source, event, notice, activity).await;
        EventOutcome::new("failed", error)
    }

    async fn park(&self, source: &str, event: &BillingEvent, why: &str) -> EventOutcome {
        let body = format!("{why}. Resolve it (e.g. map the plan to a template), then replay the event.");
        let notice = (NotifyKind::EventParked, Severity::Warning, format!("Billing event parked ({source})"), body);
        self.tell(source, event, notice, (Level::Warning, "system", format!("event parked: {why}"))).await;
        EventOutcome::new("parked", why)
    }

    /// Tells admins about an event that needs them (`notice`: kind, severity, title, body) and
    /// records it in the activity log (`activity`: level, actor, message).
    async fn tell(
        &self,
        source: &str,
        event: &BillingEvent,
        (kind, severity, title, body): (NotifyKind, Severity, String, String),
        (level, actor, message): (Level, &str, String),
    ) {
        let subject = event.subscription_id.as_ref().map(|s| format!("subscription:{}", stable_key(source, s)));
        self.notify.do_send(Notify { kind, severity, title, body, subject, portal_url: None });
        let data = json!({ "source": source, "event": event });
        let _ = self.store.record_activity(level, actor, None, &message, data).await;
    }
}
