//! Payments that restore a suspended VPS (`purpose = 'restore'`): one per suspension, named
//! by the suspend operation it ends (`restore_of`). What a paid restore does is decided in
//! `upgrade::restore`; here are the rows it reads and writes.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{PaymentId, PaymentStatus};
use crate::db::Store;
use crate::db::models::operation::OperationId;
use crate::db::models::vps::VpsId;

/// A paid restore to record (`status = 'paid'`).
#[derive(Debug, Clone)]
pub struct PaidRestore<'a> {
    /// The Checkout Session id: the record id.
    pub session_id: &'a PaymentId,
    pub vps: &'a VpsId,
    /// The suspend operation the payment ends.
    pub suspension: &'a OperationId,
    /// The portal link it was paid through.
    pub portal_link: Option<&'a str>,
    /// Minor units.
    pub amount: Option<u64>,
    pub currency: Option<&'a str>,
    pub payment_intent: Option<&'a str>,
    pub customer_email: Option<&'a str>,
    /// The Stripe event id that reported it.
    pub event: Option<&'a str>,
}

/// The suspension a VPS is in: the last suspend operation that succeeded.
#[derive(Debug, Clone, Deserialize)]
pub struct Suspension {
    pub id: OperationId,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
}

/// What queuing a paid restore's resume did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreQueued {
    /// Queued now: deletions cancelled, resume queued, payment `queued`.
    First,
    /// Queued by an earlier delivery of this payment.
    Before,
}

impl Store {
    /// The suspension `vps` is in, if it was ever suspended.
    pub async fn latest_suspension(&self, vps: &VpsId) -> anyhow::Result<Option<Suspension>> {
        self.query_first::<Suspension>(
            "SELECT record::id(id) AS id, finished_at FROM operation
             WHERE vps = $vps AND kind = 'suspend' AND state = 'succeeded' ORDER BY finished_at DESC LIMIT 1",
            json!({ "vps": vps }),
            0,
        )
        .await
    }

    /// The session of a restore payment for `suspension` other than `except` that is
    /// recorded or queued (one suspension is paid for once).
    pub async fn restore_paid_for(
        &self,
        suspension: &OperationId,
        except: Option<&PaymentId>,
    ) -> anyhow::Result<Option<PaymentId>> {
        let ids: Vec<PaymentId> = self
            .query_one(
                "SELECT VALUE session_id FROM payment
                 WHERE restore_of = $susp AND status IN ['paid', 'queued'] AND session_id != $except LIMIT 1",
                json!({ "susp": suspension, "except": except }),
                0,
            )
            .await?;
        Ok(ids.into_iter().next())
    }

    /// Records a paid restore (`status = 'paid'`) unless its row exists already; a second
    /// delivery changes nothing. Answers the row's status.
    pub async fn record_restore_payment(&self, p: &PaidRestore<'_>) -> anyhow::Result<PaymentStatus> {
        let status: Vec<PaymentStatus> = self
            .query_one(
                "IF !(SELECT VALUE id FROM type::record('payment', $sid))[0] {
                    CREATE type::record('payment', $sid) CONTENT {
                        session_id: $sid, purpose: 'restore', vps: $vps, restore_of: $susp, portal_link: $link,
                        amount: $amount, currency: $currency, payment_intent: $intent, customer_email: $email,
                        event: $event, status: 'paid', created_at: time::now()
                    };
                 };
                 SELECT VALUE status FROM type::record('payment', $sid);",
                json!({
                    "sid": p.session_id, "vps": p.vps, "susp": p.suspension, "link": p.portal_link,
                    "amount": p.amount, "currency": p.currency, "intent": p.payment_intent,
                    "email": p.customer_email, "event": p.event,
                }),
                1,
            )
            .await?;
        status.into_iter().next().ok_or_else(|| anyhow::anyhow!("payment {} was not recorded", p.session_id))
    }

    /// Brings the VPS of a `paid` restore back, in one transaction: its queued deletions are
    /// cancelled, its subscription is active again, the resume `op` is queued (requested by
    /// `actor`), the payment moves to `queued` and `activity` is written. A payment queued
    /// before changes nothing ([`RestoreQueued::Before`]).
    pub async fn queue_paid_restore(
        &self,
        sid: &PaymentId,
        vps: &VpsId,
        op: &OperationId,
        actor: &str,
        activity: &Value,
    ) -> anyhow::Result<RestoreQueued> {
        let status: Vec<PaymentStatus> =
            self.query_one("SELECT VALUE status FROM type::record('payment', $sid)", json!({ "sid": sid }), 0).await?;
        if status.first() != Some(&PaymentStatus::Paid) {
            return Ok(RestoreQueued::Before);
        }
        self.execute(
            "BEGIN TRANSACTION;
             UPDATE operation SET state = 'cancelled', updated_at = time::now(),
                 last_error = 'made unnecessary: the customer paid to restore the VPS'
             WHERE vps = $vps AND kind = 'delete' AND state IN ['queued', 'held'];
             LET $sub = (SELECT VALUE subscription FROM type::record('vps', $vps))[0];
             IF $sub { UPDATE type::record('subscription', $sub) SET status = 'active', updated_at = time::now(); };
             IF (SELECT VALUE id FROM type::record('operation', $op))[0] == NONE {
                 CREATE type::record('operation', $op) CONTENT {
                     vps: $vps, kind: 'resume', params: { payment: $sid }, state: 'queued', attempts: 0,
                     idempotency_key: $op, requested_by: $actor, next_attempt_at: time::now(),
                     created_at: time::now(), updated_at: time::now()
                 };
             };
             UPDATE type::record('payment', $sid) SET status = 'queued', operation = $op, updated_at = time::now();
             CREATE activity CONTENT { at: time::now(), level: 'info', actor: $actor, subject: 'vps:' + $vps,
                 message: 'restore paid; resume queued', data: $activity };
             COMMIT TRANSACTION;",
            json!({ "sid": sid, "vps": vps, "op": op, "actor": actor, "activity": activity }),
        )
        .await?;
        Ok(RestoreQueued::First)
    }
}
