//! Incoming webhooks.
//!
//! - `POST /webhooks/{source}` and `POST /webhooks/{source}/{token}` (secret path token);
//! - `POST /api/vps/provision[/{token}]` and `POST /api/vps/deprovision[/{token}]`, bound to
//!   `webhooks.seed_source`.
//!
//! Order of work: size cap (413) → signature (401, recorded) → the source's plugin maps the
//! body (400 when the body is bad, recorded) → the raw request is written durably to the
//! inbox → 202 (200 for a duplicate). Mapping happens before the answer so a bad body gets a
//! 400 and the sender's event id can be the dedupe key; applying the events happens after.
//! A transient internal failure answers 429 (the only status GHL retries), never 5xx.

use actix_web::http::header::HeaderMap;
use actix_web::{HttpRequest, HttpResponse, post, web};
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::AppState;
use crate::actors::webhook::{Deliver, Delivered, Undelivered, key_of};
use crate::billing::signature::{WebhookRequest, verify};
use crate::config::{SignatureScheme, SourceConfig};
use crate::error::{AppError, Code};
use crate::plugin_host::{ALLOWED_HEADERS, SourceRequest};

/// Header names whose values are never stored (they may carry shared tokens).
const REDACTED_HEADERS: &[&str] = &["authorization", "cookie", "x-api-key"];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(post_webhook).service(post_webhook_with_token).service(post_seed).service(post_seed_with_token);
}

#[post("/webhooks/{source}")]
async fn post_webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, AppError> {
    receive(&state, &req, &path.into_inner(), None, body).await
}

#[post("/webhooks/{source}/{token}")]
async fn post_webhook_with_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Payload,
) -> Result<HttpResponse, AppError> {
    let (source, token) = path.into_inner();
    receive(&state, &req, &source, Some(token), body).await
}

/// `POST /api/vps/provision` and `/api/vps/deprovision`: the plugin reads the action from
/// the path when the body does not name the event.
#[post("/api/vps/{action}")]
async fn post_seed(
    state: web::Data<AppState>,
    req: HttpRequest,
    action: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, AppError> {
    seed_action(&action)?;
    receive(&state, &req, seed_source(&state)?, None, body).await
}

#[post("/api/vps/{action}/{token}")]
async fn post_seed_with_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Payload,
) -> Result<HttpResponse, AppError> {
    let (action, token) = path.into_inner();
    seed_action(&action)?;
    receive(&state, &req, seed_source(&state)?, Some(token), body).await
}

fn seed_action(action: &str) -> Result<(), AppError> {
    match action {
        "provision" | "deprovision" => Ok(()),
        other => Err(AppError::not_found(format!(
            "/api/vps/{other} does not exist. - Hint: use /api/vps/provision or /api/vps/deprovision."
        ))),
    }
}

fn seed_source(state: &AppState) -> Result<&str, AppError> {
    state.config.seed_source().ok_or_else(|| {
        AppError::not_found(
            "No source serves /api/vps/provision. - Hint: configure a [sources.NAME] with plugin = \"ghl-workflow\" \
             or set webhooks.seed_source.",
        )
    })
}

/// Reads the body up to the cap without buffering more than the cap, within
/// `server.body_timeout_secs`: a slow sender cannot hold a connection open for longer.
pub(crate) async fn read_body(state: &AppState, payload: web::Payload) -> Result<bytes::Bytes, AppError> {
    let secs = state.config.server.body_timeout_secs;
    let limit = state.config.server.body_limit_bytes;
    tokio::time::timeout(std::time::Duration::from_secs(secs), read_body_untimed(payload, limit)).await.unwrap_or_else(
        |_| {
            Err(AppError::new(
                Code::RequestTimeout,
                format!("The body did not arrive within {secs} s. - Hint: send the whole request at once."),
            ))
        },
    )
}

async fn read_body_untimed(mut payload: web::Payload, limit: usize) -> Result<bytes::Bytes, AppError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| AppError::bad_request(format!("The request body could not be read: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(AppError::new(
                Code::PayloadTooLarge,
                format!(
                    "The body is larger than {limit} bytes. - Hint: raise server.body_limit_bytes if this sender is legitimate."
                ),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

pub(crate) fn headers_of(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_string()))).collect()
}

