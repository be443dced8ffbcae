//! Liveness, readiness and metrics.
//!
//! - `GET /healthz`: the process is up (always 200 while it can answer).
//! - `GET /readyz`: the store answers and every actor of the tree runs (else 503 with what
//!   is missing); with several nodes, also the node id and whether it holds the work lease
//!   (`"leader": true`). A node that does not is ready: it takes webhooks and serves the UI.
//! - `GET /metrics`: Prometheus text format, behind `server.metrics_token` when it is set. The
//!   gauges read from the store are recomputed at most every `server.metrics_refresh_secs`,
//!   by one scrape at a time; every other scrape renders what is in memory, so scraping
//!   (even anonymously and often) costs the store nothing more.

use actix_web::{HttpRequest, HttpResponse, get, web};
use serde_json::json;

use super::AppState;
use crate::error::{AppError, Code};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_healthz).service(get_readyz).service(get_metrics);
}

#[get("/healthz")]
async fn get_healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "version": crate::VERSION,
        "uptime_secs": state.started_at.elapsed().as_secs(),
    }))
}

#[get("/readyz")]
async fn get_readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let store_ok = state.store.is_healthy().await;
    let stopped = state.handles.stopped();
    let ready = store_ok && stopped.is_empty();
    state.metrics.ready.set(i64::from(ready));
    if ready {
        let mut body = json!({ "status": "ready", "store": "ok", "actors": "running" });
        // With several nodes: which one this is, and whether it runs the lifecycle.
        let node = &state.config.cluster.node_id;
        if !node.is_empty() {
            body["node"] = json!(node);
            body["leader"] = json!(state.handles.holds_lease());
        }
        return Ok(HttpResponse::Ok().json(body));
    }
    let mut problems = Vec::new();
    if !store_ok {
        problems.push("the store does not answer".to_string());
    }
    if !stopped.is_empty() {
        problems.push(format!("actors not running: {}", stopped.join(", ")));
    }
    Err(AppError::new(
        Code::NotReady,
        format!("Not ready: {}. - Hint: see the log for the cause.", problems.join("; ")),
    ))
}

#[get("/metrics")]
async fn get_metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let token = state.config.server.metrics_token.expose();
    if !token.is_empty() {
        let given = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes())) {
            return Err(AppError::new(
                Code::Unauthorized,
                "The metrics need a token. - Hint: send Authorization: Bearer <server.metrics_token>.",
            ));
        }
    }
    // One scrape at a time reads the store, and only when the last read is older than the
    // refresh interval; the others render what is in memory.
    if let Ok(mut read_at) = state.metrics_read_at.try_lock() {
        let every = std::time::Duration::from_secs(state.config.server.metrics_refresh_secs);
        if read_at.is_none_or(|t| t.elapsed() >= every) {
            refresh_store_gauges(&state).await;
            *read_at = Some(std::time::Instant::now());
        }
    }
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render()))
}

/// Reads the key figures and the backlog from the store into the gauges.
async fn refresh_store_gauges(state: &AppState) {
    match crate::lifecycle::kpi::compute(&state.store).await {
        Ok(k) => {
            let set = |name: &str, v: f64| state.metrics.kpi.with_label_values(&[name]).set(v);
            set("automation_success_rate", k.automation_success_rate);
            set("error_rate", k.error_rate);
            set("avg_provisioning_secs", k.avg_provisioning_secs.unwrap_or(0.0));
            set("avg_deprovisioning_secs", k.avg_deprovisioning_secs.unwrap_or(0.0));
            set("webhooks_per_minute", k.webhooks_per_minute);
            set("manual_interventions", k.manual_interventions as f64);
        }
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "key figures could not be computed"),
    }
    match crate::lifecycle::kpi::backlog(&state.store).await {
        Ok(b) => {
            // Every state is exported, at 0 when empty, so alert rules always find a series.
            for s in ["queued", "held", "running", "waiting_task", "succeeded", "dead", "cancelled"] {
                state.metrics.operations.with_label_values(&[s]).set(0);
            }
            for (s, n) in &b.operations {
                state.metrics.operations.with_label_values(&[s.as_str()]).set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
            state.metrics.inbox_pending.set(i64::try_from(b.inbox_pending).unwrap_or(i64::MAX));
            state.metrics.inbox_oldest_pending.set(b.inbox_oldest_pending_secs);
        }
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "the backlog could not be computed"),
    }
}
