//! The control endpoint `/_sim/…` (no auth): state for tests, reset, faults and knobs at run
//! time. Answers plain JSON (no SCP envelope) since no SCP client talks to it.
//!
//! | Method & path | Effect |
//! |---|---|
//! | `GET /_sim/state` | servers (recycled too), tasks, volumes, pools with capacity, counts, requests per endpoint, faults, knobs |
//! | `GET /_sim/requests` | requests seen per endpoint pattern |
//! | `POST /_sim/reset` | back to the seeded cloud; clears faults, replays and counters, keeps tokens |
//! | `GET /_sim/faults` | the fault rules |
//! | `POST /_sim/faults` | adds one rule (JSON object, see `FaultRule`) or several (array) |
//! | `DELETE /_sim/faults` | removes every rule |
//! | `GET /_sim/config` / `PUT /_sim/config` | reads / changes `task_ms`, `ip_delay_ms`, `token_ttl_secs`, `get_per_minute`, `write_per_minute` |
//! | `POST /_sim/tokens/expire` | makes every issued token expired (next call → 401) |
//! | `POST /_sim/key/rotate` | a new platform key pair: passwords encrypted with the old public key are refused (400) |
//! | `PUT /_sim/azs/{id}/capacity` | `{"vcpu_total": N, "memory_total_mb": M}`: a pool's allocatable size (an admin growing or shrinking it) |
//! | `POST /_sim/servers/{id}/age` | `{"hours": N}`: the server was created, and its power changes happened, N hours earlier (usage history for graphs and demos) |

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::catalog;
use super::fault::FaultRule;
use super::http::{http_response, read_body};
use super::reply::{ApiError, Outcome, Query};
use super::servers::render;
use super::service::{Knobs, Shared, Sim};
use super::world::now_ms;

fn ok(v: Value) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(serde_json::to_vec(&v).unwrap_or_default())
}

fn err(shared: &Shared, e: ApiError) -> HttpResponse {
    let body = serde_json::to_vec(&e.body(shared.envelope)).unwrap_or_default();
    http_response(e.status, body.into(), e.retry_after)
}

