//! The dashboard: VPS counts by state, operation figures, the gateway and charts.

use actix_web::web;
use serde::Serialize;

use super::{Page, anyhow_internal, render};
use crate::actors::gateway::{GatewayStatus, GetGatewayStatus};
use crate::admin::{self, FailedOperation, HeldOperation, InboxSummary};
use crate::auth::Role;
use crate::http::AppState;
use crate::http::charts;
use crate::http::session::UiUser;
use crate::lifecycle::kpi;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(show_dashboard));
}

async fn show_dashboard(state: web::Data<AppState>, user: UiUser) -> Page {
    let store = &state.store;
    let st = store.clone();
    let counts =
        state.vps_counts.get(move || async move { st.vps_counts_by_state().await }).await.map_err(anyhow_internal)?;
    let total: u64 = counts.iter().map(|c| c.1).sum();
    let kpis = kpi::compute(store).await.map_err(anyhow_internal)?;
    let webhooks = admin::webhook_volume(store).await.map_err(anyhow_internal)?;
    let ops = admin::operation_series(store).await.map_err(anyhow_internal)?;
    let failures = store.recent_failures(10).await.map_err(anyhow_internal)?;
    let held = store.held_operations().await.map_err(anyhow_internal)?;
    let parked = store.inbox_page("parked", 1).await.map_err(anyhow_internal)?;
    let templates = store.templates_with_plans().await.map_err(anyhow_internal)?;
    let gateway = state.handles.gateway.send(GetGatewayStatus).await.ok();
    let providers = providers(&state, &templates).await.map_err(anyhow_internal)?;
    let (breaker, in_flight, wait_ms) = gateway_figures(&state.metrics);
    let holds_lease = state.handles.holds_lease();
    let cluster = admin::cluster_status(store, &state.config, holds_lease).await.map_err(anyhow_internal)?;
    let lease_text = cluster.as_ref().map(lease_text).unwrap_or_default();
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
    let ctx = DashboardPage {
        counts: counts.iter().map(|(state, n)| StateCount { state, n: *n }).collect(),
        total,
        kpis: KpiTiles {
            success: format!("{:.1} %", kpis.automation_success_rate * 100.0),
            errors: format!("{:.1} %", kpis.error_rate * 100.0),
            provisioning: fmt_secs(kpis.avg_provisioning_secs),
            deprovisioning: fmt_secs(kpis.avg_deprovisioning_secs),
            webhooks: format!("{:.2}", kpis.webhooks_per_minute),
            manual: kpis.manual_interventions,
        },
        webhook_chart: charts::bars(&webhooks, true, "", "No webhooks in the last 24 hours."),
        provisioning_chart: charts::bars(
            &ops[..2],
            false,
            " s",
            "No VPS was provisioned or deleted in the last 24 hours.",
        ),
        failure_chart: charts::bars(&ops[2..], true, "", "No operation failed in the last 24 hours."),
        failures,
        held_count: held.len(),
        held,
        parked: parked.rows,
        parked_total: parked.total,
        gateway,
        several_providers: providers.len() > 1,
        providers,
        breaker: match breaker as i64 {
            0 => "closed",
            1 => "half-open",
            _ => "open",
        },
        rate_wait_ms: format!("{wait_ms:.1}"),
        in_flight: in_flight as i64,
        guard_limit: state.config.policy.max_destructive_per_hour,
        cluster,
        lease_text,
        csrf: &user.0.csrf,
        is_admin: user.0.can(Role::Admin),
        setup,
    };
    render(&state, &user.0, "admin/dashboard.html", "Dashboard", "dashboard", ctx)
}

/// Who holds the work lease and until when, in words.
fn lease_text(c: &admin::ClusterStatus) -> String {
    match (&c.lease_node, c.lease_counter, c.lease_expires_in_secs) {
        (Some(node), Some(counter), Some(left)) if left >= 0.0 => format!(
            "held by {node} (counter {counter}); renewed every {} s, it expires in {left:.0} s if {node} stops renewing",
            (c.lease_secs / 3).max(1)
        ),
        (Some(node), Some(counter), Some(left)) => {
            format!(
                "expired {:.0} s ago (last held by {node}, counter {counter}): the next node to ask takes it",
                -left
            )
        }
        _ => "not taken yet: the first node to ask takes it".to_string(),
    }
}

/// The dashboard: VPS counts, key figures, charts, what waits for an admin, the SCP gateway.
#[derive(Serialize)]
struct DashboardPage<'a> {
    counts: Vec<StateCount<'a>>,
    total: u64,
    kpis: KpiTiles,
    /// The charts, as SVG.
    webhook_chart: String,
    provisioning_chart: String,
    failure_chart: String,
    failures: Vec<FailedOperation>,
    held: Vec<HeldOperation>,
    held_count: usize,
    parked: Vec<InboxSummary>,
    parked_total: u64,
    gateway: Option<GatewayStatus>,
    /// Each provider's health and the capacity of the AZs it builds in.
    providers: Vec<ProviderView>,
    several_providers: bool,
    /// `closed`, `half-open` or `open` (the worst over the providers).
    breaker: &'static str,
    rate_wait_ms: String,
    in_flight: i64,
    guard_limit: u32,
    /// This node and the work lease, when several nodes share the store.
    cluster: Option<admin::ClusterStatus>,
    lease_text: String,
    csrf: &'a str,
    is_admin: bool,
    /// What is still to be set up, as sentences.
    setup: Vec<&'static str>,
}

