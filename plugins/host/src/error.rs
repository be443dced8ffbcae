//! Why a plugin refused a request ([`Rejection`]) or a call failed ([`PluginError`]).

use super::PluginKind;

/// Why a plugin refused a request (the contract's `plugin-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("missing field `{0}`")]
    MissingField(String),
    #[error("field `{field}` has the wrong type (expected {expected})")]
    WrongType { field: String, expected: String },
    #[error("bad plugin setting: {0}")]
    BadSetting(String),
    #[error("{0}")]
    Other(String),
}

/// Why a plugin call failed. Each variant fails only the call that caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("no plugin named {name:?} - Hint: loaded plugins are {available}")]
    UnknownPlugin { name: String, available: String },
    #[error("plugin {name:?} is a {actual} plugin, not a {expected} plugin")]
    WrongKind { name: String, expected: PluginKind, actual: PluginKind },
    #[error("plugin {name:?} cannot be loaded: {reason}")]
    Load { name: String, reason: String },
    #[error("the {plugin} plugin refused the request: {rejection}")]
    Rejected { plugin: String, rejection: Rejection },
    #[error(
        "the {plugin} plugin ran out of its time budget ({deadline_ms} ms) - Hint: an endless loop or a very large body"
    )]
    Timeout { plugin: String, deadline_ms: u64 },
    #[error("the {plugin} plugin exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { plugin: String, limit_bytes: usize },
    #[error("the {plugin} plugin crashed (trap): {message}")]
    Trap { plugin: String, message: String },
    #[error("the {plugin} plugin returned output that breaks the contract: {reason}")]
    BadOutput { plugin: String, reason: String },
    #[error("the plugin runtime is unavailable: {0}")]
    Unavailable(String),
}

impl PluginError {
    /// A stable snake_case name, for the inbox record and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            PluginError::UnknownPlugin { .. } => "unknown_plugin",
            PluginError::WrongKind { .. } => "wrong_plugin_kind",
            PluginError::Load { .. } => "plugin_load_failed",
            PluginError::Rejected { .. } => "plugin_rejected",
            PluginError::Timeout { .. } => "plugin_timeout",
            PluginError::MemoryLimit { .. } => "plugin_memory_limit",
            PluginError::Trap { .. } => "plugin_trap",
            PluginError::BadOutput { .. } => "plugin_bad_output",
            PluginError::Unavailable(_) => "plugin_unavailable",
        }
    }
}
