//! What a verified Stripe event does (webhooks.md §2b, §3.7).
//!
//! - `checkout.session.completed` with `payment_status` `paid` (or `no_payment_required`),
//!   and `checkout.session.async_payment_succeeded`: record the payment (record id = the
//!   session id, so it exists once), use up the link, queue a `resize` operation whose
//!   idempotency key is derived from the session id, and wake the VPS's actor.
//! - `checkout.session.completed` unpaid, `…async_payment_failed`, `…expired`: nothing changes.
//! - `charge.refunded`, `charge.dispute.created`: an admin is told; nothing is undone.
//!
//! Every step is idempotent, so a duplicate or an out-of-order delivery (a success before
//! its `completed`) changes nothing twice. A second paid session for a link already used
//! is recorded as `duplicate` and an admin is asked to refund it.

use serde_json::{Value, json};

use super::links::LinkId;
use super::offers::OfferId;
use super::{links, meta};
use crate::config::Config;
use crate::db::Store;
use crate::db::models::payment::{MismatchedCheckout, PaidCheckout, PaymentId, PaymentIssue, PaymentStatus};
use crate::lifecycle::EventOutcome;
use crate::lifecycle::Level;
use crate::lifecycle::{OpKind, OperationId, Spec, TemplateName, VpsId};
use crate::notice::{Notify, NotifyKind, Severity};

/// What fulfilment uses of the running appliance.
#[derive(Clone)]
pub struct Ctx<'a> {
    pub store: &'a Store,
    pub config: &'a Config,
    pub notifier: actix::Recipient<Notify>,
    /// Wakes a VPS's actor so it runs its queued operations.
    pub wake: std::sync::Arc<dyn Fn(&VpsId) + Send + Sync>,
}

/// Who the resize is requested by.
pub fn requested_by(session: &str) -> String {
    format!("stripe:{session}")
}

/// The idempotency key (and id) of the resize a session pays for.
pub fn operation_key(session: &str) -> OperationId {
    use sha2::{Digest, Sha256};
    OperationId::new(format!("upg{}", hex::encode(&Sha256::digest(session.as_bytes())[..16])))
}

/// Applies one verified Stripe event (the subscription actor runs it, one event at a time,
/// like any billing event). An `Err` is a transient failure (the store): the row stays
/// `applying`, so a redelivery or the next start-up applies it again.
pub async fn handle_event(state: &Ctx<'_>, event: &Value) -> anyhow::Result<EventOutcome> {
    let kind = event["type"].as_str().unwrap_or_default();
    let object = &event["data"]["object"];
    match kind {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            let paid = matches!(object["payment_status"].as_str(), Some("paid" | "no_payment_required"));
            if !paid {
                return Ok(EventOutcome::new("ignored", "the payment is not confirmed yet; waiting for Stripe"));
            }
            if meta_str(object, super::restore::meta::PURPOSE) == Some(super::restore::PURPOSE) {
                return super::restore::fulfil(state, event, object).await;
            }
            fulfil(state, event, object).await
        }
        "checkout.session.async_payment_failed" | "checkout.session.expired" => {
            Ok(EventOutcome::new("ignored", format!("{kind}: nothing to change")))
        }
        "charge.refunded" | "charge.dispute.created" => payment_issue(state, kind, object).await,
        other => Ok(EventOutcome::new("ignored", format!("{other} is not used by upgrades"))),
    }
}

pub(super) fn meta_str<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object["metadata"][key].as_str().filter(|s| !s.is_empty())
}

pub(super) fn meta_u64(object: &Value, key: &str) -> Option<u64> {
    meta_str(object, key).and_then(|s| s.parse().ok())
}

