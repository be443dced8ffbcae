//! The online backup: `POST /internal/export` streams a SurrealQL dump of the store while
//! the appliance runs, so `vmauto db export` works without stopping it. The dump is read in
//! one store transaction, so it is a consistent snapshot.
//!
//! Only for an operator on this machine: the request must come from a loopback address,
//! must not carry reverse-proxy headers (a proxy on the same host connects from loopback
//! too), and must carry a fresh export token keyed with the appliance key
//! ([`crate::ops::export_token`]). Refusals say why in the log, never in the answer.

use actix_web::{HttpRequest, HttpResponse, post, web};
use futures::StreamExt;

use super::AppState;
use crate::error::{AppError, Code};
use crate::ops::{EXPORT_AUTH_HEADER, read_key, verify_export_token};

/// Headers a reverse proxy adds: a request carrying one did not start on this machine.
const PROXY_HEADERS: &[&str] = &["forwarded", "x-forwarded-for", "x-real-ip"];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(post_export);
}

#[post("/internal/export")]
async fn post_export(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let refuse = |why: &str| {
        tracing::warn!(peer = ?req.peer_addr(), why, "online export refused");
        AppError::new(Code::Forbidden, "The export is only available to a local operator.".to_string())
    };
    if !req.peer_addr().is_some_and(|a| a.ip().is_loopback()) {
        return Err(refuse("not from a loopback address"));
    }
    if PROXY_HEADERS.iter().any(|h| req.headers().contains_key(*h)) {
        return Err(refuse("forwarded by a proxy"));
    }
    let token = req.headers().get(EXPORT_AUTH_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let key = read_key(&state.config.key_file()).map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), "online export: the appliance key cannot be read");
        AppError::new(Code::Internal, "The appliance key cannot be read.".to_string())
    })?;
    verify_export_token(&key, token, chrono::Utc::now().timestamp()).map_err(refuse)?;

    let stream = state.store.export_stream().await.map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), "online export failed to start");
        AppError::new(Code::StoreUnavailable, "The store could not be exported.".to_string())
    })?;
    tracing::info!("online export started");
    let body = stream.map(|chunk| {
        chunk.map(bytes::Bytes::from).map_err(|e| {
            // Ends the chunked body without its terminator: the client sees a broken transfer.
            tracing::error!(error = %format!("{e:#}"), "online export broke off");
            actix_web::error::ErrorInternalServerError("export failed")
        })
    });
    Ok(HttpResponse::Ok().content_type("application/sql; charset=utf-8").streaming(body))
}
