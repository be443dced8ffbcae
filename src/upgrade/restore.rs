//! Pay to restore: a VPS suspended because its subscription lapsed (the subscription is
//! `cancelled` or `suspended` in billing) offers its customer, on the portal page, to bring
//! it back for `stripe.restore_price` (in `stripe.currency`) through a Stripe Checkout.
//!
//! One suspension is paid for once. The suspension is named by the suspend operation that
//! made it (`vmauto_restore` in the session's metadata, `restore_of` on the payment); a
//! double click within ten minutes answers the same session (idempotency key), the page
//! stops offering the restore once a payment for the suspension is recorded, and a second
//! paid session for the same suspension applies nothing and asks an admin to refund it.
//!
//! A paid restore (see [`fulfil`]) cancels the VPS's scheduled deletion, marks its
//! subscription active again, queues a `resume` operation `requested_by = stripe:<session>`
//! and tells the admins (`restore_paid`: the UI, email, the outgoing webhook, so a billing
//! workflow can reactivate the subscription too).

use std::collections::HashMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::checkout::{CheckoutError, PaymentPage, Session, open_payment_page};
use super::fulfil::{
    Ctx, Refund, Words, meta_str, meta_u64, mode_mismatch, park_mismatch, refund_needed, requested_by,
};
use crate::config::Config;
use crate::db::Store;
use crate::db::models::operation::OperationId;
use crate::db::models::payment::{PaidRestore, PaymentId, PaymentStatus, RestoreQueued};
use crate::lifecycle::{EventOutcome, VpsId, VpsState};
use crate::notice::{Notify, NotifyKind, Severity};

/// Metadata keys of a restore's Checkout Session (besides `vmauto_vps`).
pub mod meta {
    /// `restore`: what the session pays for.
    pub const PURPOSE: &str = "vmauto_purpose";
    /// The suspend operation the payment ends.
    pub const SUSPENSION: &str = "vmauto_restore";
    /// The price asked, minor units, and its currency.
    pub const FEE: &str = "vmauto_fee";
    pub const CURRENCY: &str = "vmauto_currency";
    /// The portal link it was started from.
    pub const PORTAL_LINK: &str = "vmauto_portal_link";
}

/// The value of [`meta::PURPOSE`] on a restore session.
pub const PURPOSE: &str = "restore";

/// Subscription statuses under which a suspended VPS may be restored by paying.
const LAPSED: &[&str] = &["cancelled", "suspended"];

/// What the portal offers a suspended VPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOffer {
    /// Minor units.
    pub price: u64,
    pub currency: String,
    /// The suspend operation a payment ends.
    pub suspension: OperationId,
    /// A payment for this suspension is recorded: the VPS is being restored.
    pub paid: bool,
}

impl RestoreOffer {
    /// `15.00 USD`.
    pub fn price_text(&self) -> String {
        super::format_price(self.price, &self.currency)
    }
}

/// Whether paid restores are configured (Stripe on, a key, a price).
pub fn enabled(config: &Config) -> bool {
    let s = &config.stripe;
    s.enabled && !s.secret_key.is_empty() && s.restore_price > 0
}

/// The restore `vps` may be paid for now: only when paid restores are on, the VPS is
/// suspended and its subscription lapsed in billing (a VPS an admin suspended while its
/// subscription runs is not the customer's to restore).
pub async fn offer_for(store: &Store, config: &Config, vps: &VpsId) -> anyhow::Result<Option<RestoreOffer>> {
    if !enabled(config) {
        return Ok(None);
    }
    let Some(row) = store.vps(vps).await? else { return Ok(None) };
    if row.state != VpsState::Suspended {
        return Ok(None);
    }
    let Some(sub) = &row.subscription else { return Ok(None) };
    let lapsed = store.subscription_status(sub).await?.is_some_and(|s| LAPSED.contains(&s.as_str()));
    if !lapsed {
        return Ok(None);
    }
    let Some(suspension) = store.latest_suspension(vps).await? else { return Ok(None) };
    let paid = store.restore_paid_for(&suspension.id, None).await?.is_some();
    Ok(Some(RestoreOffer {
        price: config.stripe.restore_price,
        currency: config.stripe.currency.to_ascii_lowercase(),
        suspension: suspension.id,
        paid,
    }))
}