async fn fulfil(state: &Ctx<'_>, event: &Value, session: &Value) -> anyhow::Result<EventOutcome> {
    let store = state.store;
    let Some(sid) = session["id"].as_str().filter(|s| !s.is_empty()) else {
        return Ok(EventOutcome::new("failed", "the session has no id"));
    };
    let sid = &PaymentId::from(sid);
    let (Some(link_id), Some(vps_id), Some(offer)) =
        (meta_str(session, meta::LINK), meta_str(session, meta::VPS), meta_str(session, meta::OFFER))
    else {
        return Ok(EventOutcome::new("ignored", "not an upgrade session (no vmauto metadata)"));
    };
    let link_id = &LinkId::from(link_id);
    let vps_id = &VpsId::from(vps_id);
    let offer = &OfferId::from(offer);
    let spec =
        match (meta_u64(session, meta::CORES), meta_u64(session, meta::MEMORY_MB), meta_u64(session, meta::DISK_GB)) {
            (Some(c), Some(m), Some(d)) => {
                Spec { cores: u32::try_from(c).unwrap_or(u32::MAX), memory_mb: m, disk_gb: d }
            }
            _ => {
                return Ok(EventOutcome::new("failed", "the session metadata lacks the target spec"));
            }
        };
    let subject = format!("vps:{vps_id}");
    let actor = requested_by(sid.as_str());
    if let Some(problem) = mismatch(state, event, session, offer).await? {
        return park_mismatch(state, event, session, sid, vps_id, &subject, &problem, &UPGRADE).await;
    }
    // The payment, once per session id.
    store
        .record_paid_payment(&PaidCheckout {
            session_id: sid,
            link: link_id,
            vps: vps_id,
            offer,
            spec,
            amount: session["amount_total"].as_u64(),
            currency: session["currency"].as_str(),
            payment_intent: session["payment_intent"].as_str(),
            customer_email: session["customer_details"]["email"].as_str(),
            event: event["id"].as_str(),
        })
        .await?;
    if !links::claim_link(store, link_id, sid).await? {
        store.set_payment_status(sid, PaymentStatus::Duplicate).await?;
        let body = format!(
            "Checkout Session {sid} paid for upgrade link {link_id} of VPS {vps_id}, which an earlier payment \
             already used. Nothing was applied for it: refund it in Stripe."
        );
        let refund = Refund {
            actor: &actor,
            subject,
            what: "a second payment for one upgrade link",
            data: json!({ "session": sid, "link": link_id }),
            title: format!("Refund needed: a second upgrade payment for VPS {vps_id}"),
        };
        return Ok(refund_needed(state, refund, body).await);
    }
    let mut params = json!({ "spec": spec, "payment": sid, "offer": offer });
    if let Some(t) = meta_str(session, meta::TEMPLATE) {
        params["template"] = json!(t);
        if let Some(row) = store.template_by_name(&TemplateName::from(t)).await? {
            params["template_row"] = serde_json::to_value(row)?;
        }
    }
    let key = operation_key(sid.as_str());
    let op = match store.enqueue_operation(vps_id, OpKind::Resize, params, &actor, Some(&key)).await {
        Ok(op) => op,
        Err(e) if crate::error::code_of(&e) == Some(crate::error::Code::NotFound) => {
            let msg = format!("payment {sid} is for VPS {vps_id}, which does not exist; refund it in Stripe");
            store.set_payment_status(sid, PaymentStatus::Orphaned).await?;
            state.notifier.do_send(Notify {
                kind: NotifyKind::PaymentIssue,
                severity: Severity::Critical,
                title: format!("An upgrade was paid for a missing VPS {vps_id}"),
                body: msg.clone(),
                subject: Some(subject),
                portal_url: None,
            });
            return Ok(EventOutcome::new("failed", msg));
        }
        Err(e) => return Err(e),
    };
    let first = store.queue_paid_payment(sid, &op).await?;
    // Wake the VPS's actor every time: after a crash this is what runs the queued resize.
    (state.wake)(vps_id);
    if !first {
        return Ok(EventOutcome::new("processed", format!("payment {sid} was recorded before; resize {op} queued")));
    }
    let _ = store
        .record_activity(
            Level::Info,
            &actor,
            Some(&subject),
            "upgrade paid; resize queued",
            json!({ "session": sid, "offer": offer, "spec": spec, "operation": op, "amount": session["amount_total"], "currency": session["currency"] }),
        )
        .await;
    Ok(EventOutcome::new("processed", format!("payment {sid} recorded; resize {op} queued")))
}

