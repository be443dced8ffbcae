//! PluginHost: runs billing-source and plan-mapping plugins off the HTTP threads.
//!
//! The actor owns the [`PluginRuntime`] (wasmtime engine, compiled components, idle
//! instances). The runtime is built on first use, on tokio's blocking pool, so starting the
//! tree costs nothing; every call runs there too. A failed call fails only that request.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use tokio::sync::OnceCell;

use super::messages::Shutdown;
use super::supervisor::Supervision;
use crate::billing::BillingEvent;
use crate::config::Config;
use crate::plugin_host::{Catalogue, Limits, PluginError, PluginInfo, PluginRuntime, SourceRequest, TemplateChoice};
use crate::telemetry::metrics::Metrics;

/// Maps one verified delivery to billing events with the source's plugin.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<BillingEvent>, PluginError>")]
pub struct ParseWebhook {
    /// The plugin name (`sources.<name>.plugin`).
    pub plugin: String,
    pub request: SourceRequest,
}

/// Asks a plan mapper for the template of an event.
#[derive(Debug, Message)]
#[rtype(result = "Result<TemplateChoice, PluginError>")]
pub struct ChooseTemplate {
    /// The mapper plugin ([`crate::plugin_host::DEFAULT_MAPPER`] unless configured).
    pub plugin: String,
    pub source: String,
    pub event: BillingEvent,
    pub catalogue: Arc<Catalogue>,
    pub settings: BTreeMap<String, String>,
}

/// The loaded plugins.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<PluginInfo>, PluginError>")]
pub struct ListPlugins;

/// The runtime itself, for callers that want to call it without a mailbox hop.
#[derive(Debug, Message)]
#[rtype(result = "Result<Arc<PluginRuntime>, PluginError>")]
pub struct GetRuntime;

pub struct PluginHost {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    /// Built on first use.
    runtime: Arc<OnceCell<Arc<PluginRuntime>>>,
    sup: Supervision,
}

impl PluginHost {
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> Self {
        Self {
            config,
            metrics: metrics.clone(),
            runtime: Arc::new(OnceCell::new()),
            sup: Supervision::new("plugins", metrics),
        }
    }

    /// A future resolving to the runtime, loading the plugins the first time.
    fn runtime(&self) -> impl Future<Output = Result<Arc<PluginRuntime>, PluginError>> + 'static {
        let (cell, config) = (self.runtime.clone(), self.config.clone());
        async move {
            cell.get_or_try_init(|| async move {
                let loaded = tokio::task::spawn_blocking(move || load_runtime(&config))
                    .await
                    .map_err(|e| PluginError::Unavailable(e.to_string()))?;
                let (runtime, failures) = loaded.map_err(|e| PluginError::Unavailable(format!("{e:#}")))?;
                for failure in failures {
                    tracing::error!(error = %failure, "a plugin was not loaded");
                }
                for p in runtime.list() {
                    tracing::info!(plugin = %p.name, kind = %p.kind, sha256 = %p.sha256, "plugin loaded");
                }
                Ok(Arc::new(runtime))
            })
            .await
            .cloned()
        }
    }
}

/// The runtime with the bundled and the configured directory's plugins, compiled through
/// the disk cache when it is on and usable (in memory otherwise, with a warning).
fn load_runtime(config: &Config) -> anyhow::Result<(PluginRuntime, Vec<PluginError>)> {
    let limits = Limits::default();
    let runtime = match config.plugin_cache_dir() {
        None => PluginRuntime::new(limits)?,
        Some(dir) => PluginRuntime::with_disk_cache(limits, &dir).or_else(|e| {
            tracing::warn!(error = %format!("{e:#}"), "plugins are compiled at every start: the compile cache is unusable");
            PluginRuntime::new(limits)
        })?,
    };
    let started = std::time::Instant::now();
    let failures = runtime.load_all(Some(&config.plugin_dir()));
    if let Some((dir, hits, misses)) = runtime.disk_cache() {
        tracing::info!(
            cache = %dir.display(), hits, compiled = misses, took_ms = started.elapsed().as_millis() as u64,
            "plugins loaded through the compile cache"
        );
    }
    Ok((runtime, failures))
}

