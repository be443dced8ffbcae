//! The customer's console: `GET /my/{token}/console` is a page running noVNC (served from
//! vmauto), whose WebSocket `/my/{token}/console/ws` vmauto relays to a console SCP opened for
//! it. The browser talks only to vmauto: SCP's address and its console token never reach the
//! customer.
//!
//! One session per link: a new one ends the previous. A session ends after
//! `portal.console_minutes`, when the link is revoked or expires, or when either side closes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message as Scp;

use super::{AppState, admit, look, message, portal_response, unavailable};
use crate::actors::gateway::{ConsoleSocket, OpenConsole, ServerId};
use crate::lifecycle::VpsState;
use crate::portal::{self, Opened, PortalLinkId};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/my/{token}/console", web::get().to(get_console))
        .route("/my/{token}/console/ws", web::get().to(get_console_ws));
}

/// Largest WebSocket message relayed (a full-screen raw update of a large display).
const MAX_MESSAGE: usize = 64 << 20;

/// How often a session checks that its link still opens.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The open console sessions, one per link: a new session stops the one before.
#[derive(Debug, Default)]
pub struct Consoles(parking_lot::Mutex<HashMap<PortalLinkId, (u64, Arc<tokio::sync::Notify>)>>);

impl Consoles {
    /// Registers a session for `link`, stopping any other; answers its number and its stop
    /// signal.
    fn begin(&self, link: &PortalLinkId) -> (u64, Arc<tokio::sync::Notify>) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stop = Arc::new(tokio::sync::Notify::new());
        if let Some((_, old)) = self.0.lock().insert(link.clone(), (n, stop.clone())) {
            old.notify_one();
        }
        (n, stop)
    }

    fn end(&self, link: &PortalLinkId, n: u64) {
        let mut map = self.0.lock();
        if map.get(link).is_some_and(|(m, _)| *m == n) {
            map.remove(link);
        }
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.0.lock().len()
    }
}

/// The context of `pages/portal_console.html`.
#[derive(Serialize)]
struct ConsolePage {
    base: String,
    name: String,
    minutes: u32,
}

async fn get_console(state: web::Data<AppState>, req: HttpRequest, token: web::Path<String>) -> HttpResponse {
    let link = match admit(&state, &req, &token).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    let seen = match look(&state, &link).await {
        Ok(s) => s,
        Err(e) => return unavailable(&state, &e),
    };
    if seen.vps.state != VpsState::Active || !seen.vps.has_vm {
        return message(
            &state,
            StatusCode::CONFLICT,
            "No console now",
            "The console is available while your server is active. Go back to your server's page.",
        );
    }
    let page = ConsolePage {
        base: format!("/my/{}", token.as_str()),
        name: if seen.vps.name.is_empty() { "Your server".into() } else { seen.vps.name.clone() },
        minutes: state.config.portal.console_minutes,
    };
    match state.templates.render("pages/portal_console.html", &page) {
        Ok(html) => portal_response(StatusCode::OK, html),
        Err(e) => unavailable(&state, &e),
    }
}