/// Whether Stripe's secret key is a live-mode key: `Some(true)` for `sk_live_…`/`rk_live_…`,
/// `Some(false)` for test keys, `None` when the prefix says neither.
fn key_livemode(key: &str) -> Option<bool> {
    match key.get(..8) {
        Some("sk_live_" | "rk_live_") => Some(true),
        Some("sk_test_" | "rk_test_") => Some(false),
        _ => None,
    }
}

/// Why a paid session does not pay for the offer it names, if it does not: a test-mode event
/// reaching a live appliance (or the other way round), or an amount or currency other than
/// the offer's. Such a payment applies nothing.
async fn mismatch(
    state: &Ctx<'_>,
    event: &Value,
    session: &Value,
    offer_id: &OfferId,
) -> anyhow::Result<Option<String>> {
    if let Some(problem) = mode_mismatch(state, event, session) {
        return Ok(Some(problem));
    }
    let Some(offer) = super::offers::get_offer(state.store, offer_id).await? else {
        return Ok(Some(format!("offer {offer_id} no longer exists")));
    };
    let amount = session["amount_total"].as_u64();
    let currency = session["currency"].as_str().unwrap_or_default();
    if amount != Some(offer.price) || !currency.eq_ignore_ascii_case(&offer.currency) {
        return Ok(Some(format!(
            "{} was paid but offer {offer_id} costs {}",
            amount.map_or_else(|| "no amount".to_string(), |a| super::format_price(a, currency)),
            super::format_price(offer.price, &offer.currency)
        )));
    }
    Ok(None)
}

/// A test-mode event reaching a live appliance, or the other way round.
pub(super) fn mode_mismatch(state: &Ctx<'_>, event: &Value, session: &Value) -> Option<String> {
    let livemode = event["livemode"].as_bool().or_else(|| session["livemode"].as_bool());
    if let Some(expected) = key_livemode(state.config.stripe.secret_key.expose())
        && livemode != Some(expected)
    {
        let mode = |live: Option<bool>| match live {
            Some(true) => "live",
            Some(false) => "test",
            None => "unknown",
        };
        return Some(format!(
            "the event is in {} mode but stripe.secret_key is a {} key",
            mode(livemode),
            mode(Some(expected))
        ));
    }
    None
}

/// How a payment that applies nothing is described: what it paid for, what it should have
/// matched, what an admin may do instead of refunding.
pub(super) struct Words {
    pub what: &'static str,
    pub priced: &'static str,
    pub by_hand: &'static str,
}

const UPGRADE: Words = Words { what: "upgrade", priced: "its offer", by_hand: "apply the upgrade by hand (resize)" };

/// Records a payment that does not match what it pays for (`status = 'mismatch'`) and asks
/// an admin to decide: apply it by hand or refund. An upgrade link stays unused.
#[allow(clippy::too_many_arguments)]
pub(super) async fn park_mismatch(
    state: &Ctx<'_>,
    event: &Value,
    session: &Value,
    sid: &PaymentId,
    vps_id: &VpsId,
    subject: &str,
    problem: &str,
    words: &Words,
) -> anyhow::Result<EventOutcome> {
    let store = state.store;
    let offer = meta_str(session, meta::OFFER).map(OfferId::from);
    let created = store
        .record_mismatched_payment(&MismatchedCheckout {
            session_id: sid,
            vps: vps_id,
            offer: offer.as_ref(),
            amount: session["amount_total"].as_u64(),
            currency: session["currency"].as_str(),
            payment_intent: session["payment_intent"].as_str(),
            event: event["id"].as_str(),
            problem,
        })
        .await?;
    let body = format!(
        "Checkout Session {sid} for VPS {vps_id} was not applied: {problem}. Refund it in Stripe, or {} if the \
         payment is right.",
        words.by_hand
    );
    if created {
        let _ = store
            .record_activity(
                Level::Warning,
                &requested_by(sid.as_str()),
                Some(subject),
                &format!("{} payment does not match {}", article(words.what), words.priced),
                json!({ "session": sid, "problem": problem }),
            )
            .await;
        state.notifier.do_send(Notify {
            kind: NotifyKind::PaymentIssue,
            severity: Severity::Warning,
            title: format!("{} payment for VPS {vps_id} does not match {}", capital(article(words.what)), words.priced),
            body: body.clone(),
            subject: Some(subject.to_string()),
            portal_url: None,
        });
    }
    Ok(EventOutcome::new("failed", body))
}

