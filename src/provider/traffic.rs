//! What every request to a provider goes through: admission (token buckets, fair queue,
//! concurrency cap), retries with capped exponential backoff and jitter, and the circuit
//! breaker. Provider-neutral: it only needs [`ProviderError`]'s classification.
//!
//! The client calls [`Traffic::run`] once per logical request and, inside the attempt,
//! [`Traffic::admit`] right before it authenticates and sends, so a signature's timestamp
//! (or a token) is fresh when the request leaves the queue. Logins skip admission (see
//! `SangforClient::call_anonymous`), so a request holding a slot can always get its token.

mod breaker;
mod queue;

use std::future::Future;
use std::time::Duration;

use rand::Rng;

pub use breaker::{BreakerEvent, BreakerListener, BreakerState, Verdict};
pub use queue::{CUSTOMER_QUEUE, Full, Limits, Rate, RequestClass, Slot};

use crate::config::SangforConfig;
use crate::provider::ProviderError;
use crate::telemetry::metrics::GatewayMetrics;

/// Longest wait between two attempts, whatever the provider's `Retry-After` says.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(120);

/// Tunables of the traffic layer.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficPolicy {
    /// Reads for operations and admins: the read budget minus the customers' share.
    pub read: Rate,
    pub write: Rate,
    /// Reads made for pages customers open (see [`for_customer`]).
    pub customer: Rate,
    pub max_concurrency: usize,
    /// Requests of one class that may wait for admission; more are refused (0 = unbounded).
    pub max_queued: usize,
    /// Retries after the first attempt for transient failures.
    pub max_retries: u32,
    /// First backoff; doubled per retry up to `retry_cap`, with jitter.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
}

impl TrafficPolicy {
    /// The policy `provider.sangfor` describes.
    ///
    /// Bursts are a tenth of the per-minute budget: enough to absorb a page of list calls,
    /// small enough that a queue of writes reaches SCP at an even pace instead of spending a
    /// minute's budget in the first second (which a window-counting server would refuse).
    /// The customers' share is carved out of the read budget, so both together stay within
    /// what SCP allows (an unlimited read budget leaves both unlimited).
    pub fn from_config(c: &SangforConfig) -> Self {
        let rate = |per_minute: u32| Rate { per_minute, burst: (per_minute / 10).max(1) };
        // A rate of 0 means unlimited, so with a read budget each share is at least 1 a minute.
        let (read, customer) = match c.get_per_minute {
            0 => (0, 0),
            get => {
                let customer = c.customer_reads_per_minute.clamp(1, (get / 2).max(1));
                ((get - customer).max(1), customer)
            }
        };
        Self {
            read: rate(read),
            write: rate(c.write_per_minute),
            customer: rate(customer),
            max_concurrency: c.max_concurrency.max(1),
            max_queued: c.max_queued,
            max_retries: c.max_retries,
            retry_base: Duration::from_millis(500),
            retry_cap: Duration::from_secs(30),
            breaker_threshold: c.breaker_threshold,
            breaker_cooldown: Duration::from_secs(c.breaker_cooldown_secs.max(1)),
        }
    }

    /// The backoff before retry number `retry` (0-based): exponential, capped, with "equal
    /// jitter" (half fixed, half random) so a burst of failures does not retry in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.retry_base.saturating_mul(2u32.saturating_pow(retry.min(16)));
        let capped = exp.min(self.retry_cap);
        let half = capped / 2;
        let jitter = rand::thread_rng().gen_range(0.0..=1.0);
        half + half.mul_f64(jitter)
    }
}

tokio::task_local! {
    /// Set while a request is made for a page a customer opened.
    static CUSTOMER: ();
}

/// Runs `f` with its SCP reads counted as customer reads: their own small share of the read
/// budget, their own connection, a short queue (see `queue`). Operations never wait for them.
pub async fn for_customer<F: Future>(f: F) -> F::Output {
    CUSTOMER.scope((), f).await
}

/// A budget several processes share for one provider (vmauto nodes on one store): each
/// request takes a token from it after the process's own buckets and slots let it go, so the
/// processes together stay within the provider's limits.
pub trait SharedBudget: Send + Sync {
    /// Takes one request of `class` (customer reads count as reads): `Ok(None)` when taken,
    /// `Ok(Some(wait))` when the budget is spent for `wait`, `Err` when it cannot be asked.
    fn take(&self, class: RequestClass) -> futures::future::BoxFuture<'_, Result<Option<Duration>, String>>;
}

/// Whether a request may be sent again after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// GET, DELETE, login, or a POST/PUT carrying the same idempotency token every time.
    Safe,
    /// Anything else: one attempt only.
    Never,
}

