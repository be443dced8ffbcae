//! The JSON API, `/api/v1/…`: the UI's reads and actions for scripts, authenticated by API
//! tokens (`Authorization: Bearer vma_…`) with the same role rules as the UI. Its OpenAPI
//! document is served at `/api/v1/openapi.json`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::session::ApiUser;
use crate::admin::{self, Action, ActivityQuery, InboxKey, ManualVps, VpsQuery};
use crate::auth::Role;
use crate::error::{AppError, AppResult, Code};
use crate::lifecycle::Level;
use crate::lifecycle::{OperationId, Template, VpsId, kpi};

const OPENAPI: &str = include_str!("openapi.json");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .route("/openapi.json", web::get().to(openapi))
            .route("/me", web::get().to(me))
            .route("/vps", web::get().to(list_vps))
            .route("/vps", web::post().to(create_vps))
            .route("/vps/{id}", web::get().to(get_vps))
            .route("/vps/{id}/actions", web::post().to(vps_action))
            .route("/vps/{id}/upgrade-links", web::post().to(issue_upgrade_link))
            .route("/vps/{id}/portal-links", web::post().to(issue_portal_link))
            .route("/vps/{id}/portal-links", web::get().to(portal_links))
            .route("/portal-links/{id}/revoke", web::post().to(revoke_portal_link))
            .route("/portal-links/{id}/renew", web::post().to(renew_portal_link))
            .route("/operations/{id}/retry", web::post().to(retry))
            .route("/operations/{id}/approve", web::post().to(approve))
            .route("/operations/{id}/reject", web::post().to(reject))
            .route("/activity", web::get().to(activity))
            .route("/kpis", web::get().to(kpis))
            .route("/cluster", web::get().to(cluster))
            .route("/inbox", web::get().to(inbox))
            .route("/inbox/{id}", web::get().to(inbox_event))
            .route("/inbox/{id}/replay", web::post().to(replay))
            .route("/templates", web::get().to(templates))
            .route("/templates", web::put().to(save_template))
            .route("/plan-mappings", web::get().to(plan_mappings))
            .route("/plan-mappings", web::put().to(put_plan_mapping))
            .route("/plan-mappings", web::delete().to(delete_plan_mapping))
            .route("/notifications", web::get().to(notifications))
            .route("/sources", web::get().to(sources))
            .route("/sources/{name}/test", web::post().to(source_test))
            .route("/settings", web::get().to(settings))
            .route("/settings", web::put().to(put_settings)),
    );
}

fn bad(e: anyhow::Error) -> AppError {
    AppError::from_action(&e)
}

fn store_err(e: anyhow::Error) -> AppError {
    AppError::store(format!("{e:#}"))
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI)
}

async fn me(user: ApiUser) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(json!({ "name": user.0.username, "role": user.0.role, "token": user.0.via_token })))
}

async fn list_vps(state: web::Data<AppState>, user: ApiUser, q: web::Query<VpsQuery>) -> AppResult<HttpResponse> {
    user.require(Role::Viewer)?;
    let page = state.store.list_vps(&q).await.map_err(store_err)?;
    Ok(HttpResponse::Ok().json(page))
}

async fn get_vps(state: web::Data<AppState>, user: ApiUser, id: web::Path<String>) -> AppResult<HttpResponse> {
    user.require(Role::Viewer)?;
    let id = VpsId::from(id.into_inner());
    let vps = state
        .store
        .vps_detail(&id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| AppError::not_found(format!("no VPS with id {id}")))?;
    let timeline = state.store.vps_timeline(&id).await.map_err(store_err)?;
    Ok(HttpResponse::Ok().json(json!({ "vps": vps, "timeline": timeline })))
}

async fn create_vps(state: web::Data<AppState>, user: ApiUser, body: web::Json<ManualVps>) -> AppResult<HttpResponse> {
    let p = user.require(Role::Operator)?;
    let id = admin::create_vps(&state.store, &state.handles.registry, &body, &p.actor()).await.map_err(bad)?;
    Ok(HttpResponse::Accepted().json(json!({ "id": id })))
}

#[derive(Deserialize)]
struct ActionBody {
    action: String,
    /// For `resize`: `{cores, memory_mb, disk_gb}`.
    #[serde(default)]
    spec: Option<Value>,
    /// For `delete` and `rebuild`: the VPS's name, as a confirmation.
    #[serde(default)]
    confirm: String,
    /// For `rebuild`: the image (the template's, or one of its `allowed_images`); default the
    /// template's.
    #[serde(default)]
    image_id: Option<String>,
    /// For `power`: `start`, `stop` (graceful), `force_stop` or `reboot`.
    #[serde(default)]
    power: Option<String>,
}

