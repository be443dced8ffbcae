//! The one integration-test binary: every area is a module, so the whole suite links once.

mod app;
mod common;
mod demo;
mod lifecycle;
mod notifier;
mod plugins;
mod provider;
mod sim;
mod webhooks;
