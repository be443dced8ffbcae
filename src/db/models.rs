//! One file per table: its typed row, the enums of its states and kinds, and the queries the
//! rest of vmauto makes of it, as methods on [`Store`](super::Store). Only `db/` writes
//! SurrealQL; handlers, actors and pages call these methods and get typed rows back.
//!
//! Record keys are plain strings chosen by vmauto (`type::record('vps', $key)`); every
//! SELECT projects `record::id(id) AS id` so rows come back with that key as `id`.

pub mod activity;
pub mod admin_user;
pub mod api_token;
pub mod notification;
pub mod operation;
pub mod payment;
pub mod reveal_link;
pub mod session;
pub mod setting;
pub mod subscription;
pub mod template;
pub mod upgrade_link;
pub mod upgrade_offer;
pub mod vps;
pub mod webhook_event;

/// Reads a field as `T`, or as `T::default()` when it holds anything else (or nothing, with
/// `#[serde(default)]`): for fields vmauto has always read leniently, as with
/// `value.as_str().unwrap_or_default()`, so a stray value is not an error.
pub(crate) fn lenient<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let value = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}