/// What a restore's payment page is for.
#[derive(Debug)]
pub struct RestoreCheckout<'a> {
    pub vps: &'a VpsId,
    pub vps_name: &'a str,
    /// The portal link id it is started from.
    pub portal_link: &'a str,
    pub offer: &'a RestoreOffer,
    pub success_url: String,
    pub cancel_url: String,
}

/// The metadata a restore session and its PaymentIntent carry.
pub fn metadata(req: &RestoreCheckout<'_>) -> HashMap<String, String> {
    HashMap::from([
        (meta::PURPOSE.to_string(), PURPOSE.to_string()),
        (super::meta::VPS.to_string(), req.vps.to_string()),
        (meta::SUSPENSION.to_string(), req.offer.suspension.to_string()),
        (meta::FEE.to_string(), req.offer.price.to_string()),
        (meta::CURRENCY.to_string(), req.offer.currency.clone()),
        (meta::PORTAL_LINK.to_string(), req.portal_link.to_string()),
    ])
}

/// Opens the Checkout Session of a restore. One idempotency key per suspension, price and
/// ten-minute window: a double click answers the same session.
pub async fn open_checkout(config: &Config, req: &RestoreCheckout<'_>) -> Result<Session, CheckoutError> {
    let o = req.offer;
    let window = chrono::Utc::now().timestamp() / 600;
    let h = Sha256::digest(format!("{}\0{}\0{}\0{}\0{window}", req.vps, o.suspension, o.price, o.currency).as_bytes());
    let page = PaymentPage {
        product: format!("Restore {}", req.vps_name),
        description: Some("Brings your suspended server back online, as it was.".into()),
        amount: o.price,
        currency: o.currency.clone(),
        metadata: metadata(req),
        reference: req.portal_link.to_string(),
        intent_description: format!("Restore of {}", req.vps_name),
        idempotency_key: format!("vmauto-restore-{}", hex::encode(&h[..16])),
        success_url: req.success_url.clone(),
        cancel_url: req.cancel_url.clone(),
    };
    open_payment_page(&config.stripe, &page).await
}

/// The id of the resume a restore session pays for.
pub fn operation_key(session: &str) -> OperationId {
    OperationId::new(format!("rst{}", hex::encode(&Sha256::digest(session.as_bytes())[..16])))
}

const WORDS: Words =
    Words { what: "restore", priced: "the restore price it was offered at", by_hand: "resume the VPS by hand" };

