//! The admin web UI: server-rendered pages (`templates/admin/`), forms that work without
//! JavaScript, and live updates through [`super::events`] when it runs.
//!
//! Every handler takes a [`UiUser`] and checks its role before it reads or acts: viewers read,
//! operators act on VPSs, admins configure. Every form carries the session's CSRF token.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::charts;
use super::session::{CsrfForm, UiError, UiUser, check_csrf};
use crate::actors::gateway::{GetGatewayStatus, ListImages, ListNetworks, ListStorageTags, ListSubnets, ListZones};
use crate::admin::{self, Action, ActivityQuery, ManualVps, VpsQuery};
use crate::auth::{Principal, Role};
use crate::lifecycle::store::Level;
use crate::lifecycle::{Template, kpi};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(dashboard))
        .route("/vps", web::get().to(vps_list))
        .route("/vps/new", web::get().to(vps_new_form))
        .route("/vps/new", web::post().to(vps_create))
        .route("/vps/{id}", web::get().to(vps_page))
        .route("/vps/{id}/action", web::post().to(vps_action))
        .route("/vps/{id}/reveal", web::post().to(vps_reveal))
        .route("/vps/{id}/upgrade-link", web::post().to(upgrade_link))
        .route("/upgrade-links/{id}/revoke", web::post().to(upgrade_link_revoke))
        .route("/operations/{id}/retry", web::post().to(op_retry))
        .route("/operations/{id}/approve", web::post().to(op_approve))
        .route("/operations/{id}/reject", web::post().to(op_reject))
        .route("/activity", web::get().to(activity))
        .route("/inbox", web::get().to(inbox))
        .route("/inbox/{id}", web::get().to(inbox_event))
        .route("/inbox/{id}/replay", web::post().to(inbox_replay))
        .route("/templates", web::get().to(templates))
        .route("/templates/edit", web::get().to(template_form))
        .route("/templates", web::post().to(template_save))
        .route("/templates/map", web::post().to(template_map))
        .route("/sources", web::get().to(sources))
        .route("/sources/{name}/test", web::post().to(source_test))
        .route("/notifications", web::get().to(notifications))
        .route("/settings", web::get().to(settings))
        .route("/settings/users", web::post().to(user_add))
        .route("/settings/users/{name}", web::post().to(user_change))
        .route("/settings/tokens", web::post().to(token_create))
        .route("/settings/tokens/{id}/revoke", web::post().to(token_revoke))
        .route("/settings/smtp-test", web::post().to(smtp_test))
        .route("/settings/config", web::post().to(settings_save))
        .route("/account", web::get().to(account))
        .route("/account/2fa/begin", web::post().to(totp_begin))
        .route("/account/2fa/confirm", web::post().to(totp_confirm))
        .route("/account/2fa/disable", web::post().to(totp_disable));
}

type Page = Result<HttpResponse, UiError>;

fn anyhow_internal(e: anyhow::Error) -> UiError {
    UiError::internal(format!("{e:#}"))
}

/// Renders `template` inside the layout.
fn render(state: &AppState, user: &Principal, template: &str, title: &str, nav: &str, ctx: Value) -> Page {
    let body = state.templates.render(template, &ctx).map_err(anyhow_internal)?;
    let layout = json!({
        "title": title, "body": body, "user": user, "nav": { nav: true },
        "can_operate": user.can(Role::Operator), "is_admin": user.can(Role::Admin),
        "version": crate::VERSION,
    });
    let html = state.templates.render("admin/layout.html", &layout).map_err(anyhow_internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(html))
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, to.to_string())).finish()
}

/// Redirects with a flash message in the query (`?ok=` or `?err=`).
/// A page that shows a new secret once, as the answer to the POST that made it: never in a
/// redirect's query string, where it would stay in the history and in proxy logs.
fn shown_once(state: &AppState, user: &Principal, heading: &str, message: &str, secret: &str, back: &str) -> Page {
    let ctx = json!({ "heading": heading, "message": message, "secret": secret, "back": back });
    render(state, user, "admin/shown_once.html", heading, "settings", ctx)
}

fn redirect_msg(to: &str, ok: bool, msg: &str) -> HttpResponse {
    let sep = if to.contains('?') { '&' } else { '?' };
    let key = if ok { "ok" } else { "err" };
    redirect(&format!("{to}{sep}{key}={}", url::form_urlencoded::byte_serialize(msg.as_bytes()).collect::<String>()))
}

#[derive(Deserialize, Default)]
struct Flash {
    #[serde(default)]
    ok: String,
    #[serde(default)]
    err: String,
}

fn flash(req: &HttpRequest) -> Value {
    let f = web::Query::<Flash>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    json!({ "ok": f.ok, "err": f.err })
}

// ---------------------------------------------------------------------------------------
// Dashboard.

