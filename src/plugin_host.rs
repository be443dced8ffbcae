//! The plugin host (the `vmauto-plugin-host` crate under `plugins/host`: wasmtime, the
//! contract's bindings and the bundled plugins), with the `vmauto plugin` commands ([`cli`]).
//! The catalogue plan mappers choose from is read by the store (`Store::catalogue`).

pub mod cli;

pub use vmauto_plugin_host::*;
