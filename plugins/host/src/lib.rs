//! The plugin host of vmauto: runs WebAssembly components that implement the plugin
//! contract (`plugins/wit`, package `vmauto:plugin@1.2.0`; components built for 1.0 and
//! 1.1, `plugins/wit-1.0` and `plugins/wit-1.1`, load too — see [`v1_0`] and [`v1_1`]).
//!
//! - **Billing sources** turn one authenticated webhook delivery into zero or more
//!   [`BillingEvent`]s ([`PluginRuntime::parse`]).
//! - **Plan mappers** choose the template for an event from the catalogue
//!   ([`PluginRuntime::choose_template`]). A 1.2 mapper instance keeps the catalogue it was
//!   last given (`keep-catalogue`) and is asked per event without it (`choose-kept`): the
//!   catalogue crosses into the instance only when it is not the one the instance keeps.
//!
//! Plugins come from the binary ([`bundled`], built from `plugins/` by this crate's
//! `build.rs`) and from
//! the configured plugin directory (`*.wasm`, a file named like a bundled plugin replaces
//! it). Each distinct component is compiled once per process and kept in memory, keyed by
//! the SHA-256 of its bytes; with a disk cache ([`PluginRuntime::with_disk_cache`]) the
//! native code is also kept between starts, keyed by a hash of the component's bytes and
//! the engine's settings (wasmtime's compilation cache), so a restart loads the plugins
//! instead of compiling them again.
//!
//! **Sandbox.** A plugin gets no imports at all: no filesystem, network, environment or
//! clock. Every call runs with a deadline ([`Limits::deadline`], enforced by wasmtime's
//! epoch interruption: a ticker thread advances the engine's epoch every [`EPOCH_TICK`];
//! fuel metering cost 40–70 % of a call's time) and a linear-memory cap
//! ([`Limits::memory_bytes`]); a trap, an exceeded deadline, a memory bomb or an output
//! that breaks the contract's bounds fails that one call with a [`PluginError`] that says
//! which, and never affects the process. Instances are reused between calls (a fresh one
//! costs ~10× a call) and dropped after any failure.
//!
//! Calls are blocking; the async entry points run them on tokio's blocking pool, off the
//! HTTP threads.

pub mod bindings;
pub mod bundled;
pub mod catalogue;
mod choose;
mod error;
pub mod event;
mod inspect;
mod v1_0;
mod v1_1;

pub use error::{PluginError, Rejection};
pub use inspect::{ComponentReport, check_component};
use inspect::{inspect, wasmparser_is_core_module};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};

use self::bindings::{mapper, source};
pub use self::catalogue::{Catalogue, PlanMapping, Template};
pub use self::event::{BillingEvent, Customer, EventKind, OrderChoices};

/// The contract version this host speaks (the version of the WIT package).
pub const CONTRACT_VERSION: &str = "1.2.0";
/// Every contract version this host loads: the current one and the older minor versions of
/// its major version.
pub const CONTRACT_VERSIONS: &[&str] = &["1.0.0", "1.1.0", "1.2.0"];
/// The export a billing-source component provides.
pub const SOURCE_EXPORT: &str = "vmauto:plugin/source@1.2.0";
/// The export a plan-mapper component provides.
pub const MAPPER_EXPORT: &str = "vmauto:plugin/mapper@1.2.0";
/// The contract's type-only interface, which components may import (it has no functions),
/// without its version.
pub const TYPES_IMPORT: &str = "vmauto:plugin/types@";
/// Largest plugin file accepted, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 16 << 20;
/// Calls served by one instance before it is replaced (bounds allocator drift).
const RECYCLE_AFTER_CALLS: u32 = 10_000;
/// Idle instances kept per plugin.
const MAX_IDLE_INSTANCES: usize = 16;
/// How often the engine's epoch advances; deadlines are whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Per-call resource limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock time one call (or one instantiation) may run, rounded up to whole
    /// [`EPOCH_TICK`]s.
    pub deadline: Duration,
    /// Largest linear memory of an instance, in bytes.
    pub memory_bytes: usize,
    /// Keep instances between calls (a fresh instance per call costs ~10× more).
    pub reuse_instances: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self { deadline: Duration::from_millis(250), memory_bytes: 32 << 20, reuse_instances: true }
    }
}

