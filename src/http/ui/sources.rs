//! Webhook sources, the loaded plugins and the sources' test box.

use actix_web::http::StatusCode;
use actix_web::web;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Page, render};
use crate::auth::Role;
use crate::http::AppState;
use crate::http::session::{UiError, UiUser, check_csrf};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sources", web::get().to(list_sources)).route("/sources/{name}/test", web::post().to(test_source));
}

async fn list_sources(state: web::Data<AppState>, user: UiUser) -> Page {
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