async fn dashboard(state: web::Data<AppState>, user: UiUser) -> Page {
    let store = &state.store;
    let st = store.clone();
    let counts = state
        .vps_counts
        .get(move || async move { admin::counts_by_state(&st).await })
        .await
        .map_err(anyhow_internal)?;
    let total: u64 = counts.iter().map(|c| c.1).sum();
    let kpis = kpi::compute(store).await.map_err(anyhow_internal)?;
    let webhooks = admin::webhook_volume(store).await.map_err(anyhow_internal)?;
    let ops = admin::operation_series(store).await.map_err(anyhow_internal)?;
    let failures = admin::recent_failures(store, 10).await.map_err(anyhow_internal)?;
    let held = admin::held_operations(store).await.map_err(anyhow_internal)?;
    let parked = admin::inbox(store, "parked", 1).await.map_err(anyhow_internal)?;
    let templates = admin::templates(store).await.map_err(anyhow_internal)?;
    let gateway = state.handles.gateway.send(GetGatewayStatus).await.ok();
    let (breaker, in_flight, wait_ms) = gateway_figures(&state.metrics);
    let mut setup = Vec::new();
    if state.config.provider.sangfor.base_url.is_empty() {
        setup.push("Connect SCP: set provider.sangfor.base_url and its keys in appliance.toml, then run `vmauto provider check`.");
    }
    if templates.is_empty() {
        setup.push("Create a template (Templates → New template) so plans have something to provision.");
    }
    if state.config.sources.is_empty() {
        setup.push("Add a billing source ([sources.<name>] in appliance.toml) and point its webhook at /webhooks/<name>/<token>.");
    }
    if state.config.smtp.host.is_empty() {
        setup.push("Set up SMTP so admins hear about failures by email within seconds.");
    }
    let fmt_secs = |s: Option<f64>| s.map_or_else(|| "—".to_string(), |v| format!("{v:.1} s"));
    let ctx = json!({
        "counts": counts.iter().map(|(s, n)| json!({ "state": s, "n": n })).collect::<Vec<_>>(),
        "total": total,
        "kpis": {
            "success": format!("{:.1} %", kpis.automation_success_rate * 100.0),
            "errors": format!("{:.1} %", kpis.error_rate * 100.0),
            "provisioning": fmt_secs(kpis.avg_provisioning_secs),
            "deprovisioning": fmt_secs(kpis.avg_deprovisioning_secs),
            "webhooks": format!("{:.2}", kpis.webhooks_per_minute),
            "manual": kpis.manual_interventions,
        },
        "webhook_chart": charts::bars(&webhooks, true, "", "No webhooks in the last 24 hours."),
        "provisioning_chart": charts::bars(&ops[..2], false, " s", "No VPS was provisioned or deleted in the last 24 hours."),
        "failure_chart": charts::bars(&ops[2..], true, "", "No operation failed in the last 24 hours."),
        "failures": failures,
        "held": held,
        "parked": parked.rows,
        "parked_total": parked.total,
        "gateway": gateway,
        "breaker": match breaker as i64 { 0 => "closed", 1 => "half-open", _ => "open" },
        "rate_wait_ms": format!("{wait_ms:.1}"),
        "in_flight": in_flight as i64,
        "guard_limit": state.config.policy.max_destructive_per_hour,
        "csrf": user.0.csrf, "is_admin": user.0.can(Role::Admin),
        "setup": setup,
    });
    render(&state, &user.0, "admin/dashboard.html", "Dashboard", "dashboard", ctx)
}

/// The SCP gateway's breaker state, requests in flight and mean rate-limit wait (ms), read
/// from the metrics registry.
fn gateway_figures(metrics: &crate::telemetry::metrics::Metrics) -> (f64, f64, f64) {
    use crate::telemetry::metrics::names;
    let (mut breaker, mut in_flight, mut sum, mut count) = (0.0, 0.0, 0.0, 0u64);
    for mf in metrics.registry.gather() {
        let name = mf.name();
        for m in mf.get_metric() {
            if name == names::SCP_BREAKER_STATE {
                breaker = m.get_gauge().get_value();
            } else if name == names::SCP_IN_FLIGHT {
                in_flight = m.get_gauge().get_value();
            } else if name == names::SCP_RATE_LIMIT_WAIT {
                sum += m.get_histogram().get_sample_sum();
                count += m.get_histogram().get_sample_count();
            }
        }
    }
    (breaker, in_flight, if count > 0 { sum / count as f64 * 1000.0 } else { 0.0 })
}

// ---------------------------------------------------------------------------------------
// VPS.

async fn vps_list(state: web::Data<AppState>, user: UiUser, q: web::Query<VpsQuery>, req: HttpRequest) -> Page {
    let q = q.into_inner();
    let page = admin::list_vps(&state.store, &q).await.map_err(anyhow_internal)?;
    let templates = admin::templates(&state.store).await.map_err(anyhow_internal)?;
    let mut base = q.clone();
    base.page = 0;
    let qs = serde_urlencoded(&base);
    let ctx = json!({
        "filtered": !q.q.is_empty() || !q.state.is_empty() || !q.template.is_empty() || !q.source.is_empty(),
        "page": page, "q": q, "qs": qs, "flash": flash(&req), "can_operate": user.0.can(Role::Operator),
        "prev": (page.page > 1).then(|| page.page - 1), "next": (page.page < page.pages).then(|| page.page + 1),
        "states": ["live", "past", "pending", "provisioning", "active", "suspended", "resizing", "deleting", "deleted", "failed"],
        "templates": templates.iter().map(|t| t["name"].clone()).collect::<Vec<_>>(),
        "sources": state.config.sources.keys().cloned().chain(["manual".to_string()]).collect::<Vec<_>>(),
    });
    render(&state, &user.0, "admin/vps_list.html", "VPS", "vps", ctx)
}

