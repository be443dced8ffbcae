//! [`ProviderError`]: every way a provider call can fail, and whether trying again helps.

use std::time::Duration;

/// A failed provider call.
///
/// The variants follow the HTTP status (or the transport failure) because that is what
/// decides the next step: transient ones ([`ProviderError::is_transient`]) are retried by
/// the traffic layer and then by the lifecycle; the rest need a person (wrong template,
/// wrong keys, missing permission) and make the operation fail loudly.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("SCP is not configured: set provider.sangfor.base_url and credentials in appliance.toml")]
    NotConfigured,
    #[error("provider configuration is invalid: {0}")]
    Config(String),
    #[error("the provider rejected the request (400{}): {message}", code_suffix(.code))]
    BadRequest { message: String, code: String },
    #[error("authentication failed (401{}): {message}", code_suffix(.code))]
    Unauthorized {
        message: String,
        code: String,
        /// Server clock minus local clock in seconds, from the response's `Date` header:
        /// a large value explains a signature rejection.
        clock_skew_secs: Option<i64>,
    },
    #[error("permission denied (403{}): {message}", code_suffix(.code))]
    Forbidden { message: String, code: String },
    #[error("not found (404{}): {message}", code_suffix(.code))]
    NotFound { message: String, code: String },
    #[error("conflict (409{}): {message}", code_suffix(.code))]
    Conflict { message: String, code: String },
    #[error("rate limited by the provider (429)")]
    RateLimited { retry_after: Option<Duration> },
    #[error("provider server error ({status}{}): {message}", code_suffix(.code))]
    Server { status: u16, message: String, code: String },
    /// A status the table does not name (another 4xx).
    #[error("unexpected HTTP status {status}{}: {message}", code_suffix(.code))]
    Status { status: u16, message: String, code: String },
    /// A 2xx answer whose envelope carries a non-zero `code` / non-empty `errcode`.
    #[error("the provider reported an error (code {code}): {message}")]
    Api { message: String, code: String },
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot connect to the provider: {0}")]
    Connection(String),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("unexpected response from the provider: {0}")]
    Protocol(String),
    #[error("login failed: {0}")]
    Auth(String),
    #[error("circuit breaker open after repeated provider failures; retry in {retry_after:?}")]
    CircuitOpen { retry_after: Duration },
    #[error("task {task_id} failed: {reason}")]
    TaskFailed { task_id: String, reason: String },
    #[error("task {task_id} did not finish within {waited:?}")]
    TaskTimeout { task_id: String, waited: Duration },
    #[error("the gateway is not running")]
    GatewayGone,
}

fn code_suffix(code: &str) -> String {
    if code.is_empty() { String::new() } else { format!(", {code}") }
}

impl ProviderError {
    /// Whether the same request may succeed later without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Timeout(_)
                | Self::Connection(_)
                | Self::CircuitOpen { .. }
                | Self::TaskTimeout { .. }
                | Self::GatewayGone
        )
    }

    /// How long the provider asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            Self::CircuitOpen { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether this failure says the provider itself is unwell (counts towards opening the
    /// circuit breaker). Rate limiting and client errors do not: the provider is answering.
    pub fn indicates_outage(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Timeout(_) | Self::Connection(_))
    }

    /// A stable snake_case label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::Config(_) => "config",
            Self::BadRequest { .. } => "bad_request",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server_error",
            Self::Status { .. } => "status",
            Self::Api { .. } => "api_error",
            Self::Timeout(_) => "timeout",
            Self::Connection(_) => "connection",
            Self::Tls(_) => "tls",
            Self::Protocol(_) => "protocol",
            Self::Auth(_) => "auth",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::TaskFailed { .. } => "task_failed",
            Self::TaskTimeout { .. } => "task_timeout",
            Self::GatewayGone => "gateway_gone",
        }
    }

    /// Maps an HTTP error status and the fields of its body to an error.
    pub fn from_status(status: u16, message: String, code: String, retry_after: Option<Duration>) -> Self {
        match status {
            400 => Self::BadRequest { message, code },
            401 => Self::Unauthorized { message, code, clock_skew_secs: None },
            403 => Self::Forbidden { message, code },
            404 => Self::NotFound { message, code },
            409 => Self::Conflict { message, code },
            429 => Self::RateLimited { retry_after },
            500..=599 => Self::Server { status, message, code },
            _ => Self::Status { status, message, code },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let e = |s| ProviderError::from_status(s, "m".into(), "0x1".into(), None);
        assert!(matches!(e(400), ProviderError::BadRequest { .. }));
        assert!(matches!(e(401), ProviderError::Unauthorized { .. }));
        assert!(matches!(e(403), ProviderError::Forbidden { .. }));
        assert!(matches!(e(404), ProviderError::NotFound { .. }));
        assert!(matches!(e(409), ProviderError::Conflict { .. }));
        assert!(matches!(e(429), ProviderError::RateLimited { .. }));
        assert!(matches!(e(502), ProviderError::Server { status: 502, .. }));
        assert!(matches!(e(418), ProviderError::Status { status: 418, .. }));
        for s in [400, 401, 403, 404, 409, 418] {
            assert!(!e(s).is_transient(), "{s}");
        }
        for s in [429, 500, 502, 503] {
            assert!(e(s).is_transient(), "{s}");
        }
        assert!(e(500).indicates_outage());
        assert!(!e(429).indicates_outage());
        assert_eq!(e(404).to_string(), "not found (404, 0x1): m");
        let r = ProviderError::from_status(429, String::new(), String::new(), Some(Duration::from_secs(3)));
        assert_eq!(r.retry_after(), Some(Duration::from_secs(3)));
    }
}
