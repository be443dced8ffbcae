//! VPS pages: the list, one VPS with its timeline and actions, manual creation, operation
//! decisions (retry, approve, reject) and customers' upgrade links (portal links: `portal_links`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Flash, Page, anyhow_internal, flash, redirect_msg, render, serde_urlencoded, shown_once};
use crate::admin::{self, Action, ManualVps, TemplateWithPlans, TimelineEntry, VpsDetail, VpsQuery, VpsRow};
use crate::auth::Role;
use crate::http::AppState;
use crate::http::session::{CsrfForm, UiError, UiUser, check_csrf};
use crate::lifecycle::{Level, OpState, OperationId, VpsId};
use crate::upgrade::links::LinkId;

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
    let ctx = VpsListPage {
        filtered: !q.q.is_empty() || !q.state.is_empty() || !q.template.is_empty() || !q.source.is_empty(),
        qs: serde_urlencoded(&base),
        flash: flash(&req),
        can_operate: user.0.can(Role::Operator),
        prev: (page.page > 1).then(|| page.page - 1),
        next: (page.page < page.pages).then(|| page.page + 1),
        states: STATE_FILTERS,
        templates: templates.iter().map(|t| t.template.name.as_str()).collect(),
        sources: state.config.sources.keys().map(String::as_str).chain(["manual"]).collect(),
        page,
        q,
    };
    render(&state, &user.0, "admin/vps_list.html", "VPS", "vps", ctx)
}

/// The states the VPS list filters by (`live` and `past` group them).
const STATE_FILTERS: [&str; 10] =
    ["live", "past", "pending", "provisioning", "active", "suspended", "resizing", "deleting", "deleted", "failed"];

/// One page of the VPS list with its filters.
#[derive(Serialize)]
struct VpsListPage<'a> {
    /// Whether any filter is set.
    filtered: bool,
    page: admin::Page<VpsRow>,
    q: VpsQuery,
    /// The filters as a query string, for the pager's links.
    qs: String,
    flash: Flash,
    can_operate: bool,
    prev: Option<u64>,
    next: Option<u64>,
    states: [&'static str; 10],
    templates: Vec<&'a str>,
    sources: Vec<&'a str>,
}

async fn show_vps(state: web::Data<AppState>, user: UiUser, id: web::Path<String>, req: HttpRequest) -> Page {
    let id = VpsId::from(id.into_inner());
    let Some(vps) = state.store.vps_detail(&id).await.map_err(anyhow_internal)? else {
        return Err(UiError::status(
            StatusCode::NOT_FOUND,
            "There is no VPS with this id. It may have been typed wrong.",
        ));
    };
    let timeline = state.store.vps_timeline(&id).await.map_err(anyhow_internal)?;
    let now = chrono::Utc::now();
    let links: Vec<LinkRow> = crate::upgrade::links::links_of_vps(&state.store, &id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|l| LinkRow {
            state: l.state(now),
            created_at: l.created_at.to_rfc3339(),
            expires_at: l.expires_at.to_rfc3339(),
            id: l.id,
            issued_by: l.issued_by,
        })
        .collect();
    let live = vps.row.state.is_live();
    let dead_ops: Vec<&TimelineEntry> =
        timeline.iter().filter(|t| matches!(t, TimelineEntry::Operation(op) if op.state == OpState::Dead)).collect();
    // The images a rebuild may choose: the template's own first, then its allowed ones.
    let mut rebuild_images: Vec<RebuildImage> = Vec::new();
    let from_row = vps.template_row.as_ref().map(|t| t.rebuild_images()).unwrap_or_default();
    for img in vps.row.template_image.iter().chain(&vps.row.allowed_images).chain(&from_row) {
        if !img.is_empty() && !rebuild_images.iter().any(|r| r.id == img) {
            rebuild_images.push(RebuildImage { id: img, current: vps.row.image_id.as_ref() == Some(img) });
        }
    }
    let title = if vps.row.name.is_empty() { "VPS" } else { vps.row.name.as_str() };
    let ctx = VpsPage {
        vps: &vps,
        timeline: &timeline,
        live,
        flash: flash(&req),
        dead_ops,
        csrf: &user.0.csrf,
        can_operate: user.0.can(Role::Operator) && live,
        upgrades: state.config.stripe.enabled,
        links,
        portal_links: super::portal_links::rows(&state, &id).await,
        can_restore: user.0.can(Role::Operator)
            && vps.row.state == crate::lifecycle::VpsState::Deleted
            && vps.row.server_id.is_some()
            && state.config.provider.sangfor.delete_mode == crate::config::DeleteMode::RecycleBin,
        rebuild_images,
    };
    render(&state, &user.0, "admin/vps_detail.html", title, "vps", ctx)
}

