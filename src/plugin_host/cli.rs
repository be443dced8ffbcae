//! `vmauto plugin list | test | check`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};

use super::{Catalogue, Limits, PluginKind, PluginRuntime, SourceRequest, TemplateChoice, check_component};
use crate::billing::BillingEvent;
use crate::config::Config;

/// The runtime with the bundled plugins and the configured directory's.
fn runtime(config: &Config) -> anyhow::Result<(PluginRuntime, String)> {
    let (runtime, failures) = PluginRuntime::with_plugins(Limits::default(), Some(&config.plugin_dir()))?;
    let mut notes = String::new();
    for f in failures {
        let _ = writeln!(notes, "warning: {f}");
    }
    Ok((runtime, notes))
}

/// `vmauto plugin list`: every loaded plugin with its kind, origin and hash.
pub fn list(config: &Config) -> anyhow::Result<String> {
    let (runtime, mut out) = runtime(config)?;
    let _ = writeln!(out, "{:<18} {:<15} {:>8}  {:<16} origin", "name", "kind", "bytes", "sha256");
    for p in runtime.list() {
        let _ = writeln!(
            out,
            "{:<18} {:<15} {:>8}  {:<16} {}",
            p.name,
            p.kind.to_string(),
            p.size,
            &p.sha256[..16],
            p.origin
        );
    }
    let _ = writeln!(out, "plugin directory: {} (contract {})", config.plugin_dir().display(), super::CONTRACT_VERSION);
    Ok(out)
}

/// Options of `vmauto plugin test`.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// `name=value` headers.
    pub headers: Vec<String>,
    /// The request path (default `/webhooks/<source>`).
    pub path: Option<String>,
    /// The source whose settings apply (default: the first configured source using the
    /// plugin, else `test`).
    pub source: Option<String>,
    /// Calls to time after the first (0: none).
    pub repeat: u32,
}

/// `vmauto plugin test <plugin> <payload>`: the normalized events as JSON, or the error.
///
/// For a plan mapper the payload is `{"event": <BillingEvent>, "catalogue": {"templates":
/// […], "mappings": […]}}` and the answer is the choice.
pub fn test(config: &Config, plugin: &str, payload: &Path, options: &TestOptions) -> anyhow::Result<String> {
    let body = std::fs::read(payload).with_context(|| format!("cannot read {}", payload.display()))?;
    let (runtime, notes) = runtime(config)?;
    let source = options.source.clone().unwrap_or_else(|| {
        config.sources.iter().find(|(_, s)| s.plugin == plugin).map(|(n, _)| n.clone()).unwrap_or_else(|| "test".into())
    });
    let settings: BTreeMap<String, String> =
        config.sources.get(&source).map(|s| s.settings.clone()).unwrap_or_default();
    let kind = runtime.list().into_iter().find(|p| p.name == plugin).map(|p| p.kind);
    let timing;
    let out = match kind {
        Some(PluginKind::PlanMapper) => {
            #[derive(serde::Deserialize)]
            struct MapperInput {
                event: BillingEvent,
                #[serde(default)]
                catalogue: Catalogue,
            }
            let input: MapperInput = serde_json::from_slice(&body)
                .with_context(|| format!("{}: expected {{\"event\": …, \"catalogue\": …}}", payload.display()))?;
            let catalogue = std::sync::Arc::new(input.catalogue);
            let call = || runtime.choose_template_blocking(plugin, &source, &input.event, &catalogue, &settings);
            let choice = call()?;
            timing = repeat(options.repeat, call)?;
            match choice {
                TemplateChoice::Template(t) => format!("template: {t}"),
                TemplateChoice::None(reason) => format!("no template: {reason}"),
            }
        }
        _ => {
            let mut headers = Vec::new();
            for h in &options.headers {
                let Some((k, v)) = h.split_once('=').or_else(|| h.split_once(':')) else {
                    bail!("--header {h}: expected NAME=VALUE");
                };
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
            let req = SourceRequest {
                path: options.path.clone().unwrap_or_else(|| format!("/webhooks/{source}")),
                source,
                headers,
                body: body.into(),
                settings,
            };
            let call = || runtime.parse_blocking(plugin, &req);
            let events = call()?;
            timing = repeat(options.repeat, call)?;
            serde_json::to_string_pretty(&events)?
        }
    };
    Ok(format!("{notes}{out}{timing}"))
}

/// Runs `call` `calls` times on this thread and says how long a call took.
fn repeat<T>(calls: u32, call: impl Fn() -> Result<T, super::PluginError>) -> anyhow::Result<String> {
    if calls == 0 {
        return Ok(String::new());
    }
    let started = std::time::Instant::now();
    for _ in 0..calls {
        std::hint::black_box(call()?);
    }
    let took = started.elapsed().as_secs_f64();
    Ok(format!(
        "\n{calls} more calls in {:.1} ms: {:.1} µs a call, {:.0} calls a second (one thread, one instance reused)\n",
        took * 1e3,
        took * 1e6 / f64::from(calls),
        f64::from(calls) / took
    ))
}

/// `vmauto plugin check <file.wasm>`: the contract version, kind, exports and imports.
pub fn check(file: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let report = check_component(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", file.display());
    let _ = writeln!(out, "  kind      {}", report.kind);
    let _ = writeln!(out, "  contract  vmauto:plugin@{}", report.contract_version);
    let _ = writeln!(out, "  exports   {}", report.exports.join(", "));
    let _ = writeln!(
        out,
        "  imports   {}",
        if report.imports.is_empty() { "none".to_string() } else { report.imports.join(", ") }
    );
    Ok(out)
}
