//! Plugins: the bundled billing sources and plan mapper against fixture payloads
//! (tests/fixtures/webhooks), every signature scheme, a plugin written in WebAssembly text,
//! hostile plugins, the compile cache, the `vmauto plugin` commands, and benchmarks (`bench_plugins_*`,
//! ignored by default).

mod bench;
mod cache;
pub(crate) mod choices;
mod hostile;
mod mapper;
mod signature;
mod sources;
pub(crate) mod support;
