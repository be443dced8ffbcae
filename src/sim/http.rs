//! The request pipeline: count, inject faults, read the body, authenticate, rate-limit,
//! replay or run the handler, answer in SCP's envelope.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::Value;

use super::auth::{authenticate, login, public_key_data};
use super::catalog;
use super::console;
use super::control;
use super::fault::Verdict;
use super::input::Ctx;
use super::metrics;
use super::reply::{ApiError, ApiResult, Outcome, Query, success_body};
use super::router::{Resolved, Route, resolve};
use super::server_ops;
use super::servers;
use super::service::{Replay, Shared, Sim};
use super::world::now_ms;

/// A duplicate of the connection's socket, kept so a fault can close the connection under
/// the HTTP stack without answering (the client sees a reset, not a response).
#[derive(Clone)]
pub struct ConnSocket(pub Arc<std::net::TcpStream>);

/// Closes the connection of `req` without a response.
fn drop_connection(req: &HttpRequest) {
    if let Some(sock) = req.conn_data::<ConnSocket>() {
        let _ = sock.0.shutdown(std::net::Shutdown::Both);
    }
}

/// Turns a result into the response: SCP envelopes, `Retry-After` on 429.
pub fn respond(shared: &Shared, result: ApiResult) -> (u16, Bytes, Option<u64>) {
    match result {
        Ok(Outcome::NoContent) => (204, Bytes::new(), None),
        Ok(Outcome::Data(data)) => (200, to_bytes(&success_body(shared.envelope, data)), None),
        Err(e) => (e.status, to_bytes(&e.body(shared.envelope)), e.retry_after),
    }
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

pub fn http_response(status: u16, body: Bytes, retry_after: Option<u64>) -> HttpResponse {
    let mut resp = HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    if let Some(secs) = retry_after {
        resp.insert_header(("Retry-After", secs.to_string()));
    }
    if status == 204 {
        return resp.finish();
    }
    resp.content_type("application/json").body(body)
}

pub(super) fn error_response(shared: &Shared, e: ApiError) -> HttpResponse {
    let (status, body, retry) = respond(shared, Err(e));
    http_response(status, body, retry)
}

/// Reads the body, refusing more than `limit` bytes (413) as soon as it is known.
pub async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Bytes, ApiError> {
    let declared =
        req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Counts the request and rolls the first matching fault rule.
pub(super) fn observe(sim: &mut Sim, method: &str, path: &str, pattern: &str) -> Verdict {
    match sim.requests.get_mut(pattern) {
        Some(n) => *n += 1,
        None => {
            sim.requests.insert(pattern.to_string(), 1);
        }
    }
    if sim.faults.is_empty() {
        return Verdict::default();
    }
    let Sim { faults, rng, .. } = sim;
    faults.iter_mut().find(|f| f.matches(method, path)).map(|f| f.roll(rng)).unwrap_or_default()
}

/// Carries out a fault verdict: waits its latency, then drops the connection or answers 429
/// or the injected error status. `Some` answer when the request must not run.
pub(super) async fn faulted(req: &HttpRequest, shared: &Shared, verdict: &Verdict) -> Option<HttpResponse> {
    if verdict.latency_ms > 0 {
        actix_web::rt::time::sleep(std::time::Duration::from_millis(verdict.latency_ms)).await;
    }
    if verdict.drop {
        drop_connection(req);
        // Whatever is written now goes nowhere; the client has already seen the connection end.
        return Some(HttpResponse::InternalServerError().finish());
    }
    if verdict.force_429 {
        return Some(error_response(shared, ApiError::rate_limited(1)));
    }
    if let Some(status) = verdict.error_status {
        let message = format!("injected fault: HTTP {status}");
        return Some(error_response(shared, ApiError::new(status, super::reply::codes::INJECTED, message)));
    }
    None
}

/// The single actix handler: everything goes through here.
pub async fn dispatch(req: HttpRequest, payload: web::Payload, shared: web::Data<Shared>) -> HttpResponse {
    let path = req.path().to_string();
    if path == "/_sim" || path.starts_with("/_sim/") {
        return control::handle(&req, payload, &shared).await;
    }
    if path.starts_with(console::PREFIX) {
        return console::open(&req, payload, &shared).await;
    }
    let method = req.method().as_str().to_string();
    let resolved = resolve(&method, &path);
    let pattern: String = match &resolved {
        Resolved::Found(_, p) => (*p).to_string(),
        Resolved::WrongMethod | Resolved::NotFound => format!("{method} (unmatched)"),
    };
    let verdict = observe(&mut shared.sim.lock(), &method, &path, &pattern);
    if let Some(answer) = faulted(&req, &shared, &verdict).await {
        return answer;
    }
    let route = match resolved {
        Resolved::Found(route, _) => route,
        Resolved::WrongMethod => return error_response(&shared, ApiError::method_not_allowed(&method, &path)),
        Resolved::NotFound => return error_response(&shared, ApiError::no_route(&method, &path)),
    };
    let body = match read_body(&req, payload, shared.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return error_response(&shared, e),
    };
    let key = if route.needs_key() {
        match shared.rsa.get().await {
            Ok(k) => Some(k),
            Err(e) => return error_response(&shared, e),
        }
    } else {
        None
    };
    let peer = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let client_token = match req.method().as_str() {
        "POST" | "PUT" => req.headers().get("x-client-token").and_then(|v| v.to_str().ok()).map(str::to_string),
        _ => None,
    };
    let now = now_ms();
    let mut sim = shared.sim.lock();
    sim.advance(now);
    let identity = if route.public() {
        Ok(format!("ip:{peer}"))
    } else {
        authenticate(&req, &body, &shared.creds, &sim.tokens, shared.max_clock_skew_secs, now)
    };
    let identity = match identity {
        Ok(id) => id,
        Err(e) => {
            drop(sim);
            return error_response(&shared, e);
        }
    };
    if let Err(wait) = shared.limits.check(&method, &identity) {
        drop(sim);
        return error_response(&shared, ApiError::rate_limited(wait));
    }
    let replay_key = client_token.filter(|t| !t.is_empty()).map(|t| (identity.clone(), t));
    if let Some(r) = replay_key.as_ref().and_then(|k| sim.replays.get(k)) {
        let same = r.method == method && r.path == path;
        let answer = if same {
            http_response(r.status, r.body.clone(), None)
        } else {
            let message = format!(
                "X-Client-Token was already used for {} {}; use a new token for a new request",
                r.method, r.path
            );
            error_response(&shared, ApiError::conflict(message))
        };
        drop(sim);
        return answer;
    }
    let ctx = Ctx {
        now,
        identity: &identity,
        user_ip: &peer,
        query: Query::parse(req.query_string()),
        body: &body,
        fail_task: verdict.fail_task,
        rsa: key.as_deref(),
        base_url: &shared.base_url,
    };
    let result = handle(&mut sim, &shared, &ctx, route);
    if method != "GET" && result.is_ok() {
        sim.dirty = true;
    }
    let (status, bytes, retry) = respond(&shared, result);
    if let Some(k) = replay_key
        && (200..300).contains(&status)
    {
        let replay = Replay { method, path, status, body: bytes.clone(), at: now };
        sim.remember(k, replay);
    }
    drop(sim);
    http_response(status, bytes, retry)
}

/// Runs one route's handler under the lock.
fn handle(sim: &mut Sim, shared: &Shared, ctx: &Ctx<'_>, route: Route<'_>) -> ApiResult {
    let q = &ctx.query;
    let w = &sim.world;
    match route {
        Route::PublicKey => {
            let key = ctx.rsa.ok_or_else(|| ApiError::internal("platform key not ready"))?;
            Ok(Outcome::Data(public_key_data(key)))
        }
        Route::Authenticate => {
            let key = ctx.rsa.ok_or_else(|| ApiError::internal("platform key not ready"))?;
            let body: Value = serde_json::from_slice(ctx.body)
                .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
            let ttl = sim.knobs.token_ttl_secs;
            login(key, &body, &shared.creds, &mut sim.tokens, ttl, ctx.now).map(Outcome::Data)
        }
        Route::ListServers => servers::list(sim, ctx),
        Route::CreateServer => servers::create(sim, ctx),
        Route::GetServer { id, detailed } => servers::get(sim, ctx, id, detailed),
        Route::UpdateServer(id) => servers::update(sim, ctx, id),
        Route::DeleteServer(id) => servers::delete(sim, ctx, id),
        Route::Power(id, op) => server_ops::simple(sim, ctx, id, op),
        Route::Action(id) => server_ops::action(sim, ctx, id),
        Route::Batch => server_ops::batch(sim, ctx),
        Route::Restore(id) => servers::restore(sim, ctx, id),
        Route::Clone(id) => servers::clone(sim, ctx, id),
        Route::Console(id) => server_ops::console(sim, ctx, id),
        Route::Password(id) => server_ops::password(sim, ctx, id),
        Route::Migrate(id) => server_ops::migrate(sim, ctx, id),
        Route::Tasks => catalog::tasks(sim, ctx),
        Route::Task(id) => catalog::task(sim, ctx, id),
        Route::Azs => catalog::azs(sim, q),
        Route::Az(id) => catalog::az(sim, id),
        Route::Overview => catalog::overview(sim, q),
        Route::StorageTags => catalog::storage_tags(sim, q),
        Route::Images => catalog::images(sim, q),
        Route::Image(id) => catalog::one(&w.images, "image", id),
        Route::Vpcs => catalog::list(&w.vpcs, q, &["az_id", "status", "shared"]),
        Route::Vpc(id) => catalog::one(&w.vpcs, "vpc", id),
        Route::Subnets => catalog::list(&w.subnets, q, &["az_id", "vpc_id", "status"]),
        Route::Subnet(id) => catalog::one(&w.subnets, "subnet", id),
        Route::FloatingIps => catalog::list(&w.floating_ips, q, &["project_id", "floatingip_pool_id", "floating_ip"]),
        Route::FloatingIp(id) => catalog::one(&w.floating_ips, "floating ip", id),
        Route::FloatingIpPools => catalog::bare(&w.floating_ip_pools, q, &[]),
        Route::Volumes => catalog::volumes(sim, q),
        Route::CreateVolume => catalog::create_volume(sim, ctx),
        Route::Volume(id) => catalog::volume(sim, id),
        Route::ResizeVolume(id) => catalog::resize_volume(sim, ctx, id),
        Route::DeleteVolume(id) => catalog::delete_volume(sim, ctx, id),
        Route::Projects => catalog::list(&w.projects, q, &["enabled"]),
        Route::Project(id) => catalog::one(&w.projects, "project", id),
        Route::Hosts => catalog::hosts(sim, q),
        Route::SystemVersion => catalog::system_version(),
        Route::Maintenance => catalog::maintenance(),
        Route::Platform => catalog::platform(ctx),
        Route::Licenses => catalog::licenses(),
        Route::Metrics(id) => metrics::query(sim, ctx, id),
    }
}