/// A refund or dispute: tell an admin, mark the payment; no automatic downgrade.
async fn payment_issue(state: &Ctx<'_>, kind: &str, object: &Value) -> anyhow::Result<EventOutcome> {
    let store = state.store;
    let intent = object["payment_intent"].as_str().unwrap_or_default();
    let paid = if intent.is_empty() { None } else { store.payment_of_intent(intent).await? };
    let vps = paid.as_ref().map(|r| r.vps.clone()).or_else(|| meta_str(object, meta::VPS).map(VpsId::from));
    let Some(vps) = vps else {
        return Ok(EventOutcome::new("ignored", format!("{kind} for a payment that is not an upgrade")));
    };
    let (what, issue) = if kind == "charge.refunded" {
        ("refunded", PaymentIssue::Refunded)
    } else {
        ("disputed", PaymentIssue::Disputed)
    };
    if let Some(r) = &paid {
        store.mark_payment_issue(&r.session_id, issue).await?;
    }
    let amount = object["amount_refunded"].as_u64().or_else(|| object["amount"].as_u64()).unwrap_or_default();
    let currency = object["currency"].as_str().unwrap_or_default();
    let restore = paid.as_ref().and_then(|p| p.purpose.as_deref()) == Some(super::restore::PURPOSE);
    let (paid_for, undo) = if restore {
        ("restore", "The VPS stays restored; suspend it by hand if it should be undone.")
    } else {
        ("upgrade", "The upgrade stays applied; resize the VPS by hand if it should be undone.")
    };
    let body = format!(
        "The {paid_for} payment {} of VPS {vps} was {what} ({}). {undo}",
        if intent.is_empty() { object["id"].as_str().unwrap_or_default() } else { intent },
        super::format_price(amount, currency),
    );
    let subject = format!("vps:{vps}");
    let _ = store
        .record_activity(
            Level::Warning,
            "stripe",
            Some(&subject),
            &format!("{paid_for} payment {what}"),
            json!({ "event": kind, "object": object["id"] }),
        )
        .await;
    state.notifier.do_send(Notify {
        kind: NotifyKind::PaymentIssue,
        severity: Severity::Warning,
        title: format!("{} payment {what} for VPS {vps}", capital(paid_for.to_string())),
        body: body.clone(),
        subject: Some(subject),
        portal_url: None,
    });
    Ok(EventOutcome::new("processed", body))
}

/// A payment that applies nothing and must be refunded: what the activity log and the admins
/// are told.
pub(super) struct Refund<'a> {
    pub actor: &'a str,
    pub subject: String,
    /// The activity entry's message.
    pub what: &'a str,
    pub data: Value,
    pub title: String,
}

/// Records `refund` (a warning in the activity log, a payment-issue notice with `body`) and
/// answers the event's outcome.
pub(super) async fn refund_needed(state: &Ctx<'_>, refund: Refund<'_>, body: String) -> EventOutcome {
    let _ = state
        .store
        .record_activity(Level::Warning, refund.actor, Some(&refund.subject), refund.what, refund.data)
        .await;
    state.notifier.do_send(Notify {
        kind: NotifyKind::PaymentIssue,
        severity: Severity::Warning,
        title: refund.title,
        body: body.clone(),
        subject: Some(refund.subject),
        portal_url: None,
    });
    EventOutcome::new("processed", body)
}

/// `an upgrade`, `a restore`.
fn article(what: &str) -> String {
    if what.starts_with(['a', 'e', 'i', 'o', 'u']) { format!("an {what}") } else { format!("a {what}") }
}

fn capital(s: String) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}