/// Permission to send one request; held until its answer is read.
pub struct Permit {
    _slot: Slot,
    op: &'static str,
    since: std::time::Instant,
    metrics: GatewayMetrics,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.metrics.duration.with_label_values(&[self.op]).observe(self.since.elapsed().as_secs_f64());
    }
}

/// The traffic layer of one provider connection.
pub struct Traffic {
    policy: TrafficPolicy,
    admission: queue::Admission,
    breaker: breaker::Breaker,
    metrics: GatewayMetrics,
    shared: Option<std::sync::Arc<dyn SharedBudget>>,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Traffic {
    /// `listener` hears when the circuit breaker opens or closes.
    pub fn new(policy: TrafficPolicy, metrics: GatewayMetrics, listener: Option<BreakerListener>) -> Self {
        let limits = Limits {
            read: policy.read,
            write: policy.write,
            customer: policy.customer,
            max_concurrency: policy.max_concurrency,
            max_queued: policy.max_queued,
        };
        let admission = queue::Admission::new(limits, metrics.clone());
        let breaker =
            breaker::Breaker::new(policy.breaker_threshold, policy.breaker_cooldown, metrics.clone(), listener);
        Self { policy, admission, breaker, metrics, shared: None }
    }

    /// Draws every request from `budget` as well (several nodes on one provider).
    pub fn sharing(mut self, budget: std::sync::Arc<dyn SharedBudget>) -> Self {
        self.shared = Some(budget);
        self
    }

    pub fn policy(&self) -> &TrafficPolicy {
        &self.policy
    }

    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Waits for a token and a slot. Fails fast if the breaker opened meanwhile. The permit
    /// times the request on the wire (`vmauto_scp_request_duration_seconds{op}`) until dropped.
    ///
    /// A read made inside [`for_customer`] waits in the customers' lane instead of the
    /// operations' one. A full queue answers [`ProviderError::Overloaded`] at once.
    pub async fn admit(&self, class: RequestClass, op: &'static str) -> Result<Permit, ProviderError> {
        let class = match class {
            RequestClass::Read if CUSTOMER.try_with(|()| ()).is_ok() => RequestClass::Customer,
            other => other,
        };
        let slot = self
            .admission
            .admit(class)
            .await
            .map_err(|f| ProviderError::Overloaded { class: f.class.label(), queued: f.queued })?;
        if let Some(retry_after) = self.breaker.is_open() {
            return Err(ProviderError::CircuitOpen { retry_after });
        }
        if let Some(shared) = &self.shared {
            // The slot is held while the shared budget refills: this node's next request
            // would wait for the same budget anyway.
            loop {
                match shared.take(class).await {
                    Ok(None) => break,
                    Ok(Some(wait)) => tokio::time::sleep(wait).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "the budget shared with the other nodes cannot be read");
                        return Err(ProviderError::Overloaded { class: class.label(), queued: 0 });
                    }
                }
            }
        }
        Ok(Permit { _slot: slot, op, since: std::time::Instant::now(), metrics: self.metrics.clone() })
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the retries are spent.
    ///
    /// `attempt` gets the 0-based attempt number and must call [`Traffic::admit`] before it
    /// sends. Transient failures (429, 5xx, timeouts, connection errors) are retried when
    /// `replay` is [`Replay::Safe`], after the longer of the backoff and the provider's
    /// `Retry-After`. Every attempt is counted by `op` and outcome.
    pub async fn run<T, F, Fut>(&self, op: &'static str, replay: Replay, mut attempt: F) -> Result<T, ProviderError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut n = 0u32;
        loop {
            let ticket = match self.breaker.before() {
                Ok(t) => t,
                Err(e) => {
                    self.metrics.requests.with_label_values(&[op, e.kind()]).inc();
                    return Err(e);
                }
            };
            let result = attempt(n).await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.kind(),
            };
            self.metrics.requests.with_label_values(&[op, outcome]).inc();
            match &result {
                // Not sent: nothing learnt about the provider.
                Err(ProviderError::CircuitOpen { .. } | ProviderError::Overloaded { .. }) => drop(ticket),
                Err(e) if e.indicates_outage() => ticket.finish(Verdict::Outage),
                _ => ticket.finish(Verdict::Answered),
            }
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let retryable = replay == Replay::Safe
                && err.is_transient()
                && !matches!(err, ProviderError::CircuitOpen { .. })
                // A customer page answers "busy" at once rather than waiting for the queue.
                && !matches!(err, ProviderError::Overloaded { class, .. } if class == RequestClass::Customer.label())
                && n < self.policy.max_retries;
            if !retryable {
                return Err(err);
            }
            let mut wait = self.policy.backoff(n);
            if let Some(after) = err.retry_after() {
                wait = wait.max(after);
            }
            let wait = wait.min(MAX_RETRY_WAIT);
            self.metrics.retries.with_label_values(&[op, err.kind()]).inc();
            tracing::debug!(op, attempt = n, error = %err, wait = ?wait, "transient provider failure; retrying");
            tokio::time::sleep(wait).await;
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn policy(max_retries: u32, breaker_threshold: u32) -> TrafficPolicy {
        TrafficPolicy {
            read: Rate { per_minute: 0, burst: 0 },
            write: Rate { per_minute: 0, burst: 0 },
            customer: Rate { per_minute: 0, burst: 0 },
            max_concurrency: 4,
            max_queued: 0,
            max_retries,
            retry_base: Duration::from_millis(1),
            retry_cap: Duration::from_millis(4),
            breaker_threshold,
            breaker_cooldown: Duration::from_secs(60),
        }
    }

    async fn failing(t: &Traffic, calls: &AtomicU32, replay: Replay, err: ProviderError) -> Result<(), ProviderError> {
        t.run("test", replay, |_| async {
            let _permit = t.admit(RequestClass::Write, "test").await?;
            calls.fetch_add(1, Ordering::SeqCst);
            Err(err.clone())
        })
        .await
    }

    #[test]
    fn the_customers_share_comes_out_of_the_read_budget() {
        let shares = |get: u32, customer: u32| {
            let c =
                SangforConfig { get_per_minute: get, customer_reads_per_minute: customer, ..SangforConfig::default() };
            let p = TrafficPolicy::from_config(&c);
            (p.read.per_minute, p.customer.per_minute)
        };
        assert_eq!(shares(600, 60), (540, 60));
        assert_eq!(shares(600, 0), (599, 1), "never unlimited, never over SCP's budget");
        assert_eq!(shares(100, 90), (50, 50), "at most half");
        assert_eq!(shares(0, 60), (0, 0), "no budget: both unlimited");
    }

    #[tokio::test]
    async fn retries_transient_errors_up_to_the_limit() {
        let t = Traffic::new(policy(3, 0), GatewayMetrics::unregistered(), None);
        let calls = AtomicU32::new(0);
        let e = ProviderError::Server { status: 503, message: String::new(), code: String::new() };
        assert!(failing(&t, &calls, Replay::Safe, e.clone()).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        calls.store(0, Ordering::SeqCst);
        assert!(failing(&t, &calls, Replay::Never, e).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "non-replayable requests are sent once");
        assert_eq!(t.metrics.retries.with_label_values(&["test", "server_error"]).get(), 3);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let t = Traffic::new(policy(5, 0), GatewayMetrics::unregistered(), None);
        let calls = AtomicU32::new(0);
        let e = ProviderError::BadRequest { message: String::new(), code: String::new() };
        assert!(matches!(failing(&t, &calls, Replay::Safe, e).await, Err(ProviderError::BadRequest { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn succeeds_after_transient_failures() {
        let t = Traffic::new(policy(5, 0), GatewayMetrics::unregistered(), None);
        let calls = Arc::new(AtomicU32::new(0));
        let r = t
            .run("flaky", Replay::Safe, |n| {
                let calls = Arc::clone(&calls);
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    if n < 2 { Err(ProviderError::Timeout(Duration::from_secs(1))) } else { Ok(n) }
                }
            })
            .await;
        assert_eq!(r.unwrap(), 2);
        assert_eq!(t.metrics.requests.with_label_values(&["flaky", "timeout"]).get(), 2);
        assert_eq!(t.metrics.requests.with_label_values(&["flaky", "ok"]).get(), 1);
    }

    #[tokio::test]
    async fn breaker_opens_and_fails_fast() {
        let t = Traffic::new(policy(0, 2), GatewayMetrics::unregistered(), None);
        let calls = AtomicU32::new(0);
        let e = ProviderError::Connection("refused".into());
        for _ in 0..2 {
            let _ = failing(&t, &calls, Replay::Safe, e.clone()).await;
        }
        assert_eq!(t.breaker_state(), BreakerState::Open);
        let r = failing(&t, &calls, Replay::Safe, e).await;
        assert!(matches!(r, Err(ProviderError::CircuitOpen { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "no request while open");
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p =
            TrafficPolicy { retry_base: Duration::from_millis(100), retry_cap: Duration::from_secs(1), ..policy(5, 0) };
        for n in 0..20 {
            let d = p.backoff(n);
            assert!(d <= Duration::from_secs(1), "{d:?}");
            let full = (Duration::from_millis(100) * 2u32.pow(n.min(10))).min(Duration::from_secs(1));
            assert!(d >= full / 2, "{n}: {d:?}");
        }
    }
}