/// What a plugin does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    BillingSource,
    PlanMapper,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::BillingSource => "billing-source",
            PluginKind::PlanMapper => "plan-mapper",
        })
    }
}

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Bundled,
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Bundled => f.write_str("bundled"),
            Origin::File(path) => path.display().fmt(f),
        }
    }
}

/// A loaded plugin, as `vmauto plugin list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub kind: PluginKind,
    pub origin: Origin,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    pub size: usize,
}

/// One webhook delivery as a billing-source plugin sees it (after verification).
#[derive(Debug, Clone, Default)]
pub struct SourceRequest {
    /// The configured source name.
    pub source: String,
    /// The request path, without any secret path token.
    pub path: String,
    /// Allow-listed headers (names in lower case); see [`ALLOWED_HEADERS`].
    pub headers: Vec<(String, String)>,
    pub body: bytes::Bytes,
    /// The source's `settings`.
    pub settings: BTreeMap<String, String>,
}

/// Headers a plugin may see (never authentication headers).
pub const ALLOWED_HEADERS: &[&str] =
    &["content-type", "user-agent", "x-event-type", "x-request-id", "x-github-event", "stripe-version"];

/// The answer of a plan mapper.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "choice", content = "value")]
pub enum TemplateChoice {
    /// The name of the chosen template.
    Template(String),
    /// No template, and why (shown to the admin; the event is parked).
    None(String),
}

/// The store data of one instance: its resource limiter.
struct HostState {
    memory_cap: usize,
    memory_exceeded: bool,
}

impl ResourceLimiter for HostState {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_exceeded = true;
            wasmtime::bail!("linear memory limit of {} bytes exceeded", self.memory_cap);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A compiled, linked component, ready to instantiate.
enum Prepared {
    Source(source::BillingSourcePre<HostState>),
    Mapper(mapper::PlanMapperPre<HostState>),
    SourceV1_0(v1_0::source::BillingSourcePre<HostState>),
    MapperV1_0(v1_0::mapper::PlanMapperPre<HostState>),
    MapperV1_1(v1_1::mapper::PlanMapperPre<HostState>),
}

/// A live instance kept for reuse.
enum Bound {
    Source(source::BillingSource),
    Mapper(mapper::PlanMapper),
    SourceV1_0(v1_0::source::BillingSource),
    MapperV1_0(v1_0::mapper::PlanMapper),
    MapperV1_1(v1_1::mapper::PlanMapper),
}

struct Warm {
    store: Store<HostState>,
    bound: Bound,
    calls: u32,
    /// The catalogue a 1.2 mapper instance keeps (given with `keep-catalogue`).
    kept: Option<Arc<Catalogue>>,
}

struct Loaded {
    info: PluginInfo,
    prepared: Prepared,
    idle: Mutex<Vec<Warm>>,
}

/// The wasmtime engine, the loaded plugins and their idle instances.
pub struct PluginRuntime {
    engine: Engine,
    limits: Limits,
    plugins: RwLock<BTreeMap<String, Arc<Loaded>>>,
    /// Compiled components by SHA-256 of their bytes.
    compiled: Mutex<HashMap<String, Component>>,
    /// The on-disk compilation cache the engine uses, if any.
    disk_cache: Option<wasmtime::Cache>,
    /// Stops the epoch ticker thread when the runtime is dropped.
    ticker_stop: Arc<AtomicBool>,
    /// Bounds the async entry points to one call per core, so a burst of webhooks queues
    /// here instead of starving running calls of CPU (their deadlines are wall-clock).
    slots: tokio::sync::Semaphore,
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl PluginRuntime {
    /// A runtime with no plugins loaded, compiling in memory only.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        Self::build(limits, None)
    }