async fn get_console_ws(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let link = match admit(&state, &req, &token).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    let vps = match state.store.portal_vps(&link.vps).await {
        Ok(Some(v)) => v,
        Ok(None) => return HttpResponse::NotFound().finish(),
        Err(e) => return unavailable(&state, &e),
    };
    let server = match state.store.vps(&link.vps).await.map(|v| v.and_then(|v| v.server_id)) {
        Ok(Some(s)) if vps.state == VpsState::Active => s,
        Ok(_) => return HttpResponse::Conflict().body("the console is available while the server is active"),
        Err(e) => return unavailable(&state, &e),
    };
    // Refused before SCP is asked for anything.
    let upgrade = req.headers().get(actix_web::http::header::UPGRADE);
    if !upgrade.is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket")) {
        return HttpResponse::build(StatusCode::UPGRADE_REQUIRED).body("open the console from its page");
    }
    let gateway = match state.gateway_of(&link.vps).await {
        Ok(g) => g,
        Err(e) => return unavailable(&state, &e),
    };
    let scp = match gateway.send(OpenConsole { server_id: ServerId::new(&server) }).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => {
            tracing::warn!(vps = %link.vps, error = %e, "a customer's console could not be opened");
            return HttpResponse::BadGateway().body("the console cannot be opened now; try again in a minute");
        }
        Err(_) => return HttpResponse::ServiceUnavailable().body("try again shortly"),
    };
    let (response, session, stream) = match actix_ws::handle_with_protocols(&req, payload, &["binary"]) {
        Ok(parts) => parts,
        Err(e) => return e.error_response(),
    };
    let who = portal::actor(&link.id);
    let _ = state
        .store
        .record_activity(
            crate::lifecycle::Level::Info,
            &who,
            Some(&format!("vps:{}", link.vps)),
            "the customer opened the console",
            serde_json::json!({}),
        )
        .await;
    let limit = Duration::from_secs(u64::from(state.config.portal.console_minutes) * 60);
    actix_web::rt::spawn(relay(state.into_inner(), token.into_inner(), link.id, limit, session, stream, scp));
    response
}

/// Why a session ended, for the browser.
fn reason(code: CloseCode, text: &str) -> Option<CloseReason> {
    Some(CloseReason { code, description: Some(text.to_string()) })
}

/// Relays frames both ways until one side closes, the link stops opening, the time is up or
/// a newer session of the link takes over.
async fn relay(
    state: Arc<AppState>,
    token: String,
    link: PortalLinkId,
    limit: Duration,
    mut browser: actix_ws::Session,
    stream: actix_ws::MessageStream,
    mut scp: ConsoleSocket,
) {
    let (n, stop) = state.consoles.begin(&link);
    let mut from_browser =
        stream.max_frame_size(MAX_MESSAGE).aggregate_continuations().max_continuation_size(MAX_MESSAGE);
    let started = Instant::now();
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.tick().await;
    let end = loop {
        tokio::select! {
            m = from_browser.next() => match m {
                Some(Ok(AggregatedMessage::Binary(b))) => {
                    if scp.send(Scp::Binary(b)).await.is_err() { break reason(CloseCode::Away, "the console closed") }
                }
                Some(Ok(AggregatedMessage::Text(t))) => {
                    if scp.send(Scp::text(t.to_string())).await.is_err() { break reason(CloseCode::Away, "the console closed") }
                }
                Some(Ok(AggregatedMessage::Ping(p))) => { let _ = browser.pong(&p).await; }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                Some(Ok(AggregatedMessage::Close(_))) | Some(Err(_)) | None => break None,
            },
            m = scp.next() => match m {
                Some(Ok(Scp::Binary(b))) => {
                    if browser.binary(b).await.is_err() { break None }
                }
                Some(Ok(Scp::Text(t))) => {
                    if browser.text(t.to_string()).await.is_err() { break None }
                }
                Some(Ok(Scp::Ping(_) | Scp::Pong(_) | Scp::Frame(_))) => {}
                Some(Ok(Scp::Close(_))) | Some(Err(_)) | None => break reason(CloseCode::Away, "the console closed"),
            },
            _ = stop.notified() => break reason(CloseCode::Policy, "the console was opened somewhere else"),
            _ = check.tick() => {
                if started.elapsed() >= limit {
                    break reason(CloseCode::Policy, "the console session reached its time limit; open it again");
                }
                match portal::open(&state.store, &state.sealer, &token).await {
                    Ok(Opened::Active(_)) | Err(_) => {}
                    Ok(_) => break reason(CloseCode::Policy, "this link was withdrawn or has expired"),
                }
            }
        }
    };
    state.consoles.end(&link, n);
    let _ = scp.close(None).await;
    let _ = browser.close(end).await;
}
