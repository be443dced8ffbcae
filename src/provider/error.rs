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
    /// Too many requests of this class already wait for SCP; this one was not queued.
    #[error("too many SCP requests are waiting ({queued} {class} requests queued); try again shortly")]
    Overloaded { class: &'static str, queued: usize },
}

/// Why an SCP task failed, as far as its reason text tells: whether waiting helps, or an admin
/// has to change something first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFailure {
    /// The pool (CPU, memory, storage, addresses) has no room for the request.
    Capacity,
    /// The template's image is missing, unusable or not in the pool.
    InvalidImage,
    /// The tenant's quota on SCP is used up.
    Quota,
    /// SCP's license does not allow it.
    License,
    /// Anything else: SCP's generic failure, a timeout, a busy host, a lost VM. Retried.
    Transient,
}

impl TaskFailure {
    /// Reads a task's failure `description`. Permanent causes are recognised by the words SCP
    /// uses for them; everything else is taken as passing, so an unknown reason is retried
    /// (within `policy.max_attempts`) rather than given up at once.
    pub fn classify(reason: &str) -> Self {
        let r = reason.to_ascii_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| r.contains(w));
        if any(&["license", "licence"]) {
            Self::License
        } else if any(&["quota"]) {
            Self::Quota
        } else if any(&["insufficient", "not enough", "no free", "exhausted", "out of capacity", "has no free address"])
        {
            Self::Capacity
        } else if r.contains("image")
            && any(&["invalid", "damaged", "does not exist", "not exist", "not found", "not active", "not available"])
        {
            Self::InvalidImage
        } else {
            Self::Transient
        }
    }

    pub fn is_permanent(self) -> bool {
        self != Self::Transient
    }

    /// What the admin must change before a retry can succeed.
    pub fn admin_hint(self) -> &'static str {
        match self {
            Self::Capacity => {
                "SCP has no room for this VM: free capacity in the template's resource pool, or point the template at \
                 another pool, then retry"
            }
            Self::InvalidImage => "the template's image is unusable on SCP: fix the image or the template, then retry",
            Self::Quota => "the SCP project's quota is used up: raise the quota or free resources, then retry",
            Self::License => "SCP's license does not allow this: renew or extend the license, then retry",
            Self::Transient => "SCP reported a passing failure; it is retried with back-off",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Capacity => "capacity",
            Self::InvalidImage => "invalid_image",
            Self::Quota => "quota",
            Self::License => "license",
            Self::Transient => "transient",
        }
    }
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
                | Self::Overloaded { .. }
        ) || matches!(self, Self::TaskFailed { reason, .. } if !TaskFailure::classify(reason).is_permanent())
    }

    /// For a failed task: why, as far as its reason tells.
    pub fn task_failure(&self) -> Option<TaskFailure> {
        match self {
            Self::TaskFailed { reason, .. } => Some(TaskFailure::classify(reason)),
            _ => None,
        }
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
            Self::Overloaded { .. } => "overloaded",
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

    #[test]
    fn task_failures_are_classified_by_their_reason() {
        let cases = [
            ("create_server failed: internal error, please try again later", TaskFailure::Transient),
            ("the operation timed out on the platform", TaskFailure::Transient),
            ("the host is busy, please try again later", TaskFailure::Transient),
            ("the VM is lost (vm_lost)", TaskFailure::Transient),
            ("Insufficient memory in resource pool az1: 4096 MB requested, 0 MB available", TaskFailure::Capacity),
            ("Insufficient storage on tag in resource pool az1", TaskFailure::Capacity),
            ("the image is invalid or damaged", TaskFailure::InvalidImage),
            ("image img-9 does not exist", TaskFailure::InvalidImage),
            ("the project quota is exceeded", TaskFailure::Quota),
            ("license limit reached", TaskFailure::License),
            ("something nobody has seen before", TaskFailure::Transient),
        ];
        for (reason, want) in cases {
            assert_eq!(TaskFailure::classify(reason), want, "{reason}");
            let e = ProviderError::TaskFailed { task_id: "t".into(), reason: reason.into() };
            assert_eq!(e.is_transient(), !want.is_permanent(), "{reason}");
            assert_eq!(e.task_failure(), Some(want));
        }
        assert!(TaskFailure::Capacity.admin_hint().contains("capacity"));
    }
}
