//! Request metrics: counts and durations labelled by route pattern (never the raw path, so
//! ids in URLs cannot explode the label set).

use std::sync::Arc;
use std::time::Instant;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use crate::telemetry::metrics::Metrics;

/// Records `vmauto_http_requests_total` and `vmauto_http_request_duration_seconds`.
pub async fn record_metrics(
    metrics: Arc<Metrics>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let result = next.call(req).await;
    let (route, status) = match &result {
        Ok(res) => {
            (res.request().match_pattern().unwrap_or_else(|| "unmatched".into()), res.status().as_u16().to_string())
        }
        Err(e) => ("unmatched".into(), e.as_response_error().status_code().as_u16().to_string()),
    };
    metrics.http_requests.with_label_values(&[&route, method, &status]).inc();
    metrics.http_duration.with_label_values(&[&route]).observe(started.elapsed().as_secs_f64());
    result
}

/// The method as a metric label: the standard methods by name, anything else (a client may
/// send any token as a method) as `other`, so the label set stays bounded.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::Method;

    use super::method_label;

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"FOO1").expect("method")), "other");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").expect("method")), "other");
    }
}