/// Headers as stored in the inbox: token-carrying headers redacted.
fn stored_headers(headers: &[(String, String)], source: &SourceConfig) -> Value {
    let secret_header = (source.signature == SignatureScheme::SharedToken && source.token_in == "header")
        .then(|| source.token_field.to_ascii_lowercase());
    let map: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            let hidden = REDACTED_HEADERS.contains(&k.as_str()) || secret_header.as_deref() == Some(k.as_str());
            (k.clone(), json!(if hidden { "***" } else { v.as_str() }))
        })
        .collect();
    Value::Object(map)
}

/// The body as stored: a source's shared token, when it travels in the body (or anywhere in
/// it), is replaced by `***`, so nobody reads it back from the inbox.
fn stored_body(body: &[u8], source: &SourceConfig) -> String {
    let text = String::from_utf8_lossy(body);
    let token = source.token.expose();
    if source.signature == SignatureScheme::SharedToken && token.len() >= 8 {
        text.replace(token, "***")
    } else {
        text.into_owned()
    }
}

async fn receive(
    state: &AppState,
    req: &HttpRequest,
    source_name: &str,
    token: Option<String>,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let metrics = &state.metrics;
    let Some(source) = state.config.sources.get(source_name) else {
        return Err(AppError::not_found(format!(
            "There is no billing source named {source_name:?}. - Hint: sources are configured as [sources.NAME] in appliance.toml."
        )));
    };
    let count = |result: &str| metrics.webhooks.with_label_values(&[source_name, result]).inc();
    let body = match read_body(state, payload).await {
        Ok(b) => b,
        Err(e) => {
            count("too_large");
            record_rejection(state, source_name, req, source, b"", 413, &e.message).await;
            return Err(e);
        }
    };
    let headers = headers_of(req.headers());
    let path = req.path().to_string();
    // The path as stored and shown to the plugin never carries the secret token.
    let clean_path = match &token {
        Some(t) => path.strip_suffix(&format!("/{t}")).unwrap_or(&path).to_string(),
        None => path.clone(),
    };
    let wr = WebhookRequest { path_token: token.as_deref(), headers: &headers, body: &body };
    let verified = match verify(source, &wr, chrono::Utc::now(), state.config.stripe.tolerance_secs) {
        Ok(v) => v,
        Err(e) => {
            count("rejected_signature");
            let message = format!("The webhook could not be authenticated: {e}");
            record_rejection(state, source_name, req, source, &body, 401, &message).await;
            return Err(match req.match_info().get("action") {
                Some(action) => unauthenticated_seed(action, source),
                None => unauthenticated(),
            });
        }
    };
    let request = SourceRequest {
        source: source_name.to_string(),
        path: clean_path.clone(),
        headers: headers.iter().filter(|(k, _)| ALLOWED_HEADERS.contains(&k.as_str())).cloned().collect(),
        body: body.clone(),
        settings: source.settings.clone(),
    };
    let fields = json!({
        "path": clean_path, "headers": stored_headers(&headers, source), "body": stored_body(&body, source),
        "body_sha256": hex::encode(Sha256::digest(&body)), "signature": { "ok": true, "detail": verified },
    });
    let delivery = Deliver { plugin: source.plugin.clone(), request, fields };
    match state.handles.intake().deliver(delivery).await {
        Ok(Delivered::Stored { key, failed }) => {
            count(if failed { "stored_failed" } else { "stored" });
            Ok(HttpResponse::Accepted().json(json!({ "status": "accepted", "id": key })))
        }
        Ok(Delivered::Duplicate { key }) => {
            count("duplicate");
            Ok(HttpResponse::Ok().json(json!({ "status": "duplicate", "id": key })))
        }
        Err(Undelivered::Rejected(message)) => {
            count("rejected_payload");
            record_rejection(state, source_name, req, source, &body, 400, &message).await;
            Err(AppError::new(Code::BadRequest, message))
        }
        Err(Undelivered::Unavailable(detail)) => {
            count("unavailable");
            Err(busy(detail))
        }
    }
}

