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
    /// Built on first use.
    runtime: Arc<OnceCell<Arc<PluginRuntime>>>,
    sup: Supervision,
}

impl PluginHost {
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> Self {
        Self { config, runtime: Arc::new(OnceCell::new()), sup: Supervision::new("plugins", metrics) }
    }

    /// A future resolving to the runtime, loading the plugins the first time.
    fn runtime(&self) -> impl Future<Output = Result<Arc<PluginRuntime>, PluginError>> + 'static {
        let (cell, config) = (self.runtime.clone(), self.config.clone());
        async move {
            cell.get_or_try_init(|| async move {
                let loaded = tokio::task::spawn_blocking(move || {
                    PluginRuntime::with_plugins(Limits::default(), Some(&config.plugin_dir()))
                })
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
        let runtime = self.runtime();
        Box::pin(async move { runtime.await?.parse(&msg.plugin, msg.request).await })
    }
}

impl Handler<ChooseTemplate> for PluginHost {
    type Result = ResponseFuture<Result<TemplateChoice, PluginError>>;

    fn handle(&mut self, msg: ChooseTemplate, _: &mut Self::Context) -> Self::Result {
        let runtime = self.runtime();
        Box::pin(async move {
            runtime.await?.choose_template(&msg.plugin, &msg.source, msg.event, msg.catalogue, msg.settings).await
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