fn serde_urlencoded<T: Serialize>(v: &T) -> String {
    let value = serde_json::to_value(v).unwrap_or_default();
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    if let Some(obj) = value.as_object() {
        for (k, v) in obj {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            if !s.is_empty() && s != "0" {
                out.append_pair(k, &s);
            }
        }
    }
    out.finish()
}

async fn vps_page(state: web::Data<AppState>, user: UiUser, id: web::Path<String>, req: HttpRequest) -> Page {
    let Some(vps) = admin::vps_detail(&state.store, &id).await.map_err(anyhow_internal)? else {
        return Err(UiError::status(
            StatusCode::NOT_FOUND,
            "There is no VPS with this id. It may have been typed wrong.",
        ));
    };
    let timeline = admin::vps_timeline(&state.store, &id).await.map_err(anyhow_internal)?;
    let now = chrono::Utc::now();
    let links: Vec<Value> = crate::upgrade::links::links_of_vps(&state.store, &id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|l| json!({ "id": l.id, "state": l.state(now), "issued_by": l.issued_by, "created_at": l.created_at.to_rfc3339(), "expires_at": l.expires_at.to_rfc3339() }))
        .collect();
    let live = vps["state"] != "deleted";
    let dead_ops: Vec<&Value> = timeline.iter().filter(|t| t["kind"] == "operation" && t["state"] == "dead").collect();
    // The images a rebuild may choose: the template's own first, then its allowed ones.
    let mut rebuild_images: Vec<Value> = Vec::new();
    for img in std::iter::once(&vps["template_image"]).chain(vps["allowed_images"].as_array().into_iter().flatten()) {
        if let Some(img) = img.as_str().filter(|i| !i.is_empty())
            && !rebuild_images.iter().any(|r| r["id"] == img)
        {
            rebuild_images.push(json!({ "id": img, "current": vps["image_id"] == img }));
        }
    }
    let ctx = json!({
        "vps": vps, "timeline": timeline, "live": live, "flash": flash(&req), "dead_ops": dead_ops,
        "csrf": user.0.csrf, "can_operate": user.0.can(Role::Operator) && live,
        "upgrades": state.config.stripe.enabled, "links": links, "rebuild_images": rebuild_images,
    });
    let title = vps["name"].as_str().unwrap_or("VPS").to_string();
    render(&state, &user.0, "admin/vps_detail.html", &title, "vps", ctx)
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    _csrf: String,
    action: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    cores: Option<u32>,
    #[serde(default)]
    memory_mb: Option<u64>,
    #[serde(default)]
    disk_gb: Option<u64>,
    #[serde(default)]
    image_id: String,
}

async fn vps_action(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<ActionForm>,
) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    let back = format!("/vps/{id}");
    let Some(action) = Action::parse(&form.action) else {
        return Ok(redirect_msg(&back, false, "Unknown action."));
    };
    if matches!(action, Action::Delete | Action::Rebuild) {
        let vps = admin::vps_detail(&state.store, &id).await.map_err(anyhow_internal)?.unwrap_or_default();
        if form.confirm.trim() != vps["name"].as_str().unwrap_or_default() {
            return Ok(redirect_msg(&back, false, &format!("To {}, type the VPS's name exactly.", form.action)));
        }
    }
    let params = match action {
        Action::Resize => json!({ "spec": {
            "cores": form.cores.unwrap_or(0), "memory_mb": form.memory_mb.unwrap_or(0), "disk_gb": form.disk_gb.unwrap_or(0)
        }}),
        Action::Rebuild => json!({ "image_id": form.image_id }),
        _ => json!({}),
    };
    match admin::request_action(&state.store, &state.handles.registry, &id, action, params, &p.actor()).await {
        Ok(_) => Ok(redirect_msg(&back, true, &format!("{} queued; progress shows below.", form.action))),
        Err(e) => Ok(redirect_msg(&back, false, &format!("{e:#}"))),
    }
}

async fn vps_reveal(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    let rows: Vec<Value> = state
        .store
        .query_one("SELECT name, root_password FROM type::record('vps', $id)", json!({ "id": *id }), 0)
        .await
        .map_err(anyhow_internal)?;
    let Some(row) = rows.into_iter().next() else {
        return Err(UiError::status(StatusCode::NOT_FOUND, "There is no VPS with this id."));
    };
    let Some(sealed) = row["root_password"].as_str() else {
        return Ok(redirect_msg(&format!("/vps/{id}"), false, "This VPS has no stored password yet."));
    };
    let password = state.sealer.open(sealed, &crate::secrets::root_password_place(&id)).map_err(anyhow_internal)?;
    state
        .store
        .record_activity(
            Level::Warning,
            &p.actor(),
            Some(&id),
            &format!("{} revealed the root password", p.actor()),
            json!({}),
        )
        .await
        .map_err(anyhow_internal)?;
    let ctx = json!({ "id": *id, "name": row["name"], "password": password.expose() });
    render(&state, p, "admin/reveal.html", "Root password", "vps", ctx)
}

async fn vps_new_form(state: web::Data<AppState>, user: UiUser, req: HttpRequest) -> Page {
    let p = user.require(Role::Operator)?;
    let templates = admin::templates(&state.store).await.map_err(anyhow_internal)?;
    let ctx = json!({ "templates": templates, "csrf": p.csrf, "flash": flash(&req) });
    render(&state, p, "admin/vps_new.html", "New VPS", "vps", ctx)
}

#[derive(Deserialize)]
struct NewVpsForm {
    #[serde(default)]
    _csrf: String,
    #[serde(flatten)]
    vps: ManualVps,
}

