//! HTTP routes. Handlers own no state: they read the store or send messages to actors.
//! One file per resource, each with one mounting function whose routes sit at its top.

pub mod api;
pub mod assets;
pub mod backup;
pub mod charts;
pub mod events;
pub mod health;
pub mod middleware;
pub mod portal;
pub mod refusals;
pub mod reveal;
pub mod session;
pub mod stripe;
pub mod ui;
pub mod upgrade;
pub mod usage;
pub mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use actix_web::web;

use crate::actors::tree::Handles;
use crate::config::Config;
use crate::db::Store;
use crate::lifecycle::Level;
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
    /// How many refused webhooks may still be recorded this minute.
    pub refusals: Arc<refusals::RefusalBudget>,
    /// When `/metrics` last read its gauges from the store (held while it reads them).
    pub metrics_read_at: Arc<tokio::sync::Mutex<Option<Instant>>>,
    /// Open live-update streams per user.
    pub event_streams: events::StreamCounts,
    /// `server.trusted_proxies`, parsed.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// Requests per customer link and per client address this minute (upgrade pages).
    pub link_requests: Arc<refusals::RefusalBudget>,
    /// The same for portal links (`portal.requests_per_minute`).
    pub portal_requests: Arc<refusals::RefusalBudget>,
    /// Customers' open console sessions, one per portal link.
    pub consoles: Arc<portal::console::Consoles>,
    /// Recent usage answers from SCP, by server and span.
    pub usage: Arc<usage::UsageCache>,
}

impl AppState {
    /// The gateway of the SCP the VM of `vps` lives on.
    pub async fn gateway_of(
        &self,
        vps: &crate::lifecycle::VpsId,
    ) -> anyhow::Result<actix::Addr<crate::actors::gateway::SangforGateway>> {
        self.handles.gateways.of_vps(&self.store, vps).await?.map_err(anyhow::Error::msg)
    }

    fn peer_is_trusted_proxy(&self, req: &actix_web::HttpRequest) -> bool {
        req.peer_addr().is_some_and(|p| self.trusted_proxies.iter().any(|n| n.contains(&p.ip())))
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy, the last
    /// address in `X-Forwarded-For` that is not a trusted proxy itself.
    pub fn client_ip(&self, req: &actix_web::HttpRequest) -> Option<std::net::IpAddr> {
        let peer = req.peer_addr()?.ip();
        if !self.peer_is_trusted_proxy(req) {
            return Some(peer);
        }
        let hops: Vec<std::net::IpAddr> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        hops.into_iter().rev().find(|ip| !self.trusted_proxies.iter().any(|n| n.contains(ip))).or(Some(peer))
    }

    /// Whether the client reached vmauto over HTTPS: the connection's scheme, or what a
    /// trusted proxy says in `X-Forwarded-Proto`.
    pub fn is_https(&self, req: &actix_web::HttpRequest) -> bool {
        if self.peer_is_trusted_proxy(req) {
            req.connection_info().scheme() == "https"
        } else {
            req.app_config().secure()
        }
    }
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
    portal::routes(cfg);
    stripe::routes(cfg);
    api::routes(cfg);
    ui::routes(cfg);
}

/// Applies an inbox row's events again for `actor` (UI and API) through the webhook actor
/// (a Stripe payment is idempotent by session id). The replay is recorded in the activity log.
pub async fn replay_inbox(
    state: &AppState,
    key: &crate::actors::webhook::InboxKey,
    actor: &str,
) -> anyhow::Result<Vec<crate::actors::subscription::EventOutcome>> {
    let replay = crate::actors::webhook::Replay { key: key.clone(), requested_by: actor.to_string() };
    let outcomes = state
        .handles
        .webhook
        .send(replay)
        .await
        .map_err(|e| anyhow::anyhow!("the webhook actor is not running: {e}"))?;
    let _ = state
        .store
        .record_activity(
            Level::Info,
            actor,
            Some(key.as_str()),
            &format!("{actor} replayed an inbox event"),
            serde_json::json!({}),
        )
        .await;
    outcomes
}

/// A customer-facing page (reveal, upgrade): never cached, indexed or sent as a referrer, and a
/// CSP that allows only its own inline styles.
pub(crate) fn customer_page(status: actix_web::http::StatusCode, html: String) -> actix_web::HttpResponse {
    use actix_web::http::header;
    actix_web::HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header(("X-Robots-Tag", "noindex, nofollow"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
        ))
        .body(html)
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