/// Everything a test may want to assert on.
pub fn snapshot(sim: &Sim, now: i64) -> Value {
    let w = &sim.world;
    let mut servers: Vec<_> = w.servers.values().collect();
    servers.sort_by_key(|s| s.seq);
    let servers: Vec<Value> = servers
        .into_iter()
        .map(|s| {
            let mut v = render(w, s, now);
            v["recycled"] = json!(s.recycled);
            v["busy_task"] = json!(s.busy_task);
            v
        })
        .collect();
    let mut tasks: Vec<_> = w.tasks.values().collect();
    tasks.sort_by_key(|t| t.seq);
    let tasks: Vec<Value> = tasks.into_iter().map(|t| t.render(now)).collect();
    let azs = match catalog::azs(sim, &Query::default()) {
        Ok(Outcome::Data(v)) => v,
        _ => json!([]),
    };
    json!({
        "servers": servers,
        "tasks": tasks,
        "volumes": w.volumes.values().collect::<Vec<_>>(),
        "azs": azs,
        "counts": sim.counts(),
        "requests": sim.requests,
        "faults": sim.faults,
        "config": sim.knobs,
    })
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Rules {
    One(FaultRule),
    Many(Vec<FaultRule>),
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KnobPatch {
    task_ms: Option<u64>,
    ip_delay_ms: Option<u64>,
    token_ttl_secs: Option<u64>,
    get_per_minute: Option<u32>,
    write_per_minute: Option<u32>,
    console_ttl_secs: Option<u64>,
}

fn apply_knobs(knobs: &mut Knobs, p: KnobPatch) {
    knobs.task_ms = p.task_ms.unwrap_or(knobs.task_ms);
    knobs.ip_delay_ms = p.ip_delay_ms.unwrap_or(knobs.ip_delay_ms);
    knobs.token_ttl_secs = p.token_ttl_secs.unwrap_or(knobs.token_ttl_secs);
    knobs.get_per_minute = p.get_per_minute.unwrap_or(knobs.get_per_minute);
    knobs.write_per_minute = p.write_per_minute.unwrap_or(knobs.write_per_minute);
    knobs.console_ttl_secs = p.console_ttl_secs.unwrap_or(knobs.console_ttl_secs);
}

pub async fn handle(req: &HttpRequest, payload: web::Payload, shared: &Shared) -> HttpResponse {
    let body = match read_body(req, payload, shared.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return err(shared, e),
    };
    let parse = |what: &str| -> Result<Value, ApiError> {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("malformed {what}: {e}")))
    };
    let now = now_ms();
    let path = req.path().trim_end_matches('/');
    if req.method() == actix_web::http::Method::POST && path == "/_sim/key/rotate" {
        return match shared.rsa.rotate().await {
            Ok(()) => ok(json!({"rotated": true})),
            Err(e) => err(shared, e),
        };
    }
    let mut sim = shared.sim.lock();
    sim.advance(now);
    match (req.method().as_str(), path) {
        ("GET", "/_sim/state") => ok(snapshot(&sim, now)),
        ("GET", "/_sim/requests") => ok(json!(sim.requests)),
        ("POST", "/_sim/reset") => {
            sim.reset();
            ok(json!({"reset": true}))
        }
        ("GET", "/_sim/faults") => ok(json!(sim.faults)),
        ("DELETE", "/_sim/faults") => {
            sim.faults.clear();
            ok(json!({"faults": []}))
        }
        ("POST", "/_sim/faults") => {
            let rules = parse("fault rule").and_then(|v| {
                serde_json::from_value::<Rules>(v).map_err(|e| ApiError::bad_request(format!("bad fault rule: {e}")))
            });
            let rules = match rules {
                Ok(Rules::One(r)) => vec![r],
                Ok(Rules::Many(r)) => r,
                Err(e) => return err(shared, e),
            };
            let compiled: Result<Vec<_>, _> = rules.into_iter().map(FaultRule::compile).collect();
            match compiled {
                Ok(mut c) => {
                    sim.faults.append(&mut c);
                    ok(json!(sim.faults))
                }
                Err(e) => err(shared, ApiError::bad_request(e)),
            }
        }
        ("GET", "/_sim/config") => ok(json!(sim.knobs)),
        ("PUT", "/_sim/config") => {
            let patch = parse("config").and_then(|v| {
                serde_json::from_value::<KnobPatch>(v).map_err(|e| ApiError::bad_request(format!("bad config: {e}")))
            });
            match patch {
                Ok(p) => {
                    apply_knobs(&mut sim.knobs, p);
                    shared.limits.set(sim.knobs.get_per_minute, sim.knobs.write_per_minute);
                    ok(json!(sim.knobs))
                }
                Err(e) => err(shared, e),
            }
        }
        ("POST", "/_sim/tokens/expire") => {
            let n = sim.tokens.len();
            for grant in sim.tokens.values_mut() {
                grant.expires_ms = now;
            }
            let consoles = sim.consoles.expire_all(now);
            ok(json!({"expired": n, "consoles": consoles}))
        }
        ("PUT", p) if p.starts_with("/_sim/azs/") && p.ends_with("/capacity") => {
            let id = &p["/_sim/azs/".len()..p.len() - "/capacity".len()];
            let patch = match parse("capacity") {
                Ok(v) => v,
                Err(e) => return err(shared, e),
            };
            let Some(az) = sim.world.azs.iter_mut().find(|a| a.id == id) else {
                return err(shared, ApiError::not_found("az", id));
            };
            if let Some(n) = patch.get("vcpu_total").and_then(Value::as_u64) {
                az.vcpu_total = n;
            }
            if let Some(n) = patch.get("memory_total_mb").and_then(Value::as_u64) {
                az.memory_total_mb = n;
            }
            ok(json!({"id": id, "vcpu_total": az.vcpu_total, "memory_total_mb": az.memory_total_mb}))
        }
        ("POST", p) if p.starts_with("/_sim/servers/") && p.ends_with("/age") => {
            let id = &p["/_sim/servers/".len()..p.len() - "/age".len()];
            let hours = match parse("age").map(|v| v.get("hours").and_then(Value::as_u64)) {
                Ok(Some(h)) if h <= 24 * 365 => h,
                Ok(_) => return err(shared, ApiError::bad_request("give {\"hours\": N}, N up to 8760")),
                Err(e) => return err(shared, e),
            };
            let Some(server) = sim.world.servers.get_mut(id) else {
                return err(shared, ApiError::not_found("server", id));
            };
            let shift = i64::try_from(hours).unwrap_or(0).saturating_mul(3_600_000);
            server.created_ms = server.created_ms.saturating_sub(shift);
            for mark in &mut server.power_log {
                mark.at = mark.at.saturating_sub(shift);
            }
            ok(json!({"id": id, "created_ms": server.created_ms}))
        }
        _ => err(shared, ApiError::no_route(req.method().as_str(), path)),
    }
}