async fn vps_create(state: web::Data<AppState>, user: UiUser, form: web::Form<NewVpsForm>) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    match admin::create_vps(&state.store, &state.handles.registry, &form.vps, &p.actor()).await {
        Ok(id) => Ok(redirect_msg(&format!("/vps/{id}"), true, "VPS queued for creation; progress shows below.")),
        Err(e) => Ok(redirect_msg("/vps/new", false, &format!("{e:#}"))),
    }
}

async fn op_retry(state: web::Data<AppState>, user: UiUser, id: web::Path<String>, form: web::Form<CsrfForm>) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    match admin::retry_operation(&state.store, Some(&state.handles.registry), &id, &p.actor()).await {
        Ok(vps) => Ok(redirect_msg(&format!("/vps/{vps}"), true, "Retry started: a fresh series of attempts.")),
        Err(e) => Ok(redirect_msg("/", false, &format!("{e:#}"))),
    }
}

async fn decide(state: &AppState, user: &UiUser, id: &str, form: &CsrfForm, approve: bool) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    match admin::decide_held(&state.store, &state.handles.registry, id, approve, &p.actor()).await {
        Ok(()) => Ok(redirect_msg("/", true, if approve { "Approved." } else { "Rejected." })),
        Err(e) => Ok(redirect_msg("/", false, &format!("{e:#}"))),
    }
}

async fn op_approve(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    decide(&state, &user, &id, &form, true).await
}

async fn op_reject(state: web::Data<AppState>, user: UiUser, id: web::Path<String>, form: web::Form<CsrfForm>) -> Page {
    decide(&state, &user, &id, &form, false).await
}

// ---------------------------------------------------------------------------------------
// Logs.

async fn activity(state: web::Data<AppState>, user: UiUser, q: web::Query<ActivityQuery>) -> Page {
    let mut q = q.into_inner();
    if Level::parse(&q.level).is_none() {
        q.level.clear(); // an unknown level in a hand-made address lists every level
    }
    let page = admin::activity(&state.store, &q).await.map_err(anyhow_internal)?;
    let mut base = q.clone();
    base.page = 0;
    let ctx = json!({
        "page": page, "q": q, "qs": serde_urlencoded(&base),
        "prev": (page.page > 1).then(|| page.page - 1), "next": (page.page < page.pages).then(|| page.page + 1),
    });
    render(&state, &user.0, "admin/activity.html", "Activity", "activity", ctx)
}

#[derive(Deserialize)]
struct InboxQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    page: u64,
}

async fn inbox(state: web::Data<AppState>, user: UiUser, q: web::Query<InboxQuery>) -> Page {
    let page = admin::inbox(&state.store, &q.status, q.page).await.map_err(anyhow_internal)?;
    let ctx = json!({
        "page": page, "status": q.status,
        "statuses": ["processed", "parked", "failed", "rejected", "stale", "pending"],
        "prev": (page.page > 1).then(|| page.page - 1), "next": (page.page < page.pages).then(|| page.page + 1),
    });
    render(&state, &user.0, "admin/inbox.html", "Webhook inbox", "inbox", ctx)
}

async fn inbox_event(state: web::Data<AppState>, user: UiUser, id: web::Path<String>, req: HttpRequest) -> Page {
    let Some(mut ev) = admin::inbox_event(&state.store, &id).await.map_err(anyhow_internal)? else {
        return Err(UiError::status(StatusCode::NOT_FOUND, "There is no inbox event with this id."));
    };
    if !user.0.can(Role::Admin) {
        admin::hide_raw_request(&mut ev);
    }
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let body = match &ev["body"] {
        Value::String(s) => serde_json::from_str::<Value>(s).map_or_else(|_| s.clone(), |v| pretty(&v)),
        other => pretty(other),
    };
    ev["body_pretty"] = json!(body);
    ev["body_kept"] = json!(ev["body"].as_str().map_or(0, str::len));
    ev["headers_pretty"] = json!(pretty(&ev["headers"]));
    ev["outcomes_pretty"] = json!(pretty(&ev["outcomes"]));
    ev["events_pretty"] = json!(pretty(&ev["events"]));
    let ctx = json!({ "ev": ev, "csrf": user.0.csrf, "can_operate": user.0.can(Role::Operator), "flash": flash(&req) });
    render(&state, &user.0, "admin/inbox_event.html", "Inbox event", "inbox", ctx)
}

async fn inbox_replay(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    let back = format!("/inbox/{id}");
    Ok(match super::replay_inbox(&state, &id, &p.actor()).await {
        Ok(outcomes) => {
            let summary: Vec<String> = outcomes.iter().map(|o| format!("{}: {}", o.status, o.detail)).collect();
            redirect_msg(&back, true, &format!("Replayed: {}", summary.join("; ")))
        }
        Err(e) => redirect_msg(&back, false, &format!("Replay failed: {e:#}")),
    })
}

async fn notifications(state: web::Data<AppState>, user: UiUser) -> Page {
    let rows = admin::notifications(&state.store, 200).await.map_err(anyhow_internal)?;
    let held = admin::held_operations(&state.store).await.map_err(anyhow_internal)?;
    let ctx = json!({ "rows": rows, "held": held, "csrf": user.0.csrf, "is_admin": user.0.can(Role::Admin) });
    render(&state, &user.0, "admin/notifications.html", "Notifications", "notifications", ctx)
}

