//! The `payment` table: one row per Stripe Checkout Session that paid for an upgrade (or a
//! restore, see [`restore`]), its record id the session id, so a session is recorded once
//! however often Stripe delivers it. What a payment applies, and whom it tells, is decided
//! in `upgrade::fulfil`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::operation::OperationId;
use super::upgrade_link::LinkId;
use super::upgrade_offer::OfferId;
use super::vps::{Spec, VpsId};
use crate::db::Store;

mod restore;

pub use restore::{PaidRestore, RestoreQueued, Suspension};

id_type!(
    /// The key of a `payment` row: the Stripe Checkout Session id.
    PaymentId
);

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    /// Recorded; its resize is not queued yet.
    Paid,
    /// Its resize is queued (`operation`).
    Queued,
    /// A second payment for a link an earlier one used: nothing applied, to refund.
    Duplicate,
    /// Paid for a VPS that does not exist: nothing applied, to refund.
    Orphaned,
    /// The amount, currency or mode does not match its offer (`problem`): nothing applied.
    Mismatch,
}

impl PaymentStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::Queued => "queued",
            Self::Duplicate => "duplicate",
            Self::Orphaned => "orphaned",
            Self::Mismatch => "mismatch",
        }
    }
}

/// A paid Checkout Session to record (`status = 'paid'`).
#[derive(Debug, Clone)]
pub struct PaidCheckout<'a> {
    /// The Checkout Session id: the record id.
    pub session_id: &'a PaymentId,
    /// The `upgrade_link` it was paid through.
    pub link: &'a LinkId,
    pub vps: &'a VpsId,
    pub offer: &'a OfferId,
    pub spec: Spec,
    /// Minor units.
    pub amount: Option<u64>,
    pub currency: Option<&'a str>,
    pub payment_intent: Option<&'a str>,
    pub customer_email: Option<&'a str>,
    /// The Stripe event id that reported it.
    pub event: Option<&'a str>,
}

/// A paid Checkout Session that does not match its offer, to record (`status = 'mismatch'`).
#[derive(Debug, Clone)]
pub struct MismatchedCheckout<'a> {
    /// The Checkout Session id: the record id.
    pub session_id: &'a PaymentId,
    pub vps: &'a VpsId,
    pub offer: Option<&'a OfferId>,
    /// Minor units.
    pub amount: Option<u64>,
    pub currency: Option<&'a str>,
    pub payment_intent: Option<&'a str>,
    /// The Stripe event id that reported it.
    pub event: Option<&'a str>,
    /// Why it applies nothing.
    pub problem: &'a str,
}

/// What the customer's progress page reads of a payment.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentProgress {
    pub status: PaymentStatus,
    /// The resize it queued.
    #[serde(default)]
    pub operation: Option<OperationId>,
    #[serde(default)]
    pub spec: Option<Spec>,
}

/// The payment a PaymentIntent belongs to.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentOfIntent {
    pub session_id: PaymentId,
    pub vps: VpsId,
    /// `restore` for a paid restore; `None` for an upgrade.
    #[serde(default)]
    pub purpose: Option<String>,
}

/// What Stripe reports later about a charge; stamped on the payment, nothing is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentIssue {
    /// `charge.refunded`: stamps `refunded_at`.
    Refunded,
    /// `charge.dispute.created`: stamps `disputed_at`.
    Disputed,
}

impl PaymentIssue {
    fn field(self) -> &'static str {
        match self {
            Self::Refunded => "refunded_at",
            Self::Disputed => "disputed_at",
        }
    }
}

