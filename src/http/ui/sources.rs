//! Webhook sources, the loaded plugins and the sources' test box.

use actix_web::http::StatusCode;
use actix_web::web;
use serde::{Deserialize, Serialize};

use super::{Page, render};
use crate::auth::Role;
use crate::http::AppState;
use crate::http::session::{UiError, UiUser, check_csrf};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sources", web::get().to(list_sources)).route("/sources/{name}/test", web::post().to(test_source));
}

async fn list_sources(state: web::Data<AppState>, user: UiUser) -> Page {
    let (plugins, plugins_error) = plugin_rows(&state).await;
    let ctx = SourcesPage {
        rows: source_rows(&state),
        plugins,
        plugins_error,
        csrf: &user.0.csrf,
        is_admin: user.0.can(Role::Admin),
        result: None,
        tested: None,
        payload: None,
    };
    render(&state, &user.0, "admin/sources.html", "Sources", "sources", ctx)
}

/// The sources page, with the result of a test when one was run.
#[derive(Serialize)]
struct SourcesPage<'a> {
    rows: Vec<SourceRow<'a>>,
    plugins: Vec<PluginRow>,
    /// Why the plugin runtime is not available.
    plugins_error: Option<String>,
    csrf: &'a str,
    is_admin: bool,
    result: Option<TestResult>,
    /// The source tested, and the payload it was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    tested: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
}

/// A configured source.
#[derive(Serialize)]
struct SourceRow<'a> {
    name: &'a str,
    plugin: &'a str,
    signature: String,
    /// Its webhook path (without the token).
    url: String,
}

/// A loaded plugin with its calls since start.
#[derive(Serialize)]
struct PluginRow {
    name: String,
    kind: String,
    origin: String,
    /// The first 16 hex digits of its SHA-256.
    sha256: String,
    ok: u64,
    refused: u64,
    failed: u64,
}

/// What a test of a source's plugin gave: the events, or why the plugin refused.
#[derive(Serialize)]
struct TestResult {
    ok: bool,
    text: String,
    /// Events found.
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<usize>,
}

/// The configured sources, as the sources page lists them.
fn source_rows(state: &AppState) -> Vec<SourceRow<'_>> {
    state
        .config
        .sources
        .iter()
        .map(|(name, s)| SourceRow {
            name,
            plugin: &s.plugin,
            signature: format!("{:?}", s.signature),
            url: format!("/webhooks/{name}"),
        })
        .collect()
}

/// The loaded plugins with their calls since start (ok, refused by the plugin, failed), read
/// from the plugin-call counters; or why the plugin runtime is not available.
async fn plugin_rows(state: &AppState) -> (Vec<PluginRow>, Option<String>) {
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
                    PluginRow {
                        name: p.name.clone(),
                        kind: p.kind.to_string(),
                        origin: p.origin.to_string(),
                        sha256: p.sha256[..16].to_string(),
                        ok,
                        refused,
                        failed,
                    }
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
async fn test_source(
    state: web::Data<AppState>,
    user: UiUser,
    name: web::Path<String>,
    form: web::Form<TestForm>,
) -> Page {
    let p = user.require(Role::Admin)?;
    check_csrf(p, &form._csrf)?;
    let payload = bytes::Bytes::from(form.payload.clone());
    let result = match crate::admin::test_source(&state.config, &state.handles.plugins, &name, payload).await {
        Ok(events) => TestResult {
            ok: true,
            text: serde_json::to_string_pretty(&events).unwrap_or_default(),
            n: Some(events.len()),
        },
        Err(crate::admin::SourceTestError::NoSuchSource { .. }) => {
            return Err(UiError::status(StatusCode::NOT_FOUND, "No such source."));
        }
        Err(e) => TestResult { ok: false, text: e.to_string(), n: None },
    };
    let (plugins, plugins_error) = plugin_rows(&state).await;
    let ctx = SourcesPage {
        rows: source_rows(&state),
        plugins,
        plugins_error,
        csrf: &p.csrf,
        is_admin: true,
        result: Some(result),
        tested: Some(&name),
        payload: Some(&form.payload),
    };
    render(&state, p, "admin/sources.html", "Sources", "sources", ctx)
}