async fn vps_action(
    state: web::Data<AppState>,
    user: ApiUser,
    id: web::Path<String>,
    body: web::Json<ActionBody>,
) -> AppResult<HttpResponse> {
    let p = user.require(Role::Operator)?;
    let id = VpsId::from(id.into_inner());
    let action = Action::parse(&body.action).ok_or_else(|| {
        AppError::bad_request(format!(
            "unknown action {:?}: use power, password, reset, suspend, resume, resize, rebuild, delete or restore",
            body.action
        ))
    })?;
    if action == Action::Restore && state.config.provider.sangfor.delete_mode == crate::config::DeleteMode::Permanent {
        return Err(AppError::new(
            Code::Conflict,
            "provider.sangfor.delete_mode is permanent: deleted VMs are not kept in SCP's recycle bin",
        ));
    }
    if matches!(action, Action::Delete | Action::Rebuild) {
        let vps = state
            .store
            .vps_detail(&id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| AppError::not_found(format!("no VPS with id {id}")))?;
        if body.confirm != vps.row.name {
            return Err(AppError::new(
                Code::Conflict,
                format!("To {}, send `confirm` with the VPS's name (its disk is replaced).", body.action),
            ));
        }
    }
    let params = match (&body.spec, &body.image_id) {
        _ if action == Action::Power => json!({ "action": body.power.clone().unwrap_or_default() }),
        (Some(s), _) => json!({ "spec": s }),
        (None, Some(image)) => json!({ "image_id": image }),
        (None, None) => json!({}),
    };
    let op = admin::request_action(&state.store, &state.handles.registry, &id, action, params, &p.actor())
        .await
        .map_err(bad)?;
    Ok(HttpResponse::Accepted().json(json!({ "operation": op })))
}

async fn retry(state: web::Data<AppState>, user: ApiUser, id: web::Path<String>) -> AppResult<HttpResponse> {
    let p = user.require(Role::Operator)?;
    let id = OperationId::from(id.into_inner());
    let vps = admin::retry_operation(&state.store, Some(&state.handles.registry), &id, &p.actor()).await.map_err(
        |e| match e {
            admin::RetryError::NotFound(_) => AppError::not_found(e.to_string()),
            admin::RetryError::Refused(m) => AppError::new(Code::Conflict, m),
            admin::RetryError::Store(e) => store_err(e),
        },
    )?;
    Ok(HttpResponse::Accepted().json(json!({ "vps": vps })))
}

async fn approve(state: web::Data<AppState>, user: ApiUser, id: web::Path<String>) -> AppResult<HttpResponse> {
    let p = user.require(Role::Admin)?;
    let id = OperationId::from(id.into_inner());
    admin::decide_held(&state.store, &state.handles.registry, &id, true, &p.actor()).await.map_err(bad)?;
    Ok(HttpResponse::Accepted().json(json!({ "approved": id })))
}

async fn reject(state: web::Data<AppState>, user: ApiUser, id: web::Path<String>) -> AppResult<HttpResponse> {
    let p = user.require(Role::Admin)?;
    let id = OperationId::from(id.into_inner());
    admin::decide_held(&state.store, &state.handles.registry, &id, false, &p.actor()).await.map_err(bad)?;
    Ok(HttpResponse::Ok().json(json!({ "rejected": id })))
}

async fn activity(state: web::Data<AppState>, user: ApiUser, q: web::Query<ActivityQuery>) -> AppResult<HttpResponse> {
    user.require(Role::Viewer)?;
    if !q.level.is_empty() && Level::parse(&q.level).is_none() {
        return Err(AppError::bad_request(format!(
            "unknown level {:?}: use info, warning, error or critical",
            q.level
        )));
    }
    Ok(HttpResponse::Ok().json(state.store.activity_page(&q).await.map_err(store_err)?))
}

async fn kpis(state: web::Data<AppState>, user: ApiUser) -> AppResult<HttpResponse> {
    user.require(Role::Viewer)?;
    let k = kpi::compute(&state.store).await.map_err(store_err)?;
    let counts = state.store.vps_counts_by_state().await.map_err(store_err)?;
    let by_state: serde_json::Map<String, Value> = counts.into_iter().map(|(s, n)| (s, json!(n))).collect();
    Ok(HttpResponse::Ok().json(json!({ "kpis": k, "vps_by_state": by_state, "window_days": kpi::WINDOW_DAYS })))
}

/// `GET /api/v1/cluster`: this node and the work lease (`{"cluster": null}` for a single node).
async fn cluster(state: web::Data<AppState>, user: ApiUser) -> AppResult<HttpResponse> {
    user.require(Role::Viewer)?;
    let holds = state.handles.holds_lease();
    let status = crate::admin::cluster_status(&state.store, &state.config, holds).await.map_err(store_err)?;
    Ok(HttpResponse::Ok().json(json!({ "cluster": status })))
}

#[derive(Deserialize)]
struct InboxQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    page: u64,
}

