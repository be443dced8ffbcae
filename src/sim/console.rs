//! Remote consoles (sangfor-scp-api.md §5.1 S17): the tokens that
//! `POST /servers/{id}/remote-consoles` hands out, and the VNC screen behind the URL.
//!
//! The URL is `{base}/console/{type}/?server_id={id}&token={token}`. A noVNC client (or
//! vmauto proxying for a browser) opens a WebSocket to it — the subprotocol `binary` is
//! accepted when offered — and speaks RFB 3.8 ([`rfb`]) in binary frames. The screen
//! ([`screen`]) shows the VM's name and status: a login prompt with a blinking cursor while
//! it runs, a "powered off" notice (or starting, suspended, …) otherwise.
//!
//! Token rules:
//! - A token may open sessions until `console_ttl_secs` (60 s by default) after it was
//!   issued; a session, once open, lasts until either side closes it or the server is
//!   deleted.
//! - An unknown or expired token, or one issued for another server or console type, is
//!   refused with 403 before the upgrade; a server that no longer exists (deleted, or in the
//!   recycle bin) with 404. Only `vnc` consoles have a screen: other protocols get 400.
//! - Requests are counted as `GET /console/{type}/` and fault rules apply to them, e.g.
//!   `--fault 'GET /console/* error_rate=1 status=503'` refuses every console.

pub mod rfb;
pub mod screen;

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};

use self::rfb::{Out, Rfb};
use self::screen::{Frame, HEIGHT, Rect, View, WIDTH};
use super::http::{error_response, faulted, observe};
use super::reply::{ApiError, Query};
use super::service::Shared;
use super::world::{Millis, now_ms};

/// Paths served here.
pub const PREFIX: &str = "/console/";
/// Console types a URL may name (S17 `type`).
pub const KINDS: [&str; 2] = ["novnc", "xvpvnc"];
/// How long a console URL may be opened, unless configured otherwise.
pub const DEFAULT_TTL_SECS: u64 = 60;
/// How often a session looks at its server and blinks the cursor.
const TICK: Duration = Duration::from_millis(500);
/// Largest WebSocket message accepted from a client.
const MAX_MESSAGE: usize = 2 << 20;
/// A colour no screen pixel has (pixels are `0xRRGGBB`): what the client is assumed to show
/// where it has been sent nothing yet.
const UNSENT: u32 = 0xff00_0000;

/// What a console token was issued for.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub server_id: String,
    pub protocol: String,
    pub kind: String,
    pub expires_ms: Millis,
}

/// Console tokens handed out and not yet forgotten.
#[derive(Debug, Default)]
pub struct Tickets(HashMap<String, Ticket>);

