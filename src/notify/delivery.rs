//! One delivery (an email or a webhook POST) with capped back-off between attempts; every
//! attempt is recorded in the `notify_attempt` table so an admin can see what was tried.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::db::Store;
use crate::db::models::notify_attempt::DeliveryAttempt;

/// The first wait between attempts; it doubles up to `retry_max`.
pub const RETRY_BASE: Duration = Duration::from_secs(1);

/// What a delivery is, for the attempt records.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Stable id shared by every attempt (and sent as `X-Vmauto-Delivery`).
    pub id: String,
    /// `email` or `webhook`.
    pub channel: &'static str,
    /// The URL, or the recipients.
    pub target: String,
    /// The notification kind (snake_case), or `customer_vps_ready`.
    pub kind: String,
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        attempts: u32,
    },
    /// Every attempt failed, or one failed in a way that retrying cannot fix.
    GaveUp {
        attempts: u32,
        last_error: String,
    },
}

/// A failed attempt: retry it, or not.
#[derive(Debug, Clone)]
pub enum AttemptError {
    Transient(String),
    Permanent(String),
}

/// The wait before attempt `n + 1` after `n` failures: 1 s, 2 s, 4 s, … capped.
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
    RETRY_BASE.saturating_mul(factor).min(cap).max(Duration::from_millis(1))
}

/// Runs `attempt` up to `max_attempts` times with back-off, recording each attempt. The
/// closure gets the 1-based attempt number and answers `Ok(detail)` on success (a status
/// code or the SMTP reply, kept in the record).
pub async fn run<F, Fut>(store: &Store, d: &Delivery, max_attempts: u32, retry_max: Duration, mut attempt: F) -> Outcome
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<String, AttemptError>>,
{
    let mut n = 0;
    loop {
        n += 1;
        let started = Instant::now();
        let result = attempt(n).await;
        let ms = started.elapsed().as_millis() as u64;
        let (ok, detail) = match &result {
            Ok(detail) => (true, detail.clone()),
            Err(AttemptError::Transient(e) | AttemptError::Permanent(e)) => (false, e.clone()),
        };
        let row = DeliveryAttempt {
            delivery: &d.id,
            channel: d.channel,
            target: &d.target,
            kind: &d.kind,
            attempt: n,
            ok,
            detail: &detail,
            duration_ms: ms,
        };
        if let Err(e) = store.record_delivery_attempt(&row).await {
            tracing::warn!(delivery = %d.id, error = %e, "could not record a delivery attempt");
        }
        match result {
            Ok(_) => {
                tracing::info!(delivery = %d.id, channel = d.channel, kind = %d.kind, attempt = n, "notification delivered");
                return Outcome::Delivered { attempts: n };
            }
            Err(AttemptError::Permanent(e)) => {
                tracing::error!(delivery = %d.id, channel = d.channel, kind = %d.kind, attempt = n, error = %e,
                    "notification delivery failed permanently");
                return Outcome::GaveUp { attempts: n, last_error: e };
            }
            Err(AttemptError::Transient(e)) if n >= max_attempts => {
                tracing::error!(delivery = %d.id, channel = d.channel, kind = %d.kind, attempt = n, error = %e,
                    "notification delivery gave up after its last attempt");
                return Outcome::GaveUp { attempts: n, last_error: e };
            }
            Err(AttemptError::Transient(e)) => {
                let wait = backoff(n, retry_max);
                tracing::warn!(delivery = %d.id, channel = d.channel, kind = %d.kind, attempt = n, error = %e,
                    retry_in_ms = wait.as_millis() as u64, "notification delivery failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_and_caps() {
        let cap = Duration::from_secs(10);
        assert_eq!(backoff(1, cap), Duration::from_secs(1));
        assert_eq!(backoff(2, cap), Duration::from_secs(2));
        assert_eq!(backoff(4, cap), Duration::from_secs(8));
        assert_eq!(backoff(5, cap), cap);
        assert_eq!(backoff(u32::MAX, cap), cap);
    }
}
