//! Templates, plan mappings and trying a payload on a source: what turns a billing plan into
//! a VPS.

use serde_json::json;

use crate::db::Store;
pub use crate::db::models::template::{PlanMapping, TemplateWithPlans};
use crate::lifecycle::Level;
use crate::lifecycle::{Template, TemplateName};

/// Creates or updates a template by name.
pub async fn save_template(store: &Store, t: &Template, actor: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!t.name.as_str().trim().is_empty(), "a template needs a name");
    anyhow::ensure!(
        !t.az_id.is_empty() && !t.image_id.is_empty() && !t.storage_tag_id.is_empty(),
        "a template needs an AZ, an image and a storage tag"
    );
    anyhow::ensure!(t.cores >= 1 && t.memory_mb >= 256 && t.disk_gb >= 1, "cores ≥ 1, memory ≥ 256 MB, disk ≥ 1 GB");
    anyhow::ensure!(t.name_pattern.contains("{id}"), "the VM name pattern must contain {{id}}");
    store.upsert_template(t, actor).await
}

/// Maps a source's plan to a template (replacing an earlier mapping of that plan).
pub async fn map_plan(
    store: &Store,
    source: &str,
    plan: &str,
    template: &TemplateName,
    actor: &str,
) -> anyhow::Result<()> {
    anyhow::ensure!(!source.is_empty() && !plan.is_empty(), "a mapping needs a source and a plan");
    anyhow::ensure!(store.template_by_name(template).await?.is_some(), "no template named {template:?}");
    store.map_plan(source, plan, template, actor).await
}

/// Removes the mapping of a source's plan; false when there was none.
pub async fn unmap_plan(store: &Store, source: &str, plan: &str, actor: &str) -> anyhow::Result<bool> {
    let gone = store.delete_plan_mapping(source, plan).await?;
    if gone {
        store
            .record_activity(
                Level::Info,
                actor,
                None,
                &format!("{actor} removed the mapping of plan {plan} of {source}"),
                json!({ "source": source, "plan": plan }),
            )
            .await?;
    }
    Ok(gone)
}

/// Why a source could not be tried.
#[derive(Debug, thiserror::Error)]
pub enum SourceTestError {
    #[error("there is no source named {name:?}: configured sources are {known:?}")]
    NoSuchSource { name: String, known: Vec<String> },
    /// The plugin refused the payload (or could not run); the text says why.
    #[error("{0}")]
    Refused(String),
}

/// Runs source `name`'s plugin over `payload` as a delivery to `/webhooks/<name>` with its
/// settings, and answers the normalized events. Nothing is stored or applied: this is the
/// sources page's test box, for the UI, the API and the CLI alike.
pub async fn test_source(
    config: &crate::config::Config,
    plugins: &actix::Addr<crate::actors::plugins::PluginHost>,
    name: &str,
    payload: bytes::Bytes,
) -> Result<Vec<crate::billing::BillingEvent>, SourceTestError> {
    let Some(source) = config.sources.get(name) else {
        return Err(SourceTestError::NoSuchSource {
            name: name.to_string(),
            known: config.sources.keys().cloned().collect(),
        });
    };
    let request = crate::plugin_host::SourceRequest {
        source: name.to_string(),
        path: format!("/webhooks/{name}"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: payload,
        settings: source.settings.clone(),
    };
    let parse = crate::actors::plugins::ParseWebhook { plugin: source.plugin.clone(), request };
    match plugins.send(parse).await {
        Ok(Ok(events)) => Ok(events),
        Ok(Err(e)) => Err(SourceTestError::Refused(e.to_string())),
        Err(e) => Err(SourceTestError::Refused(format!("the plugin runtime is not running: {e}"))),
    }
}