async fn inbox(state: web::Data<AppState>, user: ApiUser, q: web::Query<InboxQuery>) -> AppResult<HttpResponse> {
    user.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(state.store.inbox_page(&q.status, q.page).await.map_err(store_err)?))
}

async fn inbox_event(state: web::Data<AppState>, user: ApiUser, id: web::Path<String>) -> AppResult<HttpResponse> {
    let p = user.require(Role::Viewer)?;
    let id = InboxKey::from(id.into_inner());
    let mut ev = state
        .store
        .inbox_event(&id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| AppError::not_found(format!("no inbox event {id}")))?;
    if !p.can(Role::Admin) {
        admin::hide_raw_request(&mut ev);
    }
    Ok(HttpResponse::Ok().json(ev))
}

async fn replay(state: web::Data<AppState>, user: ApiUser, id: web::Path<String>) -> AppResult<HttpResponse> {
    let p = user.require(Role::Operator)?;
    let outcomes = super::replay_inbox(&state, &InboxKey::from(id.into_inner()), &p.actor()).await.map_err(bad)?;
    Ok(HttpResponse::Ok().json(json!({ "outcomes": outcomes })))
}

async fn templates(state: web::Data<AppState>, user: ApiUser) -> AppResult<HttpResponse> {
    user.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(state.store.templates_with_plans().await.map_err(store_err)?))
}

async fn save_template(
    state: web::Data<AppState>,
    user: ApiUser,
    body: web::Json<Template>,
) -> AppResult<HttpResponse> {
    let p = user.require(Role::Admin)?;
    admin::unconfigured_locations(&body, &state.config).map_err(|e| bad(anyhow::anyhow!(e)))?;
    admin::save_template(&state.store, &body, &p.actor()).await.map_err(bad)?;
    Ok(HttpResponse::Ok().json(json!({ "saved": body.name })))
}

async fn plan_mappings(state: web::Data<AppState>, user: ApiUser) -> AppResult<HttpResponse> {
    user.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(state.store.plan_mappings().await.map_err(store_err)?))
}

/// `PUT /api/v1/plan-mappings` `{source, plan_key, template}`: maps (or re-maps) a plan.
async fn put_plan_mapping(
    state: web::Data<AppState>,
    user: ApiUser,
    body: web::Json<admin::PlanMapping>,
) -> AppResult<HttpResponse> {
    let p = user.require(Role::Admin)?;
    if !state.config.sources.contains_key(&body.source) {
        return Err(AppError::bad_request(format!(
            "there is no source named {:?}: configured sources are {:?}",
            body.source,
            state.config.sources.keys().collect::<Vec<_>>()
        )));
    }
    admin::map_plan(&state.store, &body.source, &body.plan_key, &body.template, &p.actor()).await.map_err(bad)?;
    Ok(HttpResponse::Ok().json(&*body))
}

#[derive(Deserialize)]
struct MappingKey {
    source: String,
    plan_key: String,
}

