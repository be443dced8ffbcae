//! VPS pages: the list, one VPS with its timeline and actions, manual creation, operation
//! decisions (retry, approve, reject) and customers' upgrade links.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Page, anyhow_internal, flash, redirect_msg, render, serde_urlencoded, shown_once};
use crate::admin::{self, Action, ManualVps, TimelineEntry, VpsQuery};
use crate::auth::Role;
use crate::http::AppState;
use crate::http::session::{CsrfForm, UiError, UiUser, check_csrf};
use crate::lifecycle::{Level, OpState};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/vps", web::get().to(list_vps))
        .route("/vps/new", web::get().to(new_vps_form))
        .route("/vps/new", web::post().to(create_vps))
        .route("/vps/{id}", web::get().to(show_vps))
        .route("/vps/{id}/action", web::post().to(act_on_vps))
        .route("/vps/{id}/reveal", web::post().to(reveal_vps_password))
        .route("/vps/{id}/upgrade-link", web::post().to(issue_upgrade_link))
        .route("/upgrade-links/{id}/revoke", web::post().to(revoke_upgrade_link))
        .route("/operations/{id}/retry", web::post().to(retry_operation))
        .route("/operations/{id}/approve", web::post().to(approve_operation))
        .route("/operations/{id}/reject", web::post().to(reject_operation));
}

async fn list_vps(state: web::Data<AppState>, user: UiUser, q: web::Query<VpsQuery>, req: HttpRequest) -> Page {
    let q = q.into_inner();
    let page = state.store.list_vps(&q).await.map_err(anyhow_internal)?;
    let templates = state.store.templates_with_plans().await.map_err(anyhow_internal)?;
    let mut base = q.clone();
    base.page = 0;
    let qs = serde_urlencoded(&base);
    let ctx = json!({
        "filtered": !q.q.is_empty() || !q.state.is_empty() || !q.template.is_empty() || !q.source.is_empty(),
        "page": page, "q": q, "qs": qs, "flash": flash(&req), "can_operate": user.0.can(Role::Operator),
        "prev": (page.page > 1).then(|| page.page - 1), "next": (page.page < page.pages).then(|| page.page + 1),
        "states": ["live", "past", "pending", "provisioning", "active", "suspended", "resizing", "deleting", "deleted", "failed"],
        "templates": templates.iter().map(|t| t.template.name.as_str()).collect::<Vec<_>>(),
        "sources": state.config.sources.keys().cloned().chain(["manual".to_string()]).collect::<Vec<_>>(),
    });
    render(&state, &user.0, "admin/vps_list.html", "VPS", "vps", ctx)
}

async fn show_vps(state: web::Data<AppState>, user: UiUser, id: web::Path<String>, req: HttpRequest) -> Page {
    let Some(vps) = state.store.vps_detail(&id).await.map_err(anyhow_internal)? else {
        return Err(UiError::status(
            StatusCode::NOT_FOUND,
            "There is no VPS with this id. It may have been typed wrong.",
        ));
    };
    let timeline = state.store.vps_timeline(&id).await.map_err(anyhow_internal)?;
    let now = chrono::Utc::now();
    let links: Vec<Value> = crate::upgrade::links::links_of_vps(&state.store, &id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|l| json!({ "id": l.id, "state": l.state(now), "issued_by": l.issued_by, "created_at": l.created_at.to_rfc3339(), "expires_at": l.expires_at.to_rfc3339() }))
        .collect();
    let live = vps.row.state.is_live();
    let dead_ops: Vec<&TimelineEntry> =
        timeline.iter().filter(|t| matches!(t, TimelineEntry::Operation(op) if op.state == OpState::Dead)).collect();
    // The images a rebuild may choose: the template's own first, then its allowed ones.
    let mut rebuild_images: Vec<Value> = Vec::new();
    for img in vps.row.template_image.iter().chain(&vps.row.allowed_images) {
        if !img.is_empty() && !rebuild_images.iter().any(|r| r["id"] == img.as_str()) {
            rebuild_images.push(json!({ "id": img, "current": vps.row.image_id.as_ref() == Some(img) }));
        }
    }
    let ctx = json!({
        "vps": vps, "timeline": timeline, "live": live, "flash": flash(&req), "dead_ops": dead_ops,
        "csrf": user.0.csrf, "can_operate": user.0.can(Role::Operator) && live,
        "upgrades": state.config.stripe.enabled, "links": links, "rebuild_images": rebuild_images,
    });
    let title = if vps.row.name.is_empty() { "VPS".to_string() } else { vps.row.name.clone() };
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

async fn act_on_vps(
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
        let name = state.store.vps_detail(&id).await.map_err(anyhow_internal)?.map(|v| v.row.name).unwrap_or_default();
        if form.confirm.trim() != name {
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

async fn reveal_vps_password(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    let Some(vps) = state.store.revealed_vps(&id).await.map_err(anyhow_internal)? else {
        return Err(UiError::status(StatusCode::NOT_FOUND, "There is no VPS with this id."));
    };
    let Some(sealed) = vps.root_password else {
        return Ok(redirect_msg(&format!("/vps/{id}"), false, "This VPS has no stored password yet."));
    };
    let password = state.sealer.open(&sealed, &crate::secrets::root_password_place(&id)).map_err(anyhow_internal)?;
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
    let ctx = json!({ "id": *id, "name": vps.name, "password": password.expose() });
    render(&state, p, "admin/reveal.html", "Root password", "vps", ctx)
}

async fn new_vps_form(state: web::Data<AppState>, user: UiUser, req: HttpRequest) -> Page {
    let p = user.require(Role::Operator)?;
    let templates = state.store.templates_with_plans().await.map_err(anyhow_internal)?;
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

async fn create_vps(state: web::Data<AppState>, user: UiUser, form: web::Form<NewVpsForm>) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    match admin::create_vps(&state.store, &state.handles.registry, &form.vps, &p.actor()).await {
        Ok(id) => Ok(redirect_msg(&format!("/vps/{id}"), true, "VPS queued for creation; progress shows below.")),
        Err(e) => Ok(redirect_msg("/vps/new", false, &format!("{e:#}"))),
    }
}

async fn retry_operation(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    match admin::retry_operation(&state.store, Some(&state.handles.registry), &id, &p.actor()).await {
        Ok(vps) => Ok(redirect_msg(&format!("/vps/{vps}"), true, "Retry started: a fresh series of attempts.")),
        Err(e) => Ok(redirect_msg("/", false, &format!("{e:#}"))),
    }
}

async fn decide_operation(state: &AppState, user: &UiUser, id: &str, form: &CsrfForm, approve: bool) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    match admin::decide_held(&state.store, &state.handles.registry, id, approve, &p.actor()).await {
        Ok(()) => Ok(redirect_msg("/", true, if approve { "Approved." } else { "Rejected." })),
        Err(e) => Ok(redirect_msg("/", false, &format!("{e:#}"))),
    }
}

async fn approve_operation(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    decide_operation(&state, &user, &id, &form, true).await
}

async fn reject_operation(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    decide_operation(&state, &user, &id, &form, false).await
}

async fn issue_upgrade_link(
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

async fn revoke_upgrade_link(
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
