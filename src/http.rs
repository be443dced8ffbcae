//! HTTP routes. Handlers own no state: they read the store or send messages to actors.
//! One file per resource, each with one mounting function whose routes sit at its top.

pub mod health;
pub mod middleware;
pub mod reveal;
pub mod stripe;
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
    /// Customer pages (the reveal page).
    pub templates: Arc<Templates>,
}

/// Mounts every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::routes(cfg);
    webhooks::routes(cfg);
    reveal::routes(cfg);
    upgrade::routes(cfg);
    stripe::routes(cfg);
}
