//! Templates (what a plan gets) and plan mappings.

use actix_web::{HttpRequest, web};
use serde::{Deserialize, Serialize};

use super::{Flash, Page, anyhow_internal, flash, redirect_msg, render};
use crate::actors::gateway::{
    Image, ListImages, ListNetworks, ListStorageTags, ListSubnets, ListZones, Network, StorageTag, Subnet, Zone,
};
use crate::admin::{self, TemplateWithPlans};
use crate::auth::Role;
use crate::http::AppState;
use crate::http::session::{UiUser, check_csrf};
use crate::lifecycle::{Template, TemplateName};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/templates", web::get().to(list_templates))
        .route("/templates/edit", web::get().to(edit_template_form))
        .route("/templates", web::post().to(save_template))
        .route("/templates/map", web::post().to(map_plan));
}

async fn list_templates(state: web::Data<AppState>, user: UiUser, req: HttpRequest) -> Page {
    let rows = state.store.templates_with_plans().await.map_err(anyhow_internal)?;
    let ctx = TemplatesPage {
        rows,
        csrf: &user.0.csrf,
        is_admin: user.0.can(Role::Admin),
        flash: flash(&req),
        sources: state.config.sources.keys().map(String::as_str).collect(),
    };
    render(&state, &user.0, "admin/templates.html", "Templates", "templates", ctx)
}

/// The templates with the plans mapped to them, and the form that maps a plan.
#[derive(Serialize)]
struct TemplatesPage<'a> {
    rows: Vec<TemplateWithPlans>,
    csrf: &'a str,
    is_admin: bool,
    flash: Flash,
    /// The configured sources, whose plans can be mapped.
    sources: Vec<&'a str>,
}

#[derive(Deserialize)]
struct TemplateQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    az: String,
    /// The provider whose AZs, images and networks the pickers offer.
    #[serde(default)]
    provider: Option<String>,
}

/// The new/edit form, with pickers filled from SCP through the gateway (a field falls back to
/// free text when SCP cannot be asked).
async fn edit_template_form(
    state: web::Data<AppState>,
    user: UiUser,
    q: web::Query<TemplateQuery>,
    req: HttpRequest,
) -> Page {
    let p = user.require(Role::Admin)?;
    let all = state.store.templates_with_plans().await.map_err(anyhow_internal)?;
    let mut current =
        all.into_iter().find(|t| t.template.name == q.name.as_str()).map(|t| t.template).unwrap_or_default();
    if let Some(p) = &q.provider {
        current.provider = if p == crate::config::DEFAULT_PROVIDER { String::new() } else { p.clone() };
    }
    let az = if q.az.is_empty() { current.az_id.clone() } else { q.az.clone() };
    let gw = state.handles.gateways.get(&current.provider).unwrap_or(&state.handles.gateway);
    let mut problems = Vec::new();
    let zones = pick(gw.send(ListZones).await, "AZs", &mut problems);
    let (mut images, mut tags, mut vpcs, mut subnets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    if !az.is_empty() {
        images = pick(gw.send(ListImages { zone_id: Some(az.clone()) }).await, "images", &mut problems);
        tags = pick(gw.send(ListStorageTags { zone_id: az.clone() }).await, "storage tags", &mut problems);
        vpcs = pick(gw.send(ListNetworks { zone_id: Some(az.clone()) }).await, "VPCs", &mut problems);
        let vpc = current.vpc_id.clone();
        if !vpc.is_empty() {
            subnets = pick(gw.send(ListSubnets { network_id: vpc }).await, "subnets", &mut problems);
        }
    }
    let ctx = TemplateFormPage {
        providers: state.handles.gateways.iter().map(|(n, _)| n.to_string()).collect(),
        several_providers: state.handles.gateways.len() > 1,
        images_text: admin::images_text(&current.images),
        locations: state.config.locations.keys().cloned().collect(),
        t: current,
        az,
        zones,
        images,
        tags,
        vpcs,
        subnets,
        problems,
        csrf: &p.csrf,
        flash: flash(&req),
        editing: !q.name.is_empty(),
    };
    render(&state, p, "admin/template_form.html", "Template", "templates", ctx)
}

/// The new/edit form of a template, with the choices SCP offers for its fields.
#[derive(Serialize)]
struct TemplateFormPage<'a> {
    t: Template,
    /// The template's order images as the form edits them.
    images_text: String,
    /// The configured locations an order may be offered.
    locations: Vec<String>,
    /// The configured providers (`default` first); more than one shows a picker.
    providers: Vec<String>,
    several_providers: bool,
    /// The AZ whose images, storage tags and VPCs are offered.
    az: String,
    zones: Vec<Zone>,
    images: Vec<Image>,
    tags: Vec<StorageTag>,
    vpcs: Vec<Network>,
    subnets: Vec<Subnet>,
    /// What could not be asked of SCP.
    problems: Vec<String>,
    csrf: &'a str,
    flash: Flash,
    editing: bool,
}

/// A picker's choices from the gateway's answer; a failure becomes a note on the page (the
/// field falls back to free text) and no choices.
fn pick<T, E: std::fmt::Display>(
    answer: Result<Result<Vec<T>, E>, actix::MailboxError>,
    what: &str,
    problems: &mut Vec<String>,
) -> Vec<T> {
    match answer {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            problems.push(format!("{what}: {e}"));
            Vec::new()
        }
        Err(e) => {
            problems.push(format!("{what}: {e}"));
            Vec::new()
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
    /// Images an order may choose, one `alias = image-id` per line.
    #[serde(default)]
    images: String,
    /// Locations an order may choose, comma-separated.
    #[serde(default)]
    locations: String,
    #[serde(default)]
    hostname_rule: String,
    /// The provider its AZ is on (empty: default).
    #[serde(default)]
    provider: String,
}

async fn save_template(state: web::Data<AppState>, user: UiUser, form: web::Form<TemplateForm>) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    let f = form.into_inner();
    let images = match admin::parse_images(&f.images) {
        Ok(i) => i,
        Err(e) => return Ok(redirect_msg("/templates", false, &format!("{e:#}"))),
    };
    let t = Template {
        name: TemplateName::from(f.name.trim()),
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
        images,
        locations: f.locations.split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect(),
        hostname_rule: f.hostname_rule.trim().to_string(),
        provider: match f.provider.trim() {
            crate::config::DEFAULT_PROVIDER => String::new(),
            other => other.to_string(),
        },
    };
    if state.handles.gateways.get(&t.provider).is_none() {
        return Ok(redirect_msg("/templates", false, &format!("provider {:?} is not configured", t.provider)));
    }
    let saved = match admin::unconfigured_locations(&t, &state.config) {
        Ok(()) => admin::save_template(&state.store, &t, &p.actor()).await,
        Err(e) => Err(anyhow::anyhow!(e)),
    };
    match saved {
        Ok(()) => Ok(redirect_msg("/templates", true, &format!("Template {} saved.", t.name))),
        Err(e) => {
            let back = format!(
                "/templates/edit?name={}",
                url::form_urlencoded::byte_serialize(t.name.as_str().as_bytes()).collect::<String>()
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

async fn map_plan(state: web::Data<AppState>, user: UiUser, form: web::Form<MapForm>) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    let template = TemplateName::from(form.template.as_str());
    match admin::map_plan(&state.store, form.source.trim(), form.plan.trim(), &template, &p.actor()).await {
        Ok(()) => Ok(redirect_msg("/templates", true, "Plan mapped.")),
        Err(e) => Ok(redirect_msg("/templates", false, &format!("{e:#}"))),
    }
}