// ---------------------------------------------------------------------------------------
// Templates and sources.

async fn templates(state: web::Data<AppState>, user: UiUser, req: HttpRequest) -> Page {
    let rows = admin::templates(&state.store).await.map_err(anyhow_internal)?;
    let ctx = json!({
        "rows": rows, "csrf": user.0.csrf, "is_admin": user.0.can(Role::Admin), "flash": flash(&req),
        "sources": state.config.sources.keys().collect::<Vec<_>>(),
    });
    render(&state, &user.0, "admin/templates.html", "Templates", "templates", ctx)
}

#[derive(Deserialize)]
struct TemplateQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    az: String,
}

/// The new/edit form, with pickers filled from SCP through the gateway (a field falls back to
/// free text when SCP cannot be asked).
async fn template_form(
    state: web::Data<AppState>,
    user: UiUser,
    q: web::Query<TemplateQuery>,
    req: HttpRequest,
) -> Page {
    let p = user.require(Role::Admin)?;
    let all = admin::templates(&state.store).await.map_err(anyhow_internal)?;
    let current = all.into_iter().find(|t| t["name"] == json!(q.name)).unwrap_or_else(|| {
        json!({ "name": "", "cores": 1, "memory_mb": 1024, "disk_gb": 20, "name_pattern": "vps-{id}", "enabled": true })
    });
    let az = if q.az.is_empty() { current["az_id"].as_str().unwrap_or_default().to_string() } else { q.az.clone() };
    let gw = &state.handles.gateway;
    let mut problems = Vec::new();
    let zones = pick(gw.send(ListZones).await, "AZs", &mut problems);
    let (mut images, mut tags, mut vpcs, mut subnets) = (json!([]), json!([]), json!([]), json!([]));
    if !az.is_empty() {
        images = pick(gw.send(ListImages { zone_id: Some(az.clone()) }).await, "images", &mut problems);
        tags = pick(gw.send(ListStorageTags { zone_id: az.clone() }).await, "storage tags", &mut problems);
        vpcs = pick(gw.send(ListNetworks { zone_id: Some(az.clone()) }).await, "VPCs", &mut problems);
        let vpc = current["vpc_id"].as_str().unwrap_or_default().to_string();
        if !vpc.is_empty() {
            subnets = pick(gw.send(ListSubnets { network_id: vpc }).await, "subnets", &mut problems);
        }
    }
    let ctx = json!({
        "t": current, "az": az, "zones": zones, "images": images, "tags": tags, "vpcs": vpcs, "subnets": subnets,
        "problems": problems, "csrf": p.csrf, "flash": flash(&req), "editing": !q.name.is_empty(),
    });
    render(&state, p, "admin/template_form.html", "Template", "templates", ctx)
}

/// A picker's choices from the gateway's answer; a failure becomes a note on the page (the
/// field falls back to free text) and no choices.
fn pick<T: Serialize, E: std::fmt::Display>(
    answer: Result<Result<Vec<T>, E>, actix::MailboxError>,
    what: &str,
    problems: &mut Vec<String>,
) -> Value {
    match answer {
        Ok(Ok(v)) => serde_json::to_value(v).unwrap_or_default(),
        Ok(Err(e)) => {
            problems.push(format!("{what}: {e}"));
            json!([])
        }
        Err(e) => {
            problems.push(format!("{what}: {e}"));
            json!([])
        }
    }
}

#[derive(Deserialize)]
struct TemplateForm {
    #[serde(default)]
    _csrf: String,
    name: String,
    #[serde(default)]
    description: String,
    az_id: String,
    image_id: String,
    storage_tag_id: String,
    #[serde(default)]
    vpc_id: String,
    #[serde(default)]
    subnet_id: String,
    cores: u32,
    memory_mb: u64,
    disk_gb: u64,
    #[serde(default)]
    name_pattern: String,
    #[serde(default)]
    enabled: Option<String>,
    /// Other image ids a rebuild may choose, separated by commas or spaces.
    #[serde(default)]
    allowed_images: String,
}

async fn template_save(state: web::Data<AppState>, user: UiUser, form: web::Form<TemplateForm>) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    let f = form.into_inner();
    let t = Template {
        name: f.name.trim().to_string(),
        description: f.description,
        az_id: f.az_id,
        image_id: f.image_id,
        storage_tag_id: f.storage_tag_id,
        vpc_id: f.vpc_id,
        subnet_id: f.subnet_id,
        cores: f.cores,
        memory_mb: f.memory_mb,
        disk_gb: f.disk_gb,
        name_pattern: if f.name_pattern.is_empty() { "vps-{id}".into() } else { f.name_pattern },
        enabled: f.enabled.is_some(),
        allowed_images: f
            .allowed_images
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|i| !i.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    match admin::save_template(&state.store, &t, &p.actor()).await {
        Ok(()) => Ok(redirect_msg("/templates", true, &format!("Template {} saved.", t.name))),
        Err(e) => {
            let back = format!(
                "/templates/edit?name={}",
                url::form_urlencoded::byte_serialize(t.name.as_bytes()).collect::<String>()
            );
            Ok(redirect_msg(&back, false, &format!("{e:#}")))
        }
    }
}

#[derive(Deserialize)]
struct MapForm {
    #[serde(default)]
    _csrf: String,
    source: String,
    plan: String,
    template: String,
}