/// One VPS: its details, actions, upgrade links and timeline.
#[derive(Serialize)]
struct VpsPage<'a> {
    vps: &'a VpsDetail,
    timeline: &'a [TimelineEntry],
    /// Not deleted.
    live: bool,
    flash: Flash,
    /// Its dead operations, each with a retry button.
    dead_ops: Vec<&'a TimelineEntry>,
    csrf: &'a str,
    can_operate: bool,
    /// Whether paid upgrades are on (Stripe).
    upgrades: bool,
    links: Vec<LinkRow>,
    portal_links: Vec<super::portal_links::PortalLinkRow>,
    /// Deleted, with its VM in SCP's recycle bin: it can be restored.
    can_restore: bool,
    rebuild_images: Vec<RebuildImage<'a>>,
}

/// An upgrade link of the VPS.
#[derive(Serialize)]
struct LinkRow {
    id: LinkId,
    state: &'static str,
    issued_by: String,
    created_at: String,
    expires_at: String,
}

/// An image a rebuild may choose.
#[derive(Serialize)]
struct RebuildImage<'a> {
    id: &'a str,
    /// The image the VM runs now.
    current: bool,
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
    /// For `power`: start, stop, force_stop or reboot.
    #[serde(default)]
    power: String,
}

async fn act_on_vps(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<ActionForm>,
) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    let id = VpsId::from(id.into_inner());
    let back = format!("/vps/{id}");
    let Some(action) = Action::parse(&form.action) else {
        return Ok(redirect_msg(&back, false, "Unknown action."));
    };
    if action == Action::Restore && state.config.provider.sangfor.delete_mode == crate::config::DeleteMode::Permanent {
        return Ok(redirect_msg(
            &back,
            false,
            "provider.sangfor.delete_mode is permanent: deleted VMs cannot be restored.",
        ));
    }
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
        Action::Power => json!({ "action": form.power }),
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
    let id = VpsId::from(id.into_inner());
    let Some(vps) = state.store.revealed_vps(&id).await.map_err(anyhow_internal)? else {
        return Err(UiError::status(StatusCode::NOT_FOUND, "There is no VPS with this id."));
    };
    let Some(sealed) = vps.root_password else {
        return Ok(redirect_msg(&format!("/vps/{id}"), false, "This VPS has no stored password yet."));
    };
    let password =
        state.sealer.open(&sealed, &crate::secrets::root_password_place(id.as_str())).map_err(anyhow_internal)?;
    state
        .store
        .record_activity(
            Level::Warning,
            &p.actor(),
            Some(id.as_str()),
            &format!("{} revealed the root password", p.actor()),
            json!({}),
        )
        .await
        .map_err(anyhow_internal)?;
    let ctx = RootPasswordPage { id: id.as_str(), name: vps.name.as_deref(), password: password.expose() };
    render(&state, p, "admin/reveal.html", "Root password", "vps", ctx)
}

/// A VPS's root password, shown to an operator who asked for it.
#[derive(Serialize)]
struct RootPasswordPage<'a> {
    id: &'a str,
    name: Option<&'a str>,
    password: &'a str,
}

async fn new_vps_form(state: web::Data<AppState>, user: UiUser, req: HttpRequest) -> Page {
    let p = user.require(Role::Operator)?;
    let templates = state.store.templates_with_plans().await.map_err(anyhow_internal)?;
    let ctx = NewVpsPage { templates, csrf: &p.csrf, flash: flash(&req) };
    render(&state, p, "admin/vps_new.html", "New VPS", "vps", ctx)
}

/// The form that creates a VPS by hand.
#[derive(Serialize)]
struct NewVpsPage<'a> {
    templates: Vec<TemplateWithPlans>,
    csrf: &'a str,
    flash: Flash,
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
    let id = OperationId::from(id.into_inner());
    match admin::retry_operation(&state.store, Some(&state.handles.registry), &id, &p.actor()).await {
        Ok(vps) => Ok(redirect_msg(&format!("/vps/{vps}"), true, "Retry started: a fresh series of attempts.")),
        Err(e) => Ok(redirect_msg("/", false, &format!("{e:#}"))),
    }
}

async fn decide_operation(state: &AppState, user: &UiUser, id: &OperationId, form: &CsrfForm, approve: bool) -> Page {
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
    decide_operation(&state, &user, &OperationId::from(id.into_inner()), &form, true).await
}

async fn reject_operation(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    decide_operation(&state, &user, &OperationId::from(id.into_inner()), &form, false).await
}

async fn issue_upgrade_link(
    state: web::Data<AppState>,
    user: UiUser,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    let p = user.require(Role::Operator)?;
    check_csrf(p, &form._csrf)?;
    let id = VpsId::from(id.into_inner());
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
    let id = LinkId::from(id.into_inner());
    let link = crate::upgrade::links::link_by_id(&state.store, &id).await.map_err(anyhow_internal)?;
    let back = link.as_ref().map_or_else(|| "/".to_string(), |l| format!("/vps/{}", l.vps));
    match crate::upgrade::revoke_link(&state.store, &id, &p.actor()).await {
        Ok(true) => Ok(redirect_msg(&back, true, "Upgrade link revoked.")),
        Ok(false) => Ok(redirect_msg(&back, false, "There is no such upgrade link.")),
        Err(e) => Ok(redirect_msg(&back, false, &format!("{e:#}"))),
    }
}
