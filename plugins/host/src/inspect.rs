//! Checking a component against the contract before it is loaded (`vmauto plugin check`):
//! that it is a component, which world it implements, and that it imports nothing but the
//! contract's types.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::*;

/// What `vmauto plugin check` reports about a component.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentReport {
    pub kind: PluginKind,
    pub contract_version: String,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
}

/// Reads a component's exports and imports and checks them against the contract.
pub(crate) fn inspect(engine: &Engine, component: &Component) -> Result<ComponentReport, String> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let mut imports = Vec::new();
    for (name, item) in ty.imports(engine) {
        let functions = match &item.ty {
            ComponentItem::ComponentInstance(inst) => {
                inst.exports(engine).filter(|(_, i)| !matches!(i.ty, ComponentItem::Type(_))).count()
            }
            _ => 1,
        };
        let types = name.strip_prefix(TYPES_IMPORT).is_some_and(|v| CONTRACT_VERSIONS.contains(&v));
        if !types || functions > 0 {
            return Err(format!(
                "the component imports {name}; plugins get no imports (no WASI, no host functions) - \
                 Hint: build for wasm32-unknown-unknown, not wasm32-wasip1/2"
            ));
        }
        imports.push(name.to_string());
    }
    let contract = |prefix: &str| exports.iter().find_map(|e| e.strip_prefix(prefix)).map(str::to_string);
    let (kind, version) = match (contract("vmauto:plugin/source@"), contract("vmauto:plugin/mapper@")) {
        (Some(v), None) => (PluginKind::BillingSource, v),
        (None, Some(v)) => (PluginKind::PlanMapper, v),
        (Some(_), Some(_)) => {
            return Err("the component exports both source and mapper; a plugin is one of them".into());
        }
        (None, None) => {
            return Err(format!(
                "the component exports neither {SOURCE_EXPORT} nor {MAPPER_EXPORT} (it exports: {})",
                if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
            ));
        }
    };
    if !CONTRACT_VERSIONS.contains(&version.as_str()) {
        return Err(format!(
            "the component speaks contract {version}; this vmauto speaks {} - Hint: build it against \
             plugins/wit of this vmauto",
            CONTRACT_VERSIONS.join(" and ")
        ));
    }
    Ok(ComponentReport { kind, contract_version: version, exports, imports })
}

/// Compiles `bytes` and checks them against the contract, without registering anything.
pub fn check_component(bytes: &[u8]) -> Result<ComponentReport, String> {
    let runtime = PluginRuntime::new(Limits::default()).map_err(|e| e.to_string())?;
    let (component, _) = runtime.compile(bytes)?;
    let report = inspect(&runtime.engine, &component)?;
    runtime.load("check", bytes, Origin::Bundled).map_err(|e| e.to_string())?;
    Ok(report)
}

/// A core module starts with the magic and version 1; a component with version 0x0d layer 1.
pub(crate) fn wasmparser_is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}
