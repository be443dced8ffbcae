//! # vmauto
//!
//! Turns billing events into VPS lifecycle operations on Sangfor SCP, with an embedded admin
//! UI, in one process.
//!
//! ## Layout
//! - [`config`]: `appliance.toml` + `VMAUTO_*` environment + CLI flags, validated once.
//! - [`error`]: the error-code table every client-facing error goes through.
//! - [`telemetry`]: tracing set-up and every `vmauto_*` Prometheus metric.
//! - [`tls`]: TLS client set-up for SCP and the SurrealDB server.
//! - [`db`]: the SurrealDB store, ordered migrations, export and import; `db::models`, one
//!   file per table with its typed row and queries (the only SurrealQL).
//! - [`billing`]: the normalized billing event and webhook signature verification.
//! - [`plugin_host`]: the WebAssembly plugin host (billing sources, plan mapping) and the
//!   `vmauto plugin` commands.
//! - [`actors`]: the supervised actor tree (design.md §2), its messages, and running a VPS's
//!   operations against the gateway.
//! - [`http`]: routes only; handlers translate requests into messages or store reads.
//! - [`lifecycle`]: VPS states, durable operations, and the decisions billing events cause.
//! - [`provider`]: the provider contract and the Sangfor SCP client.
//! - [`notice`]: what admins are told about (kind, severity, text), sent to the notifier.
//! - [`notify`]: notification channels: admin and customer email (SMTP), signed outgoing
//!   webhooks, one-time reveal links.
//! - [`admin`]: what the admin UI and the JSON API read and do.
//! - [`auth`]: admin users (argon2id), sessions, API tokens and roles.
//! - [`settings`]: settings edited in the web UI, applied over the file at start.
//! - [`secrets`]: sealing secrets at rest with the appliance key.
//! - [`upgrade`]: Stripe-paid upgrades: offers, signed upgrade links, Checkout, fulfilment.
//! - [`sim`]: the SCP simulator used by tests, benchmarks and `vmauto demo`.
//! - [`app`]: starts the store, the tree and the HTTP server; graceful shutdown.
//! - [`cli`]: the command-line interface of the `vmauto` binary.
//! - [`commands`]: operator commands run by the CLI or, for it, by the running appliance.
//! - [`ops`]: `vmauto healthcheck` and the online export client (talk to a running appliance).
//! - [`demo`]: `vmauto demo`, the simulator and the appliance together on loopback.

pub mod actors;
pub mod admin;
pub mod app;
pub mod auth;
pub mod billing;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod http;
pub mod lifecycle;
pub mod notice;
pub mod notify;
pub mod ops;
pub mod plugin_host;
pub mod portal;
pub mod provider;
pub mod secrets;
pub mod settings;
pub mod sim;
pub mod telemetry;
pub mod tls;
pub mod upgrade;

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Makes ring the process-wide TLS crypto provider (idempotent). Call before building any
/// HTTP client or TLS server; every entry point of the library does.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