/// `DELETE /api/v1/plan-mappings?source=&plan_key=`.
async fn delete_plan_mapping(
    state: web::Data<AppState>,
    user: ApiUser,
    q: web::Query<MappingKey>,
) -> AppResult<HttpResponse> {
    let p = user.require(Role::Admin)?;
    if !admin::unmap_plan(&state.store, &q.source, &q.plan_key, &p.actor()).await.map_err(store_err)? {
        return Err(AppError::not_found(format!("plan {:?} of {:?} is not mapped", q.plan_key, q.source)));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/v1/notifications?page=&severity=&kind=`: one page (50 rows) with `total` and
/// `pages`, newest first.
async fn notifications(
    state: web::Data<AppState>,
    user: ApiUser,
    q: web::Query<admin::NotificationQuery>,
) -> AppResult<HttpResponse> {
    user.require(Role::Viewer)?;
    if !q.severity.is_empty() && !["info", "warning", "critical"].contains(&q.severity.as_str()) {
        return Err(AppError::bad_request(format!("unknown severity {:?}: use info, warning or critical", q.severity)));
    }
    Ok(HttpResponse::Ok().json(state.store.notifications_page(&q).await.map_err(store_err)?))
}

async fn issue_upgrade_link(
    state: web::Data<AppState>,
    user: ApiUser,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let p = user.require(Role::Operator)?;
    let id = VpsId::from(id.into_inner());
    let link =
        crate::upgrade::issue_link(&state.store, &state.config, &state.sealer, &id, &p.actor()).await.map_err(bad)?;
    Ok(HttpResponse::Created()
        .json(json!({ "id": link.id, "url": link.url, "expires_at": link.expires_at.to_rfc3339() })))
}

/// `POST /api/v1/vps/{id}/portal-links`: a portal link for the VPS's customer; its URL is in
/// this answer only.
async fn issue_portal_link(
    state: web::Data<AppState>,
    user: ApiUser,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let p = user.require(Role::Operator)?;
    let id = VpsId::from(id.into_inner());
    let link = crate::portal::issue(&state.store, &state.config, &state.sealer, &id, &p.actor()).await.map_err(bad)?;
    Ok(HttpResponse::Created().json(link))
}

/// `GET /api/v1/vps/{id}/portal-links`: the VPS's portal links (never their URLs).
async fn portal_links(state: web::Data<AppState>, user: ApiUser, id: web::Path<String>) -> AppResult<HttpResponse> {
    user.require(Role::Viewer)?;
    let id = VpsId::from(id.into_inner());
    let now = chrono::Utc::now();
    let links: Vec<Value> = state
        .store
        .portal_links_of_vps(&id)
        .await
        .map_err(store_err)?
        .into_iter()
        .map(|l| json!({ "state": l.state(now), "link": l }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "links": links })))
}

async fn revoke_portal_link(
    state: web::Data<AppState>,
    user: ApiUser,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let p = user.require(Role::Operator)?;
    let id = crate::portal::PortalLinkId::from(id.into_inner());
    match crate::portal::revoke(&state.store, &id, &p.actor()).await.map_err(store_err)? {
        true => Ok(HttpResponse::Ok().json(json!({ "id": id, "revoked": true }))),
        false => Err(AppError::not_found(format!("no portal link {id}"))),
    }
}

async fn renew_portal_link(
    state: web::Data<AppState>,
    user: ApiUser,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let p = user.require(Role::Operator)?;
    let id = crate::portal::PortalLinkId::from(id.into_inner());
    match crate::portal::renew(&state.store, &state.config, &id, &p.actor()).await.map_err(bad)? {
        Some(until) => Ok(HttpResponse::Ok().json(json!({ "id": id, "expires_at": until.to_rfc3339() }))),
        None => Err(AppError::not_found(format!("no portal link {id}"))),
    }
}

/// `GET /api/v1/sources`: the configured webhook sources (no secrets).
async fn sources(state: web::Data<AppState>, user: ApiUser) -> AppResult<HttpResponse> {
    user.require(Role::Admin)?;
    let rows: Vec<Value> = state
        .config
        .sources
        .iter()
        .map(|(name, s)| {
            json!({ "name": name, "plugin": s.plugin, "signature": s.signature, "path": format!("/webhooks/{name}") })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "sources": rows })))
}

/// `POST /api/v1/sources/{name}/test`: the body is run through the source's plugin as a
/// delivery would be; answers the normalized events. Nothing is stored or applied.
async fn source_test(
    state: web::Data<AppState>,
    user: ApiUser,
    name: web::Path<String>,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    user.require(Role::Admin)?;
    match admin::test_source(&state.config, &state.handles.plugins, &name, body).await {
        Ok(events) => Ok(HttpResponse::Ok().json(json!({ "source": *name, "events": events }))),
        Err(e @ admin::SourceTestError::NoSuchSource { .. }) => Err(AppError::not_found(e.to_string())),
        Err(e) => Err(AppError::bad_request(format!("the source's plugin refused this payload: {e}"))),
    }
}

/// `GET /api/v1/settings`: every setting editable here, secrets shown only as set or not.
async fn settings(state: web::Data<AppState>, user: ApiUser) -> AppResult<HttpResponse> {
    user.require(Role::Admin)?;
    let stored = crate::settings::stored(&state.store).await.map_err(store_err)?;
    Ok(HttpResponse::Ok().json(json!({ "settings": crate::settings::views(&state.config, &stored) })))
}

/// `PUT /api/v1/settings` with `{"key": value, …}`: checks and saves the values (strings;
/// numbers and lists of strings are accepted too; an empty secret keeps the stored one).
/// They take effect at the next start, as when saved in the UI.
async fn put_settings(
    state: web::Data<AppState>,
    user: ApiUser,
    body: web::Json<serde_json::Map<String, Value>>,
) -> AppResult<HttpResponse> {
    let p = user.require(Role::Admin)?;
    let mut changes = std::collections::BTreeMap::new();
    for (key, value) in body.into_inner() {
        let text = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).ok_or(()))
                .collect::<Result<Vec<_>, ()>>()
                .map_err(|()| AppError::bad_request(format!("{key}: a list must hold strings only")))?
                .join(","),
            other => return Err(AppError::bad_request(format!("{key}: {other} is not a string, number or list"))),
        };
        changes.insert(key, text);
    }
    let changed = crate::settings::change(&state.store, &state.sealer, &state.config, &changes, &p.actor())
        .await
        .map_err(|e| AppError::bad_request(format!("{e:#}")))?;
    let message = crate::settings::change_message(&changed);
    Ok(HttpResponse::Ok()
        .json(json!({ "changed": changed, "restart_required": !changed.is_empty(), "message": message })))
}