/// Counts a call by outcome and records its duration. Calls to plugins that are not loaded
/// are counted under `unknown_plugin` without the name (it comes from configuration, but a
/// label per typo would grow without bound).
fn observe(metrics: &Metrics, plugin: &str, call: &str, started: std::time::Instant, error: Option<&PluginError>) {
    let outcome = error.map_or("ok", PluginError::code);
    let plugin = if matches!(error, Some(PluginError::UnknownPlugin { .. })) { "(unknown)" } else { plugin };
    metrics.plugin_calls.with_label_values(&[plugin, call, outcome]).inc();
    if error.is_none() {
        metrics.plugin_duration.with_label_values(&[plugin, call]).observe(started.elapsed().as_secs_f64());
    }
}

impl Actor for PluginHost {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
    }
}

crate::supervised_child!(PluginHost);

impl Handler<ParseWebhook> for PluginHost {
    type Result = ResponseFuture<Result<Vec<BillingEvent>, PluginError>>;

    fn handle(&mut self, msg: ParseWebhook, _: &mut Self::Context) -> Self::Result {
        let (runtime, metrics) = (self.runtime(), self.metrics.clone());
        Box::pin(async move {
            let runtime = runtime.await?;
            let started = std::time::Instant::now();
            let result = runtime.parse(&msg.plugin, msg.request).await;
            observe(&metrics, &msg.plugin, "parse", started, result.as_ref().err());
            result
        })
    }
}

impl Handler<ChooseTemplate> for PluginHost {
    type Result = ResponseFuture<Result<TemplateChoice, PluginError>>;

    fn handle(&mut self, msg: ChooseTemplate, _: &mut Self::Context) -> Self::Result {
        let (runtime, metrics) = (self.runtime(), self.metrics.clone());
        Box::pin(async move {
            let runtime = runtime.await?;
            let started = std::time::Instant::now();
            let result =
                runtime.choose_template(&msg.plugin, &msg.source, msg.event, msg.catalogue, msg.settings).await;
            observe(&metrics, &msg.plugin, "choose", started, result.as_ref().err());
            result
        })
    }
}

impl Handler<ListPlugins> for PluginHost {
    type Result = ResponseFuture<Result<Vec<PluginInfo>, PluginError>>;

    fn handle(&mut self, _: ListPlugins, _: &mut Self::Context) -> Self::Result {
        let runtime = self.runtime();
        Box::pin(async move { Ok(runtime.await?.list()) })
    }
}

impl Handler<GetRuntime> for PluginHost {
    type Result = ResponseFuture<Result<Arc<PluginRuntime>, PluginError>>;

    fn handle(&mut self, _: GetRuntime, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.runtime())
    }
}

impl Handler<Shutdown> for PluginHost {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_compile_through_the_data_directory_cache_or_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::for_data_dir(dir.path());
        let (runtime, failures) = load_runtime(&config).unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        let (cache, _, compiled) = runtime.disk_cache().expect("the cache is on by default");
        assert_eq!(cache, dir.path().join("plugin-cache").canonicalize().unwrap());
        assert_eq!(compiled, runtime.list().len());

        // A cache that cannot be created: the plugins still load, compiled in memory.
        let blocked = tempfile::tempdir().unwrap();
        std::fs::write(blocked.path().join("plugin-cache"), b"").unwrap();
        let (runtime, failures) = load_runtime(&Config::for_data_dir(blocked.path())).unwrap();
        assert!(failures.is_empty() && runtime.disk_cache().is_none());
        assert!(!runtime.list().is_empty());

        let mut off = Config::for_data_dir(blocked.path());
        off.plugins.compile_cache = false;
        assert!(load_runtime(&off).unwrap().0.disk_cache().is_none());
    }
}
