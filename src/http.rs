//! HTTP routes. Handlers own no state: they read the store or send messages to actors.
//! One file per resource, each with one mounting function whose routes sit at its top.

pub mod api;
pub mod assets;
pub mod backup;
pub mod charts;
pub mod events;
pub mod health;
pub mod middleware;
pub mod reveal;
pub mod session;
pub mod stripe;
pub mod ui;
pub mod upgrade;
pub mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use actix_web::web;

use crate::actors::supervisor::Handles;
use crate::config::Config;
use crate::db::Store;
use crate::notify::templates::Templates;
use crate::secrets::Sealer;
use crate::telemetry::metrics::Metrics;

/// Shared, read-only state of the HTTP layer.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub handles: Handles,
    pub started_at: Instant,
    /// Opens sealed secrets (the one-time reveal page).
    pub sealer: Arc<Sealer>,
    /// Pages: the admin UI and the customer pages.
    pub templates: Arc<Templates>,
    /// Admin users, sessions and API tokens.
    pub auth: crate::auth::Auth,
    /// VPS counts by state for the dashboard (a scan of the whole table), at most 10 s old.
    pub vps_counts: Arc<crate::admin::Snapshot<Vec<(String, u64)>>>,
}

/// Mounts every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::routes(cfg);
    webhooks::routes(cfg);
    reveal::routes(cfg);
    backup::routes(cfg);
    session::routes(cfg);
    events::routes(cfg);
    assets::routes(cfg);
    upgrade::routes(cfg);
    stripe::routes(cfg);
    api::routes(cfg);
    ui::routes(cfg);
}

/// Headers every response gets unless its handler set its own: a CSP without inline script,
/// no framing, no MIME sniffing, and a strict referrer policy.
pub fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((
            actix_web::http::header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ))
        .add((actix_web::http::header::X_FRAME_OPTIONS, "DENY"))
        .add((actix_web::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((actix_web::http::header::REFERRER_POLICY, "same-origin"))
}