async fn template_map(state: web::Data<AppState>, user: UiUser, form: web::Form<MapForm>) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    match admin::map_plan(&state.store, form.source.trim(), form.plan.trim(), &form.template, &p.actor()).await {
        Ok(()) => Ok(redirect_msg("/templates", true, "Plan mapped.")),
        Err(e) => Ok(redirect_msg("/templates", false, &format!("{e:#}"))),
    }
}

async fn sources(state: web::Data<AppState>, user: UiUser) -> Page {
    let (plugins, plugins_error) = plugin_rows(&state).await;
    let ctx = json!({
        "rows": source_rows(&state), "plugins": plugins, "plugins_error": plugins_error, "csrf": user.0.csrf,
        "is_admin": user.0.can(Role::Admin), "result": Value::Null,
    });
    render(&state, &user.0, "admin/sources.html", "Sources", "sources", ctx)
}

/// The configured sources, as the sources page lists them.
fn source_rows(state: &AppState) -> Vec<Value> {
    state
        .config
        .sources
        .iter()
        .map(|(name, s)| {
            json!({
                "name": name, "plugin": s.plugin, "signature": format!("{:?}", s.signature),
                "url": format!("/webhooks/{name}"),
            })
        })
        .collect()
}

/// The loaded plugins with their calls since start (ok, refused by the plugin, failed), read
/// from the plugin-call counters; or why the plugin runtime is not available.
async fn plugin_rows(state: &AppState) -> (Vec<Value>, Option<String>) {
    use prometheus::core::Collector;
    let mut calls: std::collections::BTreeMap<String, [u64; 3]> = std::collections::BTreeMap::new();
    for mf in state.metrics.plugin_calls.collect() {
        for m in mf.get_metric() {
            let label = |k: &str| m.get_label().iter().find(|l| l.name() == k).map(|l| l.value().to_string());
            let (Some(plugin), Some(outcome)) = (label("plugin"), label("outcome")) else { continue };
            let slot = match outcome.as_str() {
                "ok" => 0,
                "plugin_rejected" => 1,
                _ => 2,
            };
            calls.entry(plugin).or_default()[slot] += m.get_counter().get_value() as u64;
        }
    }
    match state.handles.plugins.send(crate::actors::plugins::ListPlugins).await {
        Ok(Ok(list)) => (
            list.iter()
                .map(|p| {
                    let [ok, refused, failed] = calls.get(&p.name).copied().unwrap_or_default();
                    json!({
                        "name": p.name, "kind": p.kind.to_string(), "origin": p.origin.to_string(),
                        "sha256": &p.sha256[..16],
                        "ok": ok, "refused": refused, "failed": failed,
                    })
                })
                .collect(),
            None,
        ),
        Ok(Err(e)) => (Vec::new(), Some(e.to_string())),
        Err(e) => (Vec::new(), Some(e.to_string())),
    }
}

#[derive(Deserialize)]
struct TestForm {
    #[serde(default)]
    _csrf: String,
    payload: String,
}

/// Runs a source's plugin over a pasted payload and shows the normalized events (nothing is
/// stored or applied).
async fn source_test(
    state: web::Data<AppState>,
    user: UiUser,
    name: web::Path<String>,
    form: web::Form<TestForm>,
) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    let payload = bytes::Bytes::from(form.payload.clone());
    let result = match crate::admin::test_source(&state.config, &state.handles.plugins, &name, payload).await {
        Ok(events) => {
            json!({ "ok": true, "text": serde_json::to_string_pretty(&events).unwrap_or_default(), "n": events.len() })
        }
        Err(crate::admin::SourceTestError::NoSuchSource { .. }) => {
            return Err(UiError::status(StatusCode::NOT_FOUND, "No such source."));
        }
        Err(e) => json!({ "ok": false, "text": e.to_string() }),
    };
    let (plugins, plugins_error) = plugin_rows(&state).await;
    let ctx = json!({
        "rows": source_rows(&state), "plugins": plugins, "plugins_error": plugins_error, "csrf": p.csrf,
        "is_admin": true, "result": result, "tested": *name, "payload": form.payload,
    });
    render(&state, p, "admin/sources.html", "Sources", "sources", ctx)
}

// ---------------------------------------------------------------------------------------
// Settings, users and tokens.

async fn settings(state: web::Data<AppState>, user: UiUser, req: HttpRequest) -> Page {
    let p = user.require(Role::Admin)?;
    let users = state.auth.users().await.map_err(anyhow_internal)?;
    let tokens = state.auth.tokens().await.map_err(anyhow_internal)?;
    let c = &state.config;
    let set = |s: &crate::config::Secret| if s.is_empty() { "not set" } else { "set (hidden)" };
    let stored = crate::settings::stored(&state.store).await.map_err(anyhow_internal)?;
    let editable = crate::settings::views(c, &stored);
    let ctx = json!({
        "editable": editable,
        "users": users, "tokens": tokens, "csrf": p.csrf, "flash": flash(&req), "me": p.username,
        "new_token": Value::Null,
        "policy": {
            "grace_days": c.policy.grace_days, "max_destructive_per_hour": c.policy.max_destructive_per_hour,
            "max_attempts": c.policy.max_attempts, "reconcile_interval_secs": c.policy.reconcile_interval_secs,
        },
        "smtp": { "host": c.smtp.host, "port": c.smtp.port, "from": c.smtp.from, "recipients": c.smtp.admin_recipients.join(", "),
                  "password": set(&c.smtp.password) },
        "notify": { "urls": c.notify.webhook_urls.join(", "), "secret": set(&c.notify.webhook_secret) },
        "stripe": { "enabled": c.stripe.enabled, "api_base": c.stripe.api_base, "secret_key": set(&c.stripe.secret_key),
                    "webhook_secrets": c.stripe.webhook_secrets.len() },
        "security": { "idle": c.security.session_idle_minutes, "absolute": c.security.session_absolute_hours,
                      "failures": c.security.login_max_failures, "lockout": c.security.lockout_minutes },
    });
    render(&state, p, "admin/settings.html", "Settings", "settings", ctx)
}