/// Applies a paid restore session (idempotent: a redelivery changes nothing twice).
pub async fn fulfil(state: &Ctx<'_>, event: &Value, session: &Value) -> anyhow::Result<EventOutcome> {
    let store = state.store;
    let Some(sid) = session["id"].as_str().filter(|s| !s.is_empty()) else {
        return Ok(EventOutcome::new("failed", "the session has no id"));
    };
    let sid = &PaymentId::from(sid);
    let (Some(vps), Some(suspension)) = (meta_str(session, super::meta::VPS), meta_str(session, meta::SUSPENSION))
    else {
        return Ok(EventOutcome::new("failed", "the restore session lacks its VPS or suspension"));
    };
    let vps = &VpsId::from(vps);
    let suspension = &OperationId::from(suspension);
    let subject = format!("vps:{vps}");
    let fee = meta_u64(session, meta::FEE);
    let currency = meta_str(session, meta::CURRENCY).unwrap_or_default();
    let problem = match mode_mismatch(state, event, session) {
        Some(p) => Some(p),
        None => {
            let paid = session["amount_total"].as_u64();
            let paid_currency = session["currency"].as_str().unwrap_or_default();
            (fee.is_none() || paid != fee || !paid_currency.eq_ignore_ascii_case(currency)).then(|| {
                format!(
                    "{} was paid but the restore was offered at {}",
                    paid.map_or_else(|| "no amount".to_string(), |a| super::format_price(a, paid_currency)),
                    fee.map_or_else(|| "no price".to_string(), |f| super::format_price(f, currency))
                )
            })
        }
    };
    if let Some(problem) = problem {
        return park_mismatch(state, event, session, sid, vps, &subject, &problem, &WORDS).await;
    }
    let status = store
        .record_restore_payment(&PaidRestore {
            session_id: sid,
            vps,
            suspension,
            portal_link: meta_str(session, meta::PORTAL_LINK),
            amount: session["amount_total"].as_u64(),
            currency: session["currency"].as_str(),
            payment_intent: session["payment_intent"].as_str(),
            customer_email: session["customer_details"]["email"].as_str(),
            event: event["id"].as_str(),
        })
        .await?;
    match status {
        PaymentStatus::Paid => {}
        PaymentStatus::Queued => {
            // Wake the VPS every time: after a crash this is what runs the queued resume.
            (state.wake)(vps);
            return Ok(EventOutcome::new("processed", format!("restore payment {sid} was recorded before")));
        }
        other => {
            return Ok(EventOutcome::new(
                "processed",
                format!("restore payment {sid} was recorded before as {}", other.as_str()),
            ));
        }
    }
    // Nothing to restore, or already paid for: nothing is applied, an admin refunds.
    let unneeded = match store.vps(vps).await? {
        None => Some((PaymentStatus::Orphaned, format!("VPS {vps} does not exist"))),
        Some(v) if !matches!(v.state, VpsState::Suspended | VpsState::Suspending) => Some((
            PaymentStatus::Duplicate,
            format!("VPS {vps} is {} now, so there is nothing to restore", v.state.as_str()),
        )),
        Some(_) => match (store.latest_suspension(vps).await?, store.restore_paid_for(suspension, Some(sid)).await?) {
            (_, Some(other)) => Some((
                PaymentStatus::Duplicate,
                format!("an earlier payment ({other}) already restores this suspension of VPS {vps}"),
            )),
            (Some(current), None) if &current.id != suspension => Some((
                PaymentStatus::Duplicate,
                format!("the suspension it paid for ended; VPS {vps} was suspended again since"),
            )),
            _ => None,
        },
    };
    if let Some((status, why)) = unneeded {
        store.set_payment_status(sid, status).await?;
        let body = format!("Restore payment {sid} was not applied: {why}. Refund it in Stripe.");
        let refund = Refund {
            actor: &requested_by(sid.as_str()),
            subject,
            what: "a restore payment that restores nothing",
            data: json!({ "session": sid, "why": why }),
            title: format!("Refund needed: a restore payment for VPS {vps}"),
        };
        return Ok(refund_needed(state, refund, body).await);
    }
    let op = operation_key(sid.as_str());
    let amount = super::format_price(session["amount_total"].as_u64().unwrap_or_default(), currency);
    let data = json!({ "session": sid, "operation": op, "suspension": suspension, "amount": amount });
    let queued = store.queue_paid_restore(sid, vps, &op, &requested_by(sid.as_str()), &data).await?;
    (state.wake)(vps);
    if queued == RestoreQueued::Before {
        return Ok(EventOutcome::new("processed", format!("restore payment {sid} was recorded before")));
    }
    let body = format!(
        "The customer of VPS {vps} paid {amount} to restore it (Checkout Session {sid}). Its scheduled deletion \
         is cancelled, its subscription is active again and the VM is being started ({op})."
    );
    state.notifier.do_send(Notify {
        kind: NotifyKind::RestorePaid,
        severity: Severity::Info,
        title: format!("VPS {vps} restored by its customer's payment"),
        body: body.clone(),
        subject: Some(subject),
        portal_url: None,
    });
    Ok(EventOutcome::new("processed", format!("restore payment {sid} recorded; resume {op} queued")))
}
