//! The circuit breaker: stop sending to a provider that is down, probe it now and then.
//!
//! After `threshold` consecutive outage failures (5xx, timeouts, connection errors) the
//! breaker opens and every call fails at once with [`ProviderError::CircuitOpen`] for
//! `cooldown`. Then one probe is let through (half-open): an answer closes the breaker, an
//! outage opens it again. Rate limiting and client errors are answers, so they never count.
//! Opening and closing are emitted as [`BreakerEvent`]s to a listener (the gateway actor tells
//! admins), because an SCP outage stalls every lifecycle operation and admins must hear of it.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::provider::ProviderError;
use crate::telemetry::metrics::GatewayMetrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The breaker's state as the UI and tests see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// A change of the breaker that admins should hear of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerEvent {
    /// `failures` outages in a row opened it; it probes again after `cooldown`.
    Opened { failures: u32, cooldown: Duration },
    /// The provider answered a probe: requests flow again.
    Closed,
}

/// Who hears of [`BreakerEvent`]s. Called outside the breaker's lock.
pub type BreakerListener = Arc<dyn Fn(BreakerEvent) + Send + Sync>;

/// How a call ended, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The provider answered (even with an error status).
    Answered,
    /// The provider did not answer properly: 5xx, timeout, connection failure.
    Outage,
}

pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
    metrics: GatewayMetrics,
    listener: Option<BreakerListener>,
}

/// Permission to make one call; a half-open probe gives its slot back if dropped unused.
pub struct Ticket<'a> {
    breaker: &'a Breaker,
    probe: bool,
    done: bool,
}

impl Breaker {
    /// `threshold == 0` disables the breaker.
    pub fn new(threshold: u32, cooldown: Duration, metrics: GatewayMetrics, listener: Option<BreakerListener>) -> Self {
        metrics.breaker_state.set(0);
        Self { state: Mutex::new(State::Closed { failures: 0 }), threshold, cooldown, metrics, listener }
    }

    pub fn state(&self) -> BreakerState {
        match *self.state.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a call: `Err(CircuitOpen)` while open or while a probe is out.
    pub fn before(&self) -> Result<Ticket<'_>, ProviderError> {
        let mut state = self.state.lock();
        match *state {
            State::Closed { .. } => Ok(Ticket { breaker: self, probe: false, done: false }),
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(ProviderError::CircuitOpen { retry_after: until - now });
                }
                *state = State::HalfOpen { probing: true };
                self.transition(BreakerState::HalfOpen);
                Ok(Ticket { breaker: self, probe: true, done: false })
            }
            State::HalfOpen { probing: true } => {
                Err(ProviderError::CircuitOpen { retry_after: Duration::from_secs(1).min(self.cooldown) })
            }
            State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                Ok(Ticket { breaker: self, probe: true, done: false })
            }
        }
    }

    /// Whether calls are being refused right now (checked again after a long queue wait).
    pub fn is_open(&self) -> Option<Duration> {
        match *self.state.lock() {
            State::Open { until } => until.checked_duration_since(Instant::now()),
            _ => None,
        }
    }

    fn record(&self, probe: bool, verdict: Verdict) {
        let mut state = self.state.lock();
        match (verdict, *state) {
            (Verdict::Answered, State::Closed { .. }) => *state = State::Closed { failures: 0 },
            (Verdict::Answered, State::HalfOpen { .. } | State::Open { .. }) => {
                *state = State::Closed { failures: 0 };
                drop(state);
                self.transition(BreakerState::Closed);
                tracing::info!("SCP answers again; circuit breaker closed");
                self.emit(BreakerEvent::Closed);
            }
            (Verdict::Outage, State::Closed { failures }) => {
                let failures = failures + 1;
                if self.threshold > 0 && failures >= self.threshold {
                    *state = State::Open { until: Instant::now() + self.cooldown };
                    drop(state);
                    self.opened(failures);
                } else {
                    *state = State::Closed { failures };
                }
            }
            (Verdict::Outage, State::HalfOpen { .. }) if probe => {
                *state = State::Open { until: Instant::now() + self.cooldown };
                drop(state);
                self.transition(BreakerState::Open);
                tracing::warn!(cooldown = ?self.cooldown, "SCP probe failed; circuit breaker stays open");
            }
            // A late failure from before the breaker opened, or while another probe is out.
            (Verdict::Outage, _) => {}
        }
    }

    fn opened(&self, failures: u32) {
        self.transition(BreakerState::Open);
        tracing::error!(failures, cooldown = ?self.cooldown, "SCP keeps failing; circuit breaker opened");
        self.emit(BreakerEvent::Opened { failures, cooldown: self.cooldown });
    }

    fn transition(&self, to: BreakerState) {
        let (value, label) = match to {
            BreakerState::Closed => (0, "closed"),
            BreakerState::HalfOpen => (1, "half_open"),
            BreakerState::Open => (2, "open"),
        };
        self.metrics.breaker_state.set(value);
        self.metrics.breaker_transitions.with_label_values(&[label]).inc();
    }

    fn emit(&self, event: BreakerEvent) {
        if let Some(listener) = &self.listener {
            listener(event);
        }
    }
}

impl Ticket<'_> {
    /// Reports how the call ended.
    pub fn finish(mut self, verdict: Verdict) {
        self.done = true;
        self.breaker.record(self.probe, verdict);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe && !self.done {
            let mut state = self.breaker.state.lock();
            if *state == (State::HalfOpen { probing: true }) {
                *state = State::HalfOpen { probing: false };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, cooldown_ms: u64) -> Breaker {
        Breaker::new(threshold, Duration::from_millis(cooldown_ms), GatewayMetrics::unregistered(), None)
    }

    #[tokio::test]
    async fn opens_after_threshold_and_closes_after_a_good_probe() {
        let b = breaker(3, 50);
        for _ in 0..2 {
            b.before().unwrap().finish(Verdict::Outage);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.before().unwrap().finish(Verdict::Outage);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.metrics.breaker_state.get(), 2);
        assert!(matches!(b.before(), Err(ProviderError::CircuitOpen { .. })));
        tokio::time::sleep(Duration::from_millis(60)).await;
        let probe = b.before().unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.before().is_err(), "only one probe at a time");
        probe.finish(Verdict::Answered);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.metrics.breaker_state.get(), 0);
    }

    #[tokio::test]
    async fn failed_probe_reopens_and_dropped_probe_frees_the_slot() {
        let b = breaker(1, 20);
        b.before().unwrap().finish(Verdict::Outage);
        tokio::time::sleep(Duration::from_millis(30)).await;
        b.before().unwrap().finish(Verdict::Outage);
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(b.before().unwrap());
        assert!(b.before().is_ok(), "a dropped probe gives its slot back");
    }

    #[test]
    fn answers_reset_the_count_and_zero_threshold_disables() {
        let b = breaker(2, 1000);
        b.before().unwrap().finish(Verdict::Outage);
        b.before().unwrap().finish(Verdict::Answered);
        b.before().unwrap().finish(Verdict::Outage);
        assert_eq!(b.state(), BreakerState::Closed);
        let off = breaker(0, 1000);
        for _ in 0..10 {
            off.before().unwrap().finish(Verdict::Outage);
        }
        assert_eq!(off.state(), BreakerState::Closed);
    }
}