impl Tickets {
    /// Records a new token, forgetting the expired ones.
    pub fn issue(&mut self, token: String, ticket: Ticket, now: Millis) {
        self.0.retain(|_, t| t.expires_ms > now);
        self.0.insert(token, ticket);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Makes every token expire now (`/_sim/tokens/expire`); returns how many there were.
    pub fn expire_all(&mut self, now: Millis) -> usize {
        self.0.values_mut().for_each(|t| t.expires_ms = now);
        self.0.len()
    }

    /// The ticket `token` grants for opening `server_id`'s console of type `kind`.
    fn check(&self, token: &str, server_id: &str, kind: &str, now: Millis) -> Result<&Ticket, ApiError> {
        let ticket = self.0.get(token).ok_or_else(|| ApiError::forbidden("unknown console token"))?;
        if ticket.expires_ms <= now {
            return Err(ApiError::forbidden("the console token has expired; request a new console URL"));
        }
        if ticket.server_id != server_id || ticket.kind != kind {
            return Err(ApiError::forbidden("the console token was issued for another console"));
        }
        Ok(ticket)
    }
}

/// `GET /console/{type}/?server_id=…&token=…` with a WebSocket upgrade: checks the token and
/// starts a VNC session.
pub async fn open(req: &HttpRequest, payload: web::Payload, shared: &web::Data<Shared>) -> HttpResponse {
    let path = req.path();
    let verdict = observe(&mut shared.sim.lock(), req.method().as_str(), path, "GET /console/{type}/");
    if let Some(answer) = faulted(req, shared, &verdict).await {
        return answer;
    }
    let kind = path.strip_prefix(PREFIX).unwrap_or_default().trim_end_matches('/');
    if !KINDS.contains(&kind) {
        return error_response(shared, ApiError::no_route(req.method().as_str(), path));
    }
    if req.method() != actix_web::http::Method::GET {
        return error_response(shared, ApiError::method_not_allowed(req.method().as_str(), path));
    }
    let query = Query::parse(req.query_string());
    let (Some(server_id), Some(token)) = (query.get("server_id"), query.get("token")) else {
        return error_response(shared, ApiError::forbidden("the console URL needs server_id and token"));
    };
    let view = {
        let now = now_ms();
        let mut sim = shared.sim.lock();
        sim.advance(now);
        let protocol = match sim.consoles.check(token, server_id, kind, now) {
            Ok(t) => t.protocol.clone(),
            Err(e) => return error_response(shared, e),
        };
        if protocol != "vnc" {
            let e = ApiError::bad_request(format!("the simulator has no {protocol} consoles, only vnc"));
            return error_response(shared, e);
        }
        match sim.world.server(server_id) {
            Some(s) => view_of(s, now),
            None => return error_response(shared, ApiError::not_found("server", server_id)),
        }
    };
    let upgrade = req.headers().get("upgrade").and_then(|v| v.to_str().ok());
    if !upgrade.is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        let e = ApiError::new(426, super::reply::codes::BAD_REQUEST, "open this URL with a WebSocket (noVNC)");
        return error_response(shared, e);
    }
    match actix_ws::handle_with_protocols(req, payload, &["binary"]) {
        Ok((response, session, stream)) => {
            actix_web::rt::spawn(run(shared.clone(), server_id.to_string(), view, session, stream));
            response
        }
        Err(e) => e.error_response(),
    }
}

/// What the screen shows of server `s` at `now`.
fn view_of(s: &super::world::Server, now: Millis) -> View {
    View {
        name: s.name.clone(),
        hostname: s.hostname.clone(),
        os_name: s.os_name.clone(),
        status: s.status,
        ip: s.reports_ip(now).then(|| s.networks.iter().map(|n| n.ip.clone()).find(|ip| !ip.is_empty())).flatten(),
    }
}

/// The server as the screen shows it now; `None` once it is gone.
fn look(shared: &Shared, server_id: &str) -> Option<View> {
    let now = now_ms();
    let mut sim = shared.sim.lock();
    sim.advance(now);
    sim.world.server(server_id).map(|s| view_of(s, now))
}

/// The cursor's blink phase: on for half of every second.
fn cursor_on(now: Millis) -> bool {
    now.rem_euclid(1000) < 500
}

/// The part of `area` where what the client shows (`None`: nothing yet) differs from `frame`.
fn changed(client: Option<&Frame>, frame: &Frame, area: Rect) -> Option<Rect> {
    let bounds = frame.bounds();
    match client {
        None => area.intersect(&bounds),
        Some(c) => c.diff(frame)?.intersect(&area),
    }
}

