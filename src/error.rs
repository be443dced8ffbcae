//! One error type for everything that reaches a client, with a code table.
//!
//! Every error has an HTTP status, a stable snake_case name, a type (`invalid_request`,
//! `auth`, `internal`, `system`) and a message a user can act on. API routes render it as
//! `{"message","code","type","link"}`; internal errors are logged once, where the response
//! is built, and their detail never reaches the client.

use std::fmt;

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde::Serialize;

/// Result alias for fallible handlers and services.
pub type AppResult<T> = Result<T, AppError>;

/// Seconds a client is asked to wait before retrying after a 429.
const RETRY_AFTER_SECS: &str = "30";

/// The documentation base for error links.
const DOC_BASE: &str = "https://vmauto.invalid/docs/errors#";

/// Declares [`Code`] and [`Code::ALL`] from one list, so no list of the codes is kept by hand.
macro_rules! codes {
    ($($name:ident),* $(,)?) => {
        /// The error-code table: each variant is one stable code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $($name),*
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$name),*];
        }
    };
}

codes!(
    BadRequest,
    InvalidJson,
    PayloadTooLarge,
    RequestTimeout,
    NotFound,
    Conflict,
    Unauthorized,
    Forbidden,
    InvalidSignature,
    RateLimited,
    NotReady,
    ProviderUnavailable,
    ProviderError,
    StoreUnavailable,
    Internal,
);

impl Code {
    /// HTTP status, stable name and error type of a code.
    pub const fn info(self) -> (StatusCode, &'static str, &'static str) {
        use Code::*;
        match self {
            BadRequest => (StatusCode::BAD_REQUEST, "bad_request", "invalid_request"),
            InvalidJson => (StatusCode::BAD_REQUEST, "invalid_json", "invalid_request"),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "invalid_request"),
            RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout", "invalid_request"),
            NotFound => (StatusCode::NOT_FOUND, "not_found", "invalid_request"),
            Conflict => (StatusCode::CONFLICT, "conflict", "invalid_request"),
            Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "auth"),
            Forbidden => (StatusCode::FORBIDDEN, "forbidden", "auth"),
            InvalidSignature => (StatusCode::UNAUTHORIZED, "invalid_signature", "auth"),
            RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "system"),
            NotReady => (StatusCode::SERVICE_UNAVAILABLE, "not_ready", "system"),
            ProviderUnavailable => (StatusCode::BAD_GATEWAY, "provider_unavailable", "system"),
            ProviderError => (StatusCode::BAD_GATEWAY, "provider_error", "system"),
            StoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "system"),
            Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal"),
        }
    }

    pub const fn status(self) -> StatusCode {
        self.info().0
    }

    pub const fn name(self) -> &'static str {
        self.info().1
    }
}

/// An error that knows which [`Code`] it is, so a handler maps it by its type, never by
/// reading its message.
pub trait ErrorCode: std::error::Error {
    fn code(&self) -> Code;
}

/// Something asked for by id does not exist (a VPS, an operation, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no such {what}: {id}")]
pub struct NotFound {
    pub what: &'static str,
    pub id: String,
}

impl NotFound {
    pub fn new(what: &'static str, id: impl Into<String>) -> Self {
        Self { what, id: id.into() }
    }
}

impl ErrorCode for NotFound {
    fn code(&self) -> Code {
        Code::NotFound
    }
}

/// The code of the first error in `e`'s chain that has one, if any.
pub fn code_of(e: &anyhow::Error) -> Option<Code> {
    e.chain().find_map(|cause| cause.downcast_ref::<NotFound>().map(ErrorCode::code))
}

impl AppError {
    /// An action's failure as the API answers it: its own code when it has one (a missing
    /// record is 404), otherwise a 400 whose message says what was wrong.
    pub fn from_action(e: &anyhow::Error) -> Self {
        Self::new(code_of(e).unwrap_or(Code::BadRequest), format!("{e:#}"))
    }
}

/// An error with a code, a user-facing message and (for internal errors) a private detail.
#[derive(Debug)]
pub struct AppError {
    pub code: Code,
    /// Shown to the client; says what to do.
    pub message: String,
    /// Logged, never shown.
    pub detail: Option<String>,
}

impl AppError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), detail: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    /// An internal failure: the client sees a generic message, the log gets the detail.
    pub fn internal(detail: impl fmt::Display) -> Self {
        Self {
            code: Code::Internal,
            message: "An internal error occurred. - Hint: the administrator can find the details in the log.".into(),
            detail: Some(detail.to_string()),
        }
    }

    pub fn store(detail: impl fmt::Display) -> Self {
        Self {
            code: Code::StoreUnavailable,
            message: "The data store is not available right now. - Hint: retry shortly; if it persists, check the store with `vmauto db` commands.".into(),
            detail: Some(detail.to_string()),
        }
    }

    pub fn with_detail(mut self, detail: impl fmt::Display) -> Self {
        self.detail = Some(detail.to_string());
        self
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for AppError {}

/// The JSON body of every error sent to an API client.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub message: &'a str,
    pub code: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub link: String,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let (status, name, kind) = self.code.info();
        if status.is_server_error() {
            tracing::error!(code = name, detail = self.detail.as_deref().unwrap_or(""), "{}", self.message);
        } else if self.code == Code::RateLimited {
            tracing::warn!(code = name, detail = self.detail.as_deref().unwrap_or(""), "{}", self.message);
        }
        let mut response = HttpResponse::build(status);
        if self.code == Code::RateLimited {
            response.insert_header(("Retry-After", RETRY_AFTER_SECS));
        }
        response.json(ErrorBody { message: &self.message, code: name, kind, link: format!("{DOC_BASE}{name}") })
    }
}

impl From<surrealdb::Error> for AppError {
    fn from(e: surrealdb::Error) -> Self {
        Self::store(e)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;

    use super::*;

    #[test]
    fn error_renders_its_code_and_hides_detail() {
        let e = AppError::internal("secret database path /x");
        let resp = e.error_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = resp.into_body().try_into_bytes().expect("bytes");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["code"], "internal");
        assert_eq!(v["type"], "internal");
        assert!(!v["message"].as_str().unwrap_or_default().contains("/x"));
    }

    #[test]
    fn a_missing_record_is_found_by_its_type_anywhere_in_the_chain() {
        use anyhow::Context as _;
        let e: anyhow::Error = NotFound::new("VPS", "v1").into();
        let wrapped = Err::<(), _>(e).context("cannot queue the action").unwrap_err();
        assert_eq!(code_of(&wrapped), Some(Code::NotFound));
        assert_eq!(AppError::from_action(&wrapped).code, Code::NotFound);
        // The words alone mean nothing: only the type does.
        let words = anyhow::anyhow!("no such VPS: v1");
        assert_eq!(code_of(&words), None);
        assert_eq!(AppError::from_action(&words).code, Code::BadRequest);
    }

    #[test]
    fn every_code_has_a_unique_name() {
        // `Code::ALL` is made by the same macro invocation as the enum: a new code is in it.
        let names: std::collections::HashSet<_> = Code::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Code::ALL.len(), "two codes share a name");
        assert!(Code::ALL.iter().all(|c| c.status().is_client_error() || c.status().is_server_error()));
    }
}