/// A transient failure: 429 so the sender retries (GHL retries only 429).
fn busy(detail: String) -> AppError {
    AppError::new(Code::RateLimited, "vmauto cannot store this webhook right now; please retry. - Hint: see the log.")
        .with_detail(detail)
}

/// The answer to a webhook that failed authentication: the same for every cause, so a
/// prober learns nothing; the cause is recorded in the inbox row for admins.
pub(crate) fn unauthenticated() -> AppError {
    AppError::new(
        Code::InvalidSignature,
        "The webhook could not be authenticated. - Hint: check the token or signing secret this sender uses for \
         the source; the reason is recorded in vmauto's inbox.",
    )
}

/// The same for `/api/vps/provision` and `/api/vps/deprovision`, whose callers are scripts
/// and workflows: the hint says where this endpoint takes its token (never the token).
fn unauthenticated_seed(action: &str, source: &SourceConfig) -> AppError {
    let hint = match (source.signature, source.token_in.as_str()) {
        (SignatureScheme::SharedToken, "path") => {
            format!("append the source's token to the path: /api/vps/{action}/<token>")
        }
        (SignatureScheme::SharedToken, "header") => {
            format!("send the source's token in the {} header", source.token_field)
        }
        (SignatureScheme::SharedToken, _) => {
            format!("send the source's token in the body field {}", source.token_field)
        }
        _ => "sign the body with the source's secret".to_string(),
    };
    AppError::new(
        Code::InvalidSignature,
        format!("The request could not be authenticated. - Hint: {hint}; the reason is recorded in vmauto's inbox."),
    )
}

/// Header values of a refused request are cut to this many bytes, and at most
/// [`REFUSED_HEADERS`] headers are kept.
const REFUSED_HEADER_BYTES: usize = 256;
const REFUSED_HEADERS: usize = 32;
/// The recorded reason is cut to this many bytes (a plugin's rejection may quote the body).
const REFUSED_REASON_BYTES: usize = 1024;

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Records a refused request in the inbox (no events; the reason shown to admins), within the
/// refusal budget ([`super::refusals`]): only the first `webhooks.refused_body_bytes` of the
/// body with its length and SHA-256, at most 32 headers of 256 bytes, written on its own so
/// it never joins the group commit of authenticated webhooks. Past the budget the refusal is
/// only counted.
pub(crate) async fn record_rejection(
    state: &AppState,
    source_name: &str,
    req: &HttpRequest,
    source: &SourceConfig,
    body: &[u8],
    http_status: u16,
    reason: &str,
) {
    let client = state.client_ip(req);
    if !state.refusals.allow(source_name, client) {
        state.metrics.webhooks.with_label_values(&[source_name, "refusal_unrecorded"]).inc();
        return;
    }
    let cap = state.config.webhooks.refused_body_bytes;
    let headers: Vec<(String, String)> = headers_of(req.headers())
        .into_iter()
        .take(REFUSED_HEADERS)
        .map(|(k, v)| (cut(&k, REFUSED_HEADER_BYTES).to_string(), cut(&v, REFUSED_HEADER_BYTES).to_string()))
        .collect();
    let key = key_of(&[source_name.as_bytes(), b"rejected", uuid::Uuid::new_v4().as_bytes()]);
    let fields = json!({
        "source": source_name, "events": [],
        "path": req.match_pattern().unwrap_or_default(), "headers": stored_headers(&headers, source),
        "body": stored_body(&body[..body.len().min(cap)], source), "body_len": body.len(),
        "body_truncated": body.len() > cap, "body_sha256": hex::encode(Sha256::digest(body)),
        "signature": { "ok": http_status != 401 }, "status": "rejected", "error": cut(reason, REFUSED_REASON_BYTES),
        "http_status": http_status, "client": client.map(|c| c.to_string()),
    });
    let written = state.store.record_refused_webhook(&key, &fields).await;
    if let Err(e) = written {
        tracing::warn!(source = source_name, error = %format!("{e:#}"), "a refused webhook could not be recorded");
    }
}