#[derive(Deserialize)]
struct UserForm {
    #[serde(default)]
    _csrf: String,
    username: String,
    role: String,
}

async fn user_add(state: web::Data<AppState>, user: UiUser, form: web::Form<UserForm>) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    let Some(role) = Role::parse(&form.role) else { return Ok(redirect_msg("/settings", false, "Unknown role.")) };
    let password = crate::secrets::generate_password();
    match state.auth.add_user(form.username.trim(), password.expose(), role).await {
        Ok(()) => {
            let _ = state
                .store
                .record_activity(
                    Level::Warning,
                    &p.actor(),
                    None,
                    &format!("{} added {role} {}", p.actor(), form.username.trim()),
                    json!({}),
                )
                .await;
            shown_once(
                &state,
                p,
                "User added",
                &format!("Added {}. Their password:", form.username.trim()),
                password.expose(),
                "/settings",
            )
        }
        Err(e) => Ok(redirect_msg("/settings", false, &format!("{e:#}"))),
    }
}

#[derive(Deserialize)]
struct UserChange {
    #[serde(default)]
    _csrf: String,
    /// `disable`, `enable`, `reset_password`, `role`, `logout`.
    change: String,
    #[serde(default)]
    role: String,
}

async fn user_change(
    state: web::Data<AppState>,
    user: UiUser,
    name: web::Path<String>,
    form: web::Form<UserChange>,
) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    if *name == p.username && matches!(form.change.as_str(), "disable" | "role") {
        return Ok(redirect_msg("/settings", false, "You cannot disable yourself or change your own role."));
    }
    let auth = &state.auth;
    let mut new_password = None;
    let result = match form.change.as_str() {
        "disable" => auth.set_disabled(&name, true).await.map(|()| format!("{name} is disabled.")),
        "enable" => auth.set_disabled(&name, false).await.map(|()| format!("{name} is enabled.")),
        "logout" => auth.end_all_sessions(&name).await.map(|()| format!("{name} is logged out everywhere.")),
        "reset_2fa" => auth
            .reset_totp(&name)
            .await
            .map(|()| format!("Two-factor login of {name} is off; they can set it up again.")),
        "reset_password" => {
            let pw = crate::secrets::generate_password();
            auth.set_password(&name, pw.expose()).await.map(|()| {
                new_password = Some(pw);
                format!("New password for {name}:")
            })
        }
        "role" => match Role::parse(&form.role) {
            Some(r) => auth.set_role(&name, r).await.map(|()| format!("{name} is now {r}.")),
            None => Err(anyhow::anyhow!("unknown role")),
        },
        _ => Err(anyhow::anyhow!("unknown change")),
    };
    match result {
        Ok(msg) => {
            let _ = state
                .store
                .record_activity(
                    Level::Warning,
                    &p.actor(),
                    None,
                    &format!("{} changed user {name}: {}", p.actor(), form.change),
                    json!({}),
                )
                .await;
            match new_password {
                Some(pw) => shown_once(&state, p, "New password", &msg, pw.expose(), "/settings"),
                None => Ok(redirect_msg("/settings", true, &msg)),
            }
        }
        Err(e) => Ok(redirect_msg("/settings", false, &format!("{e:#}"))),
    }
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    _csrf: String,
    name: String,
    role: String,
}

async fn token_create(state: web::Data<AppState>, user: UiUser, form: web::Form<TokenForm>) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    let Some(role) = Role::parse(&form.role) else { return Ok(redirect_msg("/settings", false, "Unknown role.")) };
    match state.auth.create_token(form.name.trim(), role, &p.actor()).await {
        Ok(token) => {
            let _ = state
                .store
                .record_activity(
                    Level::Warning,
                    &p.actor(),
                    None,
                    &format!("{} created API token {}", p.actor(), form.name.trim()),
                    json!({}),
                )
                .await;
            shown_once(&state, p, "API token created", &format!("Token {}:", form.name.trim()), &token, "/settings")
        }
        Err(e) => Ok(redirect_msg("/settings", false, &format!("{e:#}"))),
    }
}

async fn token_revoke(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    state.auth.revoke_token(&id).await.map_err(anyhow_internal)?;
    let _ = state
        .store
        .record_activity(Level::Warning, &p.actor(), None, &format!("{} revoked an API token", p.actor()), json!({}))
        .await;
    Ok(redirect_msg("/settings", true, "Token revoked."))
}

