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
    cfg.service(post_export).service(post_retry).service(post_purge).service(post_cli);
}

/// Checks that a request comes from an operator on this machine (loopback, no proxy headers, a
/// fresh token keyed with the appliance key).
fn local_operator(req: &HttpRequest, state: &AppState, what: &str) -> Result<(), AppError> {
    let refuse = |why: &str| {
        tracing::warn!(peer = ?req.peer_addr(), why, what, "local operator request refused");
        AppError::new(Code::Forbidden, format!("The {what} is only available to a local operator."))
    };
    if !req.peer_addr().is_some_and(|a| a.ip().is_loopback()) {
        return Err(refuse("not from a loopback address"));
    }
    if PROXY_HEADERS.iter().any(|h| req.headers().contains_key(*h)) {
        return Err(refuse("forwarded by a proxy"));
    }
    let token = req.headers().get(EXPORT_AUTH_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let key = read_key(&state.config.key_file()).map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), what, "the appliance key cannot be read");
        AppError::new(Code::Internal, "The appliance key cannot be read.".to_string())
    })?;
    verify_export_token(&key, token, chrono::Utc::now().timestamp()).map_err(refuse)
}

#[post("/internal/export")]
async fn post_export(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    local_operator(&req, &state, "export")?;
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

/// `vmauto admin retry` while the appliance runs: the same decision as the UI's and the API's
/// retry button ([`crate::admin::retry_operation`]).
#[post("/internal/operations/{id}/retry")]
async fn post_retry(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    local_operator(&req, &state, "retry")?;
    let id = crate::db::models::operation::OperationId::from(id.into_inner());
    match crate::admin::retry_operation(&state.store, Some(&state.handles.registry), &id, "cli").await {
        Ok(vps) => Ok(HttpResponse::Accepted().json(serde_json::json!({ "vps": vps }))),
        Err(e @ crate::admin::RetryError::NotFound(_)) => Err(AppError::not_found(e.to_string())),
        Err(crate::admin::RetryError::Refused(m)) => Err(AppError::new(Code::Conflict, m)),
        Err(crate::admin::RetryError::Store(e)) => Err(AppError::store(format!("{e:#}"))),
    }
}

/// `vmauto db purge` while the appliance runs.
#[post("/internal/inbox/purge")]
async fn post_purge(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    local_operator(&req, &state, "purge")?;
    let report = crate::db::inbox::purge(&state.store, &state.config.inbox, chrono::Utc::now())
        .await
        .map_err(|e| AppError::store(format!("{e:#}")))?;
    tracing::info!(compacted = report.compacted, deleted = report.deleted, "inbox purged by a local operator");
    Ok(HttpResponse::Ok().json(report))
}

/// `vmauto admin …` and `vmauto upgrade …` while the appliance runs: the same code as when the
/// CLI opens the store itself; the answer is what the CLI prints.
#[post("/internal/cli")]
async fn post_cli(
    req: HttpRequest,
    state: web::Data<AppState>,
    command: web::Json<crate::commands::RemoteCommand>,
) -> Result<HttpResponse, AppError> {
    use crate::commands::RemoteCommand;
    local_operator(&req, &state, "operator command")?;
    let out = match &*command {
        RemoteCommand::Admin(c) => crate::commands::execute_admin(&state.auth, c).await,
        RemoteCommand::Upgrade(c) => {
            crate::commands::execute_upgrade(&state.store, &state.config, &state.sealer, c).await
        }
        RemoteCommand::Portal(c) => {
            crate::commands::execute_portal(&state.store, &state.config, &state.sealer, c).await
        }
        RemoteCommand::Settings(c) => {
            crate::commands::execute_settings(&state.store, &state.config, &state.sealer, c, "cli").await
        }
    };
    match out {
        Ok(output) => Ok(HttpResponse::Ok().json(serde_json::json!({ "output": output }))),
        Err(e) => Err(AppError::bad_request(format!("{e:#}"))),
    }
}