/// VPSs in one state.
#[derive(Serialize)]
struct StateCount<'a> {
    state: &'a str,
    n: u64,
}

/// The key figures, formatted for their tiles.
#[derive(Serialize)]
struct KpiTiles {
    success: String,
    errors: String,
    provisioning: String,
    deprovisioning: String,
    webhooks: String,
    manual: u64,
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
                breaker = f64::max(breaker, m.get_gauge().get_value());
            } else if name == names::SCP_IN_FLIGHT {
                in_flight += m.get_gauge().get_value();
            } else if name == names::SCP_RATE_LIMIT_WAIT {
                sum += m.get_histogram().get_sample_sum();
                count += m.get_histogram().get_sample_count();
            }
        }
    }
    (breaker, in_flight, if count > 0 { sum / count as f64 * 1000.0 } else { 0.0 })
}

/// One provider on the dashboard.
#[derive(Serialize)]
struct ProviderView {
    name: String,
    configured: bool,
    problem: Option<String>,
    /// `closed`, `half-open` or `open`.
    breaker: &'static str,
    zones: Vec<ZoneView>,
}

/// One AZ's capacity: used, reserved (VMs being created), free.
#[derive(Serialize)]
struct ZoneView {
    az: String,
    /// The memory bar (SVG), and the figures in words.
    bar: String,
    text: String,
}

/// The providers and, for each, the AZs templates and locations build in, with their
/// capacity (SCP's answers kept for customer pages, so the dashboard costs SCP nothing more).
async fn providers(state: &AppState, templates: &[admin::TemplateWithPlans]) -> anyhow::Result<Vec<ProviderView>> {
    use std::collections::BTreeSet;

    use crate::actors::gateway::GetCapacityCached;
    use crate::config::DEFAULT_PROVIDER;
    let mut zones: BTreeSet<(String, String)> = BTreeSet::new();
    for t in templates {
        let p = if t.template.provider.is_empty() { DEFAULT_PROVIDER } else { t.template.provider.as_str() };
        if !t.template.az_id.is_empty() {
            zones.insert((p.to_string(), t.template.az_id.clone()));
        }
    }
    for l in state.config.locations.values() {
        for c in &l.candidates {
            zones.insert((c.provider.clone(), c.az.clone()));
        }
    }
    let since = chrono::Utc::now() - chrono::Duration::from_std(crate::actors::gateway::CAPACITY_CACHE)?;
    let mut out = Vec::new();
    for (name, gw) in state.handles.gateways.iter() {
        let Ok(status) = gw.send(GetGatewayStatus).await else { continue };
        let mut views = Vec::new();
        if status.configured {
            for (_, az) in zones.iter().filter(|(p, _)| p == name) {
                let cap = gw.send(GetCapacityCached { zone_id: Some(az.clone()) }).await;
                let reserved = state.store.reserved_in(name, az, since).await?;
                let view = match cap {
                    Ok(Ok(cap)) => match &cap.memory {
                        Some(m) => {
                            let r = reserved.memory_mb as f64;
                            ZoneView {
                                az: az.clone(),
                                bar: crate::http::charts::capacity_bar(
                                    m.used,
                                    r,
                                    m.total,
                                    &format!("memory of AZ {az}"),
                                ),
                                text: format!(
                                    "memory {:.0} used · {:.0} reserved · {:.0} free of {:.0} GB{}",
                                    m.used / 1024.0,
                                    r / 1024.0,
                                    (m.free() - r).max(0.0) / 1024.0,
                                    m.total / 1024.0,
                                    cap.cpu.as_ref().map_or(String::new(), |c| format!(
                                        "; vCPU {:.0} used · {} reserved · {:.0} free",
                                        c.used,
                                        reserved.cores,
                                        (c.free() - reserved.cores as f64).max(0.0)
                                    ))
                                ),
                            }
                        }
                        None => {
                            ZoneView { az: az.clone(), bar: String::new(), text: "SCP reports no memory figure".into() }
                        }
                    },
                    Ok(Err(e)) => {
                        ZoneView { az: az.clone(), bar: String::new(), text: format!("capacity unknown: {e}") }
                    }
                    Err(_) => {
                        ZoneView { az: az.clone(), bar: String::new(), text: "the gateway is not running".into() }
                    }
                };
                views.push(view);
            }
        }
        out.push(ProviderView {
            name: name.to_string(),
            configured: status.configured,
            problem: status.problem.clone(),
            breaker: match status.breaker {
                crate::actors::gateway::Breaker::Closed => "closed",
                crate::actors::gateway::Breaker::HalfOpen => "half-open",
                crate::actors::gateway::Breaker::Open => "open",
            },
            zones: views,
        });
    }
    Ok(out)
}