impl Store {
    /// Records a paid session (`status = 'paid'`) unless its row exists already; a second
    /// delivery changes nothing.
    pub async fn record_paid_payment(&self, p: &PaidCheckout<'_>) -> anyhow::Result<()> {
        self.execute(
            "IF !(SELECT VALUE id FROM type::record('payment', $sid))[0] {
                CREATE type::record('payment', $sid) CONTENT {
                    session_id: $sid, link: $link, vps: $vps, offer: $offer, spec: $spec,
                    amount: $amount, currency: $currency, payment_intent: $intent, customer_email: $email,
                    event: $event, status: 'paid', created_at: time::now()
                };
             };",
            json!({
                "sid": p.session_id, "link": p.link, "vps": p.vps, "offer": p.offer, "spec": p.spec,
                "amount": p.amount, "currency": p.currency, "intent": p.payment_intent, "email": p.customer_email,
                "event": p.event,
            }),
        )
        .await
    }

    /// Records a session that does not match its offer (`status = 'mismatch'`) unless its row
    /// exists already. Answers whether this call created it.
    pub async fn record_mismatched_payment(&self, p: &MismatchedCheckout<'_>) -> anyhow::Result<bool> {
        let created: Vec<Value> = self
            .query_one(
                "IF !(SELECT VALUE id FROM type::record('payment', $sid))[0] {
                    CREATE type::record('payment', $sid) CONTENT {
                        session_id: $sid, vps: $vps, offer: $offer, amount: $amount, currency: $currency,
                        payment_intent: $intent, event: $event, status: 'mismatch', problem: $problem,
                        created_at: time::now()
                    } RETURN VALUE id;
                 } ELSE { RETURN []; };",
                json!({
                    "sid": p.session_id, "vps": p.vps, "offer": p.offer, "amount": p.amount,
                    "currency": p.currency, "intent": p.payment_intent, "event": p.event, "problem": p.problem,
                }),
                0,
            )
            .await?;
        Ok(!created.is_empty())
    }

    /// Sets the status of the payment of session `sid`.
    pub async fn set_payment_status(&self, sid: &PaymentId, status: PaymentStatus) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('payment', $sid) SET status = $status, updated_at = time::now()",
            json!({ "sid": sid, "status": status }),
        )
        .await
    }

    /// Moves a `paid` payment to `queued` with the resize `op` it queued. Answers whether this
    /// call moved it (false when it was queued before, or is not `paid`).
    pub async fn queue_paid_payment(&self, sid: &PaymentId, op: &OperationId) -> anyhow::Result<bool> {
        let first: Vec<Value> = self
            .query_one(
                "UPDATE type::record('payment', $sid) SET status = 'queued', operation = $op, updated_at = time::now()
                    WHERE status = 'paid' RETURN VALUE id",
                json!({ "sid": sid, "op": op }),
                0,
            )
            .await?;
        Ok(!first.is_empty())
    }

    /// The payment a PaymentIntent paid, if it is an upgrade or restore payment.
    pub async fn payment_of_intent(&self, intent: &str) -> anyhow::Result<Option<PaymentOfIntent>> {
        self.query_first::<PaymentOfIntent>(
            "SELECT session_id, vps, purpose FROM payment WHERE payment_intent = $intent LIMIT 1",
            json!({ "intent": intent }),
            0,
        )
        .await
    }

    /// Stamps a refund or dispute (`refunded_at` / `disputed_at`) on the payment of session `sid`.
    pub async fn mark_payment_issue(&self, sid: &PaymentId, issue: PaymentIssue) -> anyhow::Result<()> {
        self.execute(
            &format!(
                "UPDATE type::record('payment', $sid) SET {} = time::now(), updated_at = time::now()",
                issue.field()
            ),
            json!({ "sid": sid }),
        )
        .await
    }

    /// The progress of the payment of session `sid`, if it was paid through `link_id`.
    pub async fn payment_progress(&self, sid: &PaymentId, link_id: &LinkId) -> anyhow::Result<Option<PaymentProgress>> {
        self.query_first::<PaymentProgress>(
            "SELECT status, operation, spec FROM type::record('payment', $sid) WHERE link = $link",
            json!({ "sid": sid, "link": link_id }),
            0,
        )
        .await
    }
}

// Reads of the `operation` table that the progress of a payment needs; kept here, with the
// payments they serve.
impl Store {
    /// The state of the resize `op` a payment queued (`succeeded`, `dead`…); `None` when there
    /// is no such operation yet.
    pub async fn upgrade_operation_state(&self, op: &OperationId) -> anyhow::Result<Option<String>> {
        let states: Vec<Option<String>> =
            self.query_one("SELECT VALUE state FROM type::record('operation', $op)", json!({ "op": op }), 0).await?;
        Ok(states.into_iter().next().flatten())
    }
}
