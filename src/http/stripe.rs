//! `POST /stripe/webhook`: Stripe events for upgrade payments.
//!
//! Order of work: size cap (413) → `Stripe-Signature` against `stripe.webhook_secrets`
//! (rotation, `stripe.tolerance_secs`; 401, recorded) → JSON with an event id (400,
//! recorded) → the raw event is written to the inbox, its record id derived from the event
//! id → the event is applied (`upgrade::fulfil`) and its outcome written on the row → 200.
//! A redelivered event whose row is finished answers 200 `duplicate` without side effects;
//! one whose earlier delivery did not finish is applied again (every step is idempotent).
//! A store failure answers 503 so Stripe delivers again.

use actix_web::{HttpRequest, HttpResponse, post, web};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::AppState;
use super::webhooks::{headers_of, read_body, record_rejection};
use crate::actors::webhook::{DeliverPayment, PaymentDelivered, key_of};
use crate::billing::signature::{WebhookRequest, verify};
use crate::config::{SignatureScheme, SourceConfig};
use crate::error::{AppError, Code};
use crate::upgrade::INBOX_SOURCE;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(post_stripe_webhook);
}

/// The signature settings of the endpoint, as a source the shared verifier understands.
fn endpoint(state: &AppState) -> SourceConfig {
    SourceConfig {
        plugin: String::new(),
        signature: SignatureScheme::Stripe,
        secrets: state.config.stripe.webhook_secrets.clone(),
        ..SourceConfig::default()
    }
}

#[post("/stripe/webhook")]
async fn post_stripe_webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, AppError> {
    if !state.config.stripe.enabled {
        // Nothing is recorded for an endpoint that is off: anonymous senders cannot use it to
        // fill the inbox.
        return Err(AppError::not_found(
            "Stripe upgrades are not enabled on this appliance. - Hint: set stripe.enabled = true to receive \
             Stripe events here.",
        ));
    }
    let metrics = &state.metrics;
    let count = |result: &str| metrics.webhooks.with_label_values(&[INBOX_SOURCE, result]).inc();
    let source = endpoint(&state);
    let body = match read_body(&state, body).await {
        Ok(b) => b,
        Err(e) => {
            count("too_large");
            record_rejection(&state, INBOX_SOURCE, &req, &source, b"", 413, &e.message).await;
            return Err(e);
        }
    };
    let headers = headers_of(req.headers());
    let wr = WebhookRequest { path_token: None, headers: &headers, body: &body };
    let verified = match verify(&source, &wr, chrono::Utc::now(), state.config.stripe.tolerance_secs) {
        Ok(v) => v,
        Err(e) => {
            count("rejected_signature");
            let message = format!("The Stripe event could not be authenticated: {e}");
            record_rejection(&state, INBOX_SOURCE, &req, &source, &body, 401, &message).await;
            return Err(super::webhooks::unauthenticated());
        }
    };
    let event: Value = match serde_json::from_slice::<Value>(&body) {
        Ok(v) if v["id"].as_str().is_some_and(|s| !s.is_empty()) && v["type"].is_string() => v,
        _ => {
            count("rejected_payload");
            let message = "The body is not a Stripe event (JSON with \"id\" and \"type\"). - Hint: point only \
                           Stripe's webhook endpoint at /stripe/webhook.";
            record_rejection(&state, INBOX_SOURCE, &req, &source, &body, 400, message).await;
            return Err(AppError::new(Code::BadRequest, message));
        }
    };
    let event_id = event["id"].as_str().unwrap_or_default();
    let kind = event["type"].as_str().unwrap_or_default();
    let key = key_of(&[INBOX_SOURCE.as_bytes(), b"id", event_id.as_bytes()]);
    let stored_headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(if k == "authorization" || k == "cookie" { "***" } else { v.as_str() })))
        .collect();
    let fields = json!({
        "path": req.path(), "headers": stored_headers, "body": String::from_utf8_lossy(&body),
        "body_sha256": hex::encode(Sha256::digest(&body)), "signature": { "ok": true, "detail": verified },
        "event_id": event_id, "event_type": kind,
    });
    let event_id = event_id.to_string();
    let delivery = DeliverPayment { key: key.clone(), fields, event };
    let outcome = match state.handles.intake().deliver_payment(delivery).await {
        Ok(PaymentDelivered::Applied(outcome)) => outcome,
        Ok(PaymentDelivered::Duplicate) => {
            count("duplicate");
            return Ok(HttpResponse::Ok().json(json!({ "status": "duplicate", "id": key })));
        }
        Err(e) => {
            count("unavailable");
            return Err(AppError::new(
                Code::StoreUnavailable,
                "vmauto cannot store this event right now; Stripe will retry.",
            )
            .with_detail(e.to_string()));
        }
    };
    count("stored");
    tracing::info!(event = event_id, status = outcome.status, "stripe event applied");
    Ok(HttpResponse::Ok().json(json!({ "status": outcome.status, "detail": outcome.detail, "id": key })))
}
