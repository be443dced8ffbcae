//! The one integration-test binary: every area is a module, so the whole suite links once.

mod app;
mod architecture;
mod bench_hardening;
mod bench_lifecycle;
mod bench_ui;
mod bench_upgrades;
mod browser;
mod chaos;
mod cli;
mod common;
mod crash;
mod demo;
mod faults;
mod inbox;
mod lifecycle;
mod login;
mod notifier;
mod ops;
mod plugins;
mod provider;
mod recovery;
mod sim;
mod stripe_billing;
mod ui;
mod upgrades;
mod webhooks;