async fn smtp_test(state: web::Data<AppState>, user: UiUser, form: web::Form<CsrfForm>) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    use crate::notice::{Notify, NotifyKind, Severity};
    let sent = state
        .handles
        .notifier
        .send(Notify {
            kind: NotifyKind::Test,
            severity: Severity::Info,
            title: "vmauto test notification".into(),
            body: format!("{} asked for a test message from the settings page.", p.actor()),
            subject: None,
        })
        .await;
    match sent {
        Ok(_) => Ok(redirect_msg(
            "/settings",
            true,
            "Test notification sent; check the admin mailbox and the notification centre.",
        )),
        Err(e) => Ok(redirect_msg("/settings", false, &format!("The notifier is not running: {e}"))),
    }
}

// ---------------------------------------------------------------------------------------
// The user's own account: two-factor login.

async fn account(state: web::Data<AppState>, user: UiUser, req: HttpRequest) -> Page {
    let on = state.auth.has_totp(&user.0.username).await.map_err(anyhow_internal)?;
    let ctx =
        json!({ "totp": on, "csrf": user.0.csrf, "flash": flash(&req), "setup": Value::Null, "codes": Value::Null });
    render(&state, &user.0, "admin/account.html", "Account", "account", ctx)
}

async fn totp_begin(state: web::Data<AppState>, user: UiUser, form: web::Form<CsrfForm>) -> Page {
    check_csrf(&user.0, &form._csrf)?;
    let setup = match state.auth.begin_totp(&user.0.username).await {
        Ok(s) => s,
        Err(e) => return Ok(redirect_msg("/account", false, &format!("{e:#}"))),
    };
    let ctx = json!({ "totp": false, "csrf": user.0.csrf, "flash": json!({}), "setup": setup, "codes": Value::Null });
    render(&state, &user.0, "admin/account.html", "Account", "account", ctx)
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    code: String,
}

async fn totp_confirm(state: web::Data<AppState>, user: UiUser, form: web::Form<CodeForm>) -> Page {
    check_csrf(&user.0, &form._csrf)?;
    match state.auth.confirm_totp(&user.0.username, &form.code).await {
        Ok(Some(codes)) => {
            let _ = state
                .store
                .record_activity(
                    Level::Warning,
                    &user.0.actor(),
                    None,
                    &format!("{} turned on two-factor login", user.0.actor()),
                    json!({}),
                )
                .await;
            let ctx =
                json!({ "totp": true, "csrf": user.0.csrf, "flash": json!({}), "setup": Value::Null, "codes": codes });
            render(&state, &user.0, "admin/account.html", "Account", "account", ctx)
        }
        Ok(None) => {
            Ok(redirect_msg("/account", false, "That code is not right; start again and enter the current code."))
        }
        Err(e) => Ok(redirect_msg("/account", false, &format!("{e:#}"))),
    }
}

async fn totp_disable(state: web::Data<AppState>, user: UiUser, form: web::Form<CodeForm>) -> Page {
    check_csrf(&user.0, &form._csrf)?;
    match state.auth.check_second_factor(&user.0.session_hash, &user.0.username, &form.code).await {
        Ok(crate::auth::SecondFactor::Passed) => {}
        Ok(crate::auth::SecondFactor::Locked(_)) => {
            return Ok(redirect_msg("/account", false, "Too many wrong codes; two-factor login stays on. Try later."));
        }
        Ok(crate::auth::SecondFactor::Wrong) => {
            return Ok(redirect_msg("/account", false, "That code is not right; two-factor login stays on."));
        }
        Err(e) => return Err(anyhow_internal(e)),
    }
    state.auth.reset_totp(&user.0.username).await.map_err(anyhow_internal)?;
    let _ = state
        .store
        .record_activity(
            Level::Warning,
            &user.0.actor(),
            None,
            &format!("{} turned off two-factor login", user.0.actor()),
            json!({}),
        )
        .await;
    Ok(redirect_msg("/account", true, "Two-factor login is off."))
}

// ---------------------------------------------------------------------------------------
// Upgrade links.

async fn upgrade_link(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    let back = format!("/vps/{id}");
    match crate::upgrade::issue_link(&state.store, &state.config, &state.sealer, &id, &p.actor()).await {
        // `issue_link` records the activity.
        Ok(link) => shown_once(&state, p, "Upgrade link", "Upgrade link (give it to the customer):", &link.url, &back),
        Err(e) => Ok(redirect_msg(&back, false, &format!("{e:#}"))),
    }
}

async fn upgrade_link_revoke(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    let link = crate::upgrade::links::link_by_id(&state.store, &id).await.map_err(anyhow_internal)?;
    let back = link.as_ref().map_or_else(|| "/".to_string(), |l| format!("/vps/{}", l.vps));
    match crate::upgrade::revoke_link(&state.store, &id, &p.actor()).await {
        Ok(true) => Ok(redirect_msg(&back, true, "Upgrade link revoked.")),
        Ok(false) => Ok(redirect_msg(&back, false, "There is no such upgrade link.")),
        Err(e) => Ok(redirect_msg(&back, false, &format!("{e:#}"))),
    }
}

async fn settings_save(
    state: web::Data<AppState>,
    user: UiUser,
    form: web::Form<std::collections::BTreeMap<String, String>>,
) -> Page {
    let p = user.require(Role::Admin)?;
    let mut form = form.into_inner();
    check_csrf(p, &form.remove("_csrf").unwrap_or_default())?;
    match crate::settings::change(&state.store, &state.sealer, &state.config, &form, &p.actor()).await {
        Ok(changed) => Ok(redirect_msg("/settings", true, &crate::settings::change_message(&changed))),
        Err(e) => Ok(redirect_msg("/settings", false, &format!("{e:#}"))),
    }
}