    /// A runtime with no plugins loaded that keeps the native code of every component it
    /// compiles in `cache_dir` (created if missing; an absolute path, or one relative to
    /// the working directory) and loads it from there when the same component is loaded
    /// again, in this process or after a restart. Whoever can write to `cache_dir` can run
    /// code in this process: keep it inside the appliance's own data directory.
    pub fn with_disk_cache(limits: Limits, cache_dir: &Path) -> anyhow::Result<Self> {
        let dir = std::path::absolute(cache_dir)
            .map_err(|e| anyhow::anyhow!("cannot resolve the plugin cache directory {}: {e}", cache_dir.display()))?;
        let mut cache = wasmtime::CacheConfig::new();
        cache.with_directory(&dir);
        let cache = wasmtime::Cache::new(cache)
            .map_err(|e| anyhow::anyhow!("cannot use {} as the plugin cache: {e:#}", dir.display()))?;
        Self::build(limits, Some(cache))
    }

    fn build(limits: Limits, cache: Option<wasmtime::Cache>) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true).max_wasm_stack(512 << 10);
        config.cache(cache.clone());
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot start wasmtime: {e}"))?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (ticking, stop) = (engine.clone(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("vmauto-plugin-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot start the plugin deadline ticker: {e}"))?;
        Ok(Self {
            engine,
            limits,
            plugins: RwLock::new(BTreeMap::new()),
            compiled: Mutex::new(HashMap::new()),
            disk_cache: cache,
            ticker_stop,
            slots: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
        })
    }

    /// A runtime holding the bundled plugins and every `*.wasm` in `dir` (when it exists).
    /// A plugin that fails to load is skipped and reported in the returned list.
    pub fn with_plugins(limits: Limits, dir: Option<&Path>) -> anyhow::Result<(Self, Vec<PluginError>)> {
        let runtime = Self::new(limits)?;
        let failures = runtime.load_all(dir);
        Ok((runtime, failures))
    }

    /// Loads the bundled plugins, then every `*.wasm` in `dir` (when given and present).
    /// A plugin that fails to load is skipped and reported in the returned list.
    pub fn load_all(&self, dir: Option<&Path>) -> Vec<PluginError> {
        let mut failures = Vec::new();
        for (name, bytes) in bundled::BUNDLED {
            if let Err(e) = self.load(name, bytes, Origin::Bundled) {
                failures.push(e);
            }
        }
        if let Some(dir) = dir {
            failures.extend(self.load_dir(dir));
        }
        failures
    }

    /// The disk cache's directory and its (hits, misses) so far, when there is one.
    pub fn disk_cache(&self) -> Option<(PathBuf, usize, usize)> {
        self.disk_cache.as_ref().map(|c| (c.directory().clone(), c.cache_hits(), c.cache_misses()))
    }

    /// Loads every `*.wasm` in `dir`; the file stem is the plugin name.
    pub fn load_dir(&self, dir: &Path) -> Vec<PluginError> {
        let mut failures = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else { return failures };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths.into_iter().filter(|p| p.extension().is_some_and(|e| e == "wasm")) {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let result = std::fs::read(&path)
                .map_err(|e| PluginError::Load { name: name.clone(), reason: format!("{}: {e}", path.display()) })
                .and_then(|bytes| self.load(&name, &bytes, Origin::File(path.clone())).map(|_| ()));
            if let Err(e) = result {
                failures.push(e);
            }
        }
        failures
    }

    /// Compiles (or finds in the cache), checks and registers one component under `name`,
    /// replacing a plugin of the same name.
    pub fn load(&self, name: &str, bytes: &[u8], origin: Origin) -> Result<PluginInfo, PluginError> {
        let fail = |reason: String| PluginError::Load { name: name.into(), reason };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(fail("a plugin name may hold only letters, digits, '-' and '_'".into()));
        }
        let (component, sha256) = self.compile(bytes).map_err(fail)?;
        let report = inspect(&self.engine, &component).map_err(fail)?;
        let (kind, version) = (report.kind, report.contract_version.as_str());
        let mut linker = Linker::<HostState>::new(&self.engine);
        let ty = component.component_type();
        for (import, _) in ty.imports(&self.engine) {
            // Only the contract's type-only interface may be imported; it has nothing to link.
            linker.instance(import).map_err(|e| fail(format!("cannot link {import}: {e}")))?;
        }
        let pre = linker.instantiate_pre(&component).map_err(|e| fail(format!("cannot link: {e}")))?;
        let mismatch = |e: wasmtime::Error| fail(format!("exports do not match the contract: {e}"));
        let prepared = match (kind, version) {
            (PluginKind::BillingSource, "1.0.0") => {
                Prepared::SourceV1_0(v1_0::source::BillingSourcePre::new(pre).map_err(mismatch)?)
            }
            (PluginKind::BillingSource, _) => Prepared::Source(source::BillingSourcePre::new(pre).map_err(mismatch)?),
            (PluginKind::PlanMapper, "1.0.0") => {
                Prepared::MapperV1_0(v1_0::mapper::PlanMapperPre::new(pre).map_err(mismatch)?)
            }
            (PluginKind::PlanMapper, "1.1.0") => {
                Prepared::MapperV1_1(v1_1::mapper::PlanMapperPre::new(pre).map_err(mismatch)?)
            }
            (PluginKind::PlanMapper, _) => Prepared::Mapper(mapper::PlanMapperPre::new(pre).map_err(mismatch)?),
        };
        let info = PluginInfo { name: name.into(), kind, origin, sha256, size: bytes.len() };
        let loaded = Arc::new(Loaded { info: info.clone(), prepared, idle: Mutex::new(Vec::new()) });
        self.plugins.write().insert(name.into(), loaded);
        Ok(info)
    }

    fn compile(&self, bytes: &[u8]) -> Result<(Component, String), String> {
        if bytes.len() > MAX_COMPONENT_BYTES {
            return Err(format!("{} bytes is larger than the limit of {MAX_COMPONENT_BYTES}", bytes.len()));
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        if let Some(c) = self.compiled.lock().get(&sha256) {
            return Ok((c.clone(), sha256));
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| {
            let text = format!("{e:#}");
            if wasmparser_is_core_module(bytes) {
                format!(
                    "this is a core WebAssembly module, not a component - Hint: turn it into one with \
                     `wasm-tools component new` (see plugins/README.md): {text}"
                )
            } else {
                format!("not a valid WebAssembly component: {text}")
            }
        })?;
        self.compiled.lock().insert(sha256.clone(), component.clone());
        Ok((component, sha256))
    }

    /// The loaded plugins, by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        self.plugins.read().values().map(|p| p.info.clone()).collect()
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn get(&self, name: &str, kind: PluginKind) -> Result<Arc<Loaded>, PluginError> {
        let plugins = self.plugins.read();
        let Some(p) = plugins.get(name) else {
            return Err(PluginError::UnknownPlugin {
                name: name.into(),
                available: plugins.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        if p.info.kind != kind {
            return Err(PluginError::WrongKind { name: name.into(), expected: kind, actual: p.info.kind });
        }
        Ok(p.clone())
    }

    /// The deadline in epoch ticks (at least one whole tick beyond the current one).
    fn deadline_ticks(&self) -> u64 {
        let ticks = self.limits.deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1) + 1
    }

    fn checkout(&self, plugin: &Loaded) -> Result<Warm, PluginError> {
        if let Some(warm) = plugin.idle.lock().pop() {
            return Ok(warm);
        }
        let mut store =
            Store::new(&self.engine, HostState { memory_cap: self.limits.memory_bytes, memory_exceeded: false });
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        store.set_epoch_deadline(self.deadline_ticks());
        let bound = match &plugin.prepared {
            Prepared::Source(pre) => pre.instantiate(&mut store).map(Bound::Source),
            Prepared::Mapper(pre) => pre.instantiate(&mut store).map(Bound::Mapper),
            Prepared::SourceV1_0(pre) => pre.instantiate(&mut store).map(Bound::SourceV1_0),
            Prepared::MapperV1_0(pre) => pre.instantiate(&mut store).map(Bound::MapperV1_0),
            Prepared::MapperV1_1(pre) => pre.instantiate(&mut store).map(Bound::MapperV1_1),
        }
        .map_err(|e| self.classify(&plugin.info.name, &store, e))?;
        Ok(Warm { store, bound, calls: 0, kept: None })
    }

    fn checkin(&self, plugin: &Loaded, mut warm: Warm) {
        warm.calls += 1;
        if !self.limits.reuse_instances || warm.calls >= RECYCLE_AFTER_CALLS {
            return;
        }
        let mut idle = plugin.idle.lock();
        if idle.len() < MAX_IDLE_INSTANCES {
            idle.push(warm);
        }
    }

    fn classify(&self, plugin: &str, store: &Store<HostState>, e: wasmtime::Error) -> PluginError {
        if store.data().memory_exceeded {
            return PluginError::MemoryLimit { plugin: plugin.into(), limit_bytes: self.limits.memory_bytes };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt | Trap::OutOfFuel) => PluginError::Timeout {
                plugin: plugin.into(),
                deadline_ms: u64::try_from(self.limits.deadline.as_millis()).unwrap_or(u64::MAX),
            },
            Some(trap) => PluginError::Trap { plugin: plugin.into(), message: trap.to_string() },
            // Errors outside a trap: lifting an out-of-bounds or invalid result, and the like.
            None => PluginError::BadOutput { plugin: plugin.into(), reason: format!("{e:#}") },
        }
    }

    /// Runs the billing-source plugin `plugin` over one delivery (blocking).
    pub fn parse_blocking(&self, plugin: &str, req: &SourceRequest) -> Result<Vec<BillingEvent>, PluginError> {
        let loaded = self.get(plugin, PluginKind::BillingSource)?;
        let mut warm = self.checkout(&loaded)?;
        warm.store.set_epoch_deadline(self.deadline_ticks());
        let result = match &warm.bound {
            Bound::Source(instance) => instance
                .vmauto_plugin_source()
                .call_parse(&mut warm.store, &req.to_wit())
                .map(|a| a.map_err(bindings::rejection_from_source)),
            Bound::SourceV1_0(instance) => instance
                .vmauto_plugin_source()
                .call_parse(&mut warm.store, &req.to_wit_v1_0())
                .map(|a| a.map(v1_0::events_to_current).map_err(bindings::rejection_from_source_v1_0)),
            _ => return Err(PluginError::Unavailable("instance kind mismatch".into())),
        };
        self.settle(plugin, &loaded, warm, result).and_then(|events| bindings::events_from_wit(plugin, events))
    }

    /// A call's outcome: a trap, a deadline or a broken output fails it and drops the
    /// instance; otherwise the instance goes back to the pool and the plugin's answer or
    /// refusal is returned.
    fn settle<T>(
        &self,
        plugin: &str,
        loaded: &Loaded,
        warm: Warm,
        result: wasmtime::Result<Result<T, Rejection>>,
    ) -> Result<T, PluginError> {
        match result {
            Err(e) => Err(self.classify(plugin, &warm.store, e)),
            Ok(answer) => {
                self.checkin(loaded, warm);
                answer.map_err(|rejection| PluginError::Rejected { plugin: plugin.into(), rejection })
            }
        }
    }

    /// Runs the billing-source plugin on tokio's blocking pool.
    pub async fn parse(self: &Arc<Self>, plugin: &str, req: SourceRequest) -> Result<Vec<BillingEvent>, PluginError> {
        let _slot = self.slots.acquire().await.map_err(|e| PluginError::Unavailable(e.to_string()))?;
        let (this, plugin) = (self.clone(), plugin.to_string());
        tokio::task::spawn_blocking(move || this.parse_blocking(&plugin, &req))
            .await
            .map_err(|e| PluginError::Unavailable(e.to_string()))?
    }
}

/// The name of the default plan mapper.
pub const DEFAULT_MAPPER: &str = "plan-table";