/// One VNC session: answers the client's messages and, when an incremental update request
/// is waiting, sends what changed (looked at every [`TICK`], never busily).
async fn run(
    shared: web::Data<Shared>,
    server_id: String,
    view: View,
    mut ws: actix_ws::Session,
    stream: actix_ws::MessageStream,
) {
    let mut stream = stream.max_frame_size(MAX_MESSAGE).aggregate_continuations().max_continuation_size(MAX_MESSAGE);
    let mut rfb = Rfb::new(WIDTH, HEIGHT, &view.name);
    let mut frame = screen::render(&view, cursor_on(now_ms()));
    // What the client shows, as far as the server knows.
    let mut client: Option<Frame> = None;
    // The area of an incremental request not answered yet.
    let mut waiting: Option<Rect> = None;
    if ws.binary(rfb::VERSION.to_vec()).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        tokio::select! {
            msg = stream.recv() => {
                let bytes = match msg {
                    Some(Ok(AggregatedMessage::Binary(b))) => b,
                    Some(Ok(AggregatedMessage::Ping(p))) => {
                        if ws.pong(&p).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => continue,
                    Some(Ok(AggregatedMessage::Text(_))) => break Some("RFB travels in binary frames".to_string()),
                    Some(Ok(AggregatedMessage::Close(_)) | Err(_)) | None => break None,
                };
                let mut end = None;
                for out in rfb.feed(&bytes) {
                    let sent = match out {
                        Out::Send(b) => ws.binary(b).await,
                        Out::Refresh => {
                            client = None;
                            Ok(())
                        }
                        Out::Update(req) if req.incremental => {
                            waiting = Some(req.area);
                            Ok(())
                        }
                        Out::Update(req) => {
                            // A full request is answered at once, even when nothing is in it.
                            waiting = None;
                            let rects: Vec<Rect> = req.area.intersect(&frame.bounds()).into_iter().collect();
                            for r in &rects {
                                client.get_or_insert_with(|| Frame::new(WIDTH, HEIGHT, UNSENT)).copy_from(&frame, *r);
                            }
                            ws.binary(rfb.update(&frame, &rects)).await
                        }
                        Out::Close(why) => {
                            end = Some(why);
                            break;
                        }
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                if end.is_some() {
                    break end;
                }
            }
            _ = tick.tick() => match look(&shared, &server_id) {
                Some(v) => frame = screen::render(&v, cursor_on(now_ms())),
                None => break Some("the server no longer exists".to_string()),
            },
        }
        if let Some(area) = waiting
            && let Some(r) = changed(client.as_ref(), &frame, area)
        {
            waiting = None;
            client.get_or_insert_with(|| Frame::new(WIDTH, HEIGHT, UNSENT)).copy_from(&frame, r);
            if ws.binary(rfb.update(&frame, &[r])).await.is_err() {
                return;
            }
        }
    };
    let close = reason.map(|why| CloseReason { code: CloseCode::Policy, description: Some(why) });
    let _ = ws.close(close).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_expire_and_are_bound_to_their_console() {
        let mut t = Tickets::default();
        let ticket =
            |expires_ms| Ticket { server_id: "s1".into(), protocol: "vnc".into(), kind: "novnc".into(), expires_ms };
        t.issue("old".into(), ticket(50), 0);
        t.issue("new".into(), ticket(1_000), 100);
        assert_eq!(t.len(), 1, "issuing forgets expired tokens");
        assert!(t.check("new", "s1", "novnc", 999).is_ok());
        assert_eq!(t.check("new", "s1", "novnc", 1_000).map(|_| ()).unwrap_err().status, 403);
        assert!(t.check("new", "s2", "novnc", 500).is_err());
        assert!(t.check("new", "s1", "xvpvnc", 500).is_err());
        assert!(t.check("nope", "s1", "novnc", 500).is_err());
        assert_eq!(t.expire_all(500), 1);
        assert!(t.check("new", "s1", "novnc", 500).is_err());
    }

    #[test]
    fn only_changes_inside_the_asked_area_are_sent() {
        let a = Frame::new(8, 8, 0);
        let mut b = a.clone();
        b.fill(Rect { x: 6, y: 6, w: 2, h: 2 }, 1);
        let all = a.bounds();
        assert_eq!(changed(None, &a, all), Some(all));
        assert_eq!(changed(Some(&a), &a, all), None);
        assert_eq!(changed(Some(&a), &b, all), Some(Rect { x: 6, y: 6, w: 2, h: 2 }));
        assert_eq!(changed(Some(&a), &b, Rect { x: 0, y: 0, w: 4, h: 4 }), None);
        assert!(cursor_on(0) && !cursor_on(500) && cursor_on(1_000));
    }
}
