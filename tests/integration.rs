//! The one integration-test binary: every area is a module, so the whole suite links once.

/// The appliance's allocator (see `src/main.rs`), so that what runs in-process here, and the
/// benchmarks among these tests, allocate as the appliance does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod app;
mod architecture;
mod bench_cluster;
mod bench_hardening;
mod bench_lifecycle;
mod bench_memory;
mod bench_placement;
mod bench_ui;
mod bench_upgrades;
mod browser;
mod chaos;
mod choices;
mod cli;
mod cluster;
mod common;
mod crash;
mod customer_notices;
mod demo;
mod faults;
mod inbox;
mod lifecycle;
mod login;
mod notifier;
mod ops;
mod placement;
mod plugins;
mod portal;
mod provider;
mod recovery;
mod restore;
mod server_store;
mod sim;
mod stripe_billing;
mod ui;
mod upgrade_path;
mod upgrades;
mod webhooks;
