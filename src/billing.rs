//! Billing: the normalized event every billing source is mapped to, and (in the host, never
//! in plugins) the verification of webhook signatures.

pub mod signature;

pub use vmauto_plugin_host::event::{BillingEvent, Customer, EventKind, OrderChoices};
