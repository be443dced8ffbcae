//! Shared helpers: one runtime with the bundled plugins, fixtures, and turning WebAssembly
//! text into components.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use vmauto::billing::BillingEvent;
use vmauto::plugin_host::{Limits, PluginError, PluginRuntime, Rejection, SourceRequest};

/// The bundled plugins, compiled once for the whole test binary.
pub fn runtime() -> Arc<PluginRuntime> {
    static RUNTIME: OnceLock<Arc<PluginRuntime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let (runtime, failures) = PluginRuntime::with_plugins(Limits::default(), None).expect("runtime");
            assert!(failures.is_empty(), "bundled plugins failed to load: {failures:?}");
            Arc::new(runtime)
        })
        .clone()
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks").join(name)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn request(source: &str, path: &str, body: Vec<u8>, settings: &[(&str, &str)]) -> SourceRequest {
    SourceRequest {
        source: source.into(),
        path: path.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into(),
        settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }
}

/// Runs a bundled source plugin over a fixture.
pub fn parse(plugin: &str, fixture_name: &str, settings: &[(&str, &str)]) -> Result<Vec<BillingEvent>, PluginError> {
    parse_at(plugin, fixture_name, &format!("/webhooks/{plugin}"), settings)
}

pub fn parse_at(
    plugin: &str,
    fixture_name: &str,
    path: &str,
    settings: &[(&str, &str)],
) -> Result<Vec<BillingEvent>, PluginError> {
    runtime().parse_blocking(plugin, &request("test", path, fixture(fixture_name), settings))
}

/// The plugin's typed refusal, else a panic naming what came back.
pub fn rejection(result: Result<Vec<BillingEvent>, PluginError>) -> Rejection {
    match result {
        Err(PluginError::Rejected { rejection, .. }) => rejection,
        other => panic!("expected a typed rejection, got {other:?}"),
    }
}

/// Exactly one event, else a panic naming what came back.
pub fn one(result: Result<Vec<BillingEvent>, PluginError>) -> BillingEvent {
    let mut events = result.unwrap_or_else(|e| panic!("expected one event, got the error: {e}"));
    assert_eq!(events.len(), 1, "expected one event: {events:#?}");
    events.remove(0)
}

/// Turns a core module in WebAssembly text into a component of `world`
/// (`billing-source` or `plan-mapper`) of contract 1.0 (`plugins/wit-1.0`), as `wasm-tools
/// component embed` + `new` would. The hand-written plugins are mostly 1.0 components: they
/// also show that components of an older minor version keep loading.
pub fn component_from_wat(wat_text: &str, world: &str) -> Vec<u8> {
    component_of_contract(wat_text, world, "1.0")
}

/// [`component_from_wat`] against the frozen WIT of another older contract
/// (`plugins/wit-<contract>`).
pub fn component_of_contract(wat_text: &str, world: &str, contract: &str) -> Vec<u8> {
    let mut module = wat::parse_str(wat_text).expect("valid WebAssembly text");
    let mut resolve = wit_parser::Resolve::default();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("plugins/wit-{contract}"));
    let (package, _) = resolve.push_dir(&dir).unwrap_or_else(|e| panic!("{} parses: {e:#}", dir.display()));
    let world = resolve.select_world(&[package], Some(world)).expect("world");
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8)
        .expect("embed the contract");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module")
        .validate(true)
        .encode()
        .expect("encode the component")
}
