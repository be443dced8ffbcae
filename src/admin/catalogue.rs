//! Templates, plan mappings and trying a payload on a source: what turns a billing plan into
//! a VPS.

use std::collections::BTreeMap;

use serde_json::json;

use crate::config::Config;
use crate::db::Store;
use crate::db::models::template::ImageRef;
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
    for (alias, image) in &t.images {
        anyhow::ensure!(
            !alias.trim().is_empty() && !alias.contains(['=', ',', ' ']),
            "image alias {alias:?}: use letters, digits, '-', '.' and '_' (e.g. ubuntu-22.04)"
        );
        let empty = match image {
            ImageRef::Id(id) => id.trim().is_empty(),
            ImageRef::PerAz(by_az) => by_az.is_empty() || by_az.values().any(|id| id.trim().is_empty()),
        };
        anyhow::ensure!(!empty, "image alias {alias:?} names no SCP image id");
    }
    let rule = t.hostname_rule.trim();
    anyhow::ensure!(
        matches!(rule, "" | "any" | "none") || rule.strip_prefix("*.").is_some_and(|d| !d.is_empty()),
        "hostname rule {rule:?}: leave it empty (any valid hostname), or use none or *.example.com"
    );
    store.upsert_template(t, actor).await
}

/// The template's locations that `[locations]` does not configure (an order choosing one
/// would be parked): the UI and the API refuse to save them.
pub fn unconfigured_locations(t: &Template, config: &Config) -> Result<(), String> {
    let missing: Vec<&str> =
        t.locations.iter().filter(|l| !config.locations.contains_key(*l)).map(String::as_str).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "location(s) {} are not configured: add [locations.<name>] with its candidates to appliance.toml (configured: {})",
        missing.join(", "),
        if config.locations.is_empty() {
            "none".to_string()
        } else {
            config.locations.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    ))
}

/// The images of a template as the form shows them: one alias per line, `alias = image-id`
/// or `alias = az-1:image-a, az-2:image-b`.
pub fn images_text(images: &BTreeMap<String, ImageRef>) -> String {
    images
        .iter()
        .map(|(alias, r)| match r {
            ImageRef::Id(id) => format!("{alias} = {id}"),
            ImageRef::PerAz(by_az) => {
                format!(
                    "{alias} = {}",
                    by_az.iter().map(|(az, id)| format!("{az}:{id}")).collect::<Vec<_>>().join(", ")
                )
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads [`images_text`] back; the error names the line.
pub fn parse_images(text: &str) -> anyhow::Result<BTreeMap<String, ImageRef>> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let Some((alias, value)) = line.split_once('=') else {
            anyhow::bail!("images, line {}: {line:?} is not `alias = image-id`", n + 1);
        };
        let value = value.trim();
        let image = if value.contains(':') {
            let mut by_az = BTreeMap::new();
            for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((az, id)) = part.split_once(':') else {
                    anyhow::bail!("images, line {}: {part:?} is not `az:image-id`", n + 1);
                };
                by_az.insert(az.trim().to_string(), id.trim().to_string());
            }
            ImageRef::PerAz(by_az)
        } else {
            ImageRef::Id(value.to_string())
        };
        out.insert(alias.trim().to_string(), image);
    }
    Ok(out)
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
