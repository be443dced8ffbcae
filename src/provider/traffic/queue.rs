//! Admission: token buckets per request class, a concurrency cap and a fair queue.
//!
//! SCP counts GETs and other methods separately (about 600 and 100 a minute), so each class
//! has its own bucket and its own FIFO. One dispatcher task hands out slots: it alternates
//! between the classes that have a token, so a burst of queued writes waiting for the slow
//! write bucket never holds back reads, and within a class requests go in arrival order.
//! Every wait is measured (`vmauto_scp_rate_limit_wait_seconds`) and the queue depth is a
//! gauge, so throttling shows up on a dashboard instead of as mysterious latency.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use crate::telemetry::metrics::GatewayMetrics;

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    /// GET.
    Read,
    /// POST, PUT, DELETE.
    Write,
}

impl RequestClass {
    pub fn label(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Read => 0,
            Self::Write => 1,
        }
    }
}

/// A bucket's size: `per_minute` tokens a minute, at most `burst` at once. 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

fn bucket(rate: Rate) -> Option<DefaultDirectRateLimiter> {
    let per_minute = NonZeroU32::new(rate.per_minute)?;
    let burst = NonZeroU32::new(rate.burst.clamp(1, rate.per_minute)).unwrap_or(NonZeroU32::MIN);
    Some(RateLimiter::direct(Quota::per_minute(per_minute).allow_burst(burst)))
}

struct Waiter {
    tx: oneshot::Sender<OwnedSemaphorePermit>,
    since: Instant,
}

struct Queues {
    fifo: [VecDeque<Waiter>; 2],
    /// The class served first next time (round robin between classes with a token).
    next: usize,
}

struct Shared {
    queues: Mutex<Queues>,
    wake: Notify,
    slots: Arc<Semaphore>,
    buckets: [Option<DefaultDirectRateLimiter>; 2],
    clock: DefaultClock,
    metrics: GatewayMetrics,
    started: AtomicBool,
    closed: AtomicBool,
}

/// The admission controller; dropping it stops its dispatcher.
pub struct Admission {
    shared: Arc<Shared>,
}

/// A granted slot: held while the request is on the wire.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: GatewayMetrics,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

const CLASSES: [RequestClass; 2] = [RequestClass::Read, RequestClass::Write];

impl Admission {
    /// `max_concurrency == 0` means one at a time.
    pub fn new(read: Rate, write: Rate, max_concurrency: usize, metrics: GatewayMetrics) -> Self {
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues { fifo: [VecDeque::new(), VecDeque::new()], next: 0 }),
            wake: Notify::new(),
            slots: Arc::new(Semaphore::new(max_concurrency.max(1))),
            buckets: [bucket(read), bucket(write)],
            clock: DefaultClock::default(),
            metrics,
            started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        Self { shared }
    }

    /// Waits for a token of `class` and a concurrency slot, in FIFO order within the class.
    pub async fn admit(&self, class: RequestClass) -> Slot {
        self.ensure_dispatcher();
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.shared.queues.lock();
            q.fifo[class.index()].push_back(Waiter { tx, since: Instant::now() });
        }
        self.shared.metrics.queue_depth.with_label_values(&[class.label()]).inc();
        self.shared.wake.notify_one();
        // The dispatcher lives as long as `self`, so the sender is never dropped unanswered
        // while we wait; if it were, fall back to waiting for a slot without a token.
        let permit = match rx.await {
            Ok(p) => p,
            Err(_) => Arc::clone(&self.shared.slots).acquire_owned().await.expect("semaphore never closed"),
        };
        self.shared.metrics.in_flight.inc();
        Slot { _permit: permit, metrics: self.shared.metrics.clone() }
    }

    fn ensure_dispatcher(&self) {
        if !self.shared.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(dispatch(Arc::clone(&self.shared)));
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

/// What one pass over the queues found.
enum Pass {
    /// A waiter got the slot.
    Granted,
    /// Nothing is queued.
    Idle,
    /// Waiters exist but their buckets are empty for this long.
    Throttled(Duration),
}

async fn dispatch(shared: Arc<Shared>) {
    while !shared.closed.load(Ordering::Acquire) {
        let Ok(mut permit) = Arc::clone(&shared.slots).acquire_owned().await else {
            return;
        };
        loop {
            if shared.closed.load(Ordering::Acquire) {
                return;
            }
            let (pass, returned) = one_pass(&shared, permit);
            match pass {
                Pass::Granted => break,
                Pass::Idle => {
                    permit = returned.expect("permit kept when nothing was granted");
                    shared.wake.notified().await;
                }
                Pass::Throttled(wait) => {
                    permit = returned.expect("permit kept when nothing was granted");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shared.wake.notified() => {}
                    }
                }
            }
        }
    }
}

/// Tries to hand `permit` to the first waiter of a class that has a token, starting with the
/// class whose turn it is. Gives the permit back when nothing was granted.
fn one_pass(shared: &Shared, permit: OwnedSemaphorePermit) -> (Pass, Option<OwnedSemaphorePermit>) {
    let mut q = shared.queues.lock();
    let mut permit = Some(permit);
    let mut wait: Option<Duration> = None;
    let first = q.next;
    for i in 0..2 {
        let idx = (first + i) % 2;
        let class = CLASSES[idx];
        // Waiters that gave up (their request was cancelled) leave without using a token.
        while q.fifo[idx].front().is_some_and(|w| w.tx.is_closed()) {
            q.fifo[idx].pop_front();
            shared.metrics.queue_depth.with_label_values(&[class.label()]).dec();
        }
        if q.fifo[idx].is_empty() {
            continue;
        }
        if let Some(b) = &shared.buckets[idx]
            && let Err(not_until) = b.check()
        {
            let w = not_until.wait_time_from(shared.clock.now());
            wait = Some(wait.map_or(w, |x| x.min(w)));
            continue;
        }
        let waiter = q.fifo[idx].pop_front().expect("checked non-empty");
        shared.metrics.queue_depth.with_label_values(&[class.label()]).dec();
        shared
            .metrics
            .rate_limit_wait
            .with_label_values(&[class.label()])
            .observe(waiter.since.elapsed().as_secs_f64());
        match waiter.tx.send(permit.take().expect("one grant per pass")) {
            Ok(()) => {
                q.next = (idx + 1) % 2;
                return (Pass::Granted, None);
            }
            // Cancelled between the check and the send: the token is spent, the slot is not.
            Err(p) => permit = Some(p),
        }
    }
    match wait {
        Some(w) => (Pass::Throttled(w.max(Duration::from_millis(1))), permit),
        None if q.fifo.iter().all(VecDeque::is_empty) => (Pass::Idle, permit),
        // A waiter was cancelled after taking a token: look again at once.
        None => (Pass::Throttled(Duration::from_millis(1)), permit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unlimited() -> Rate {
        Rate { per_minute: 0, burst: 0 }
    }

    #[tokio::test]
    async fn caps_concurrency() {
        let a = Arc::new(Admission::new(unlimited(), unlimited(), 2, GatewayMetrics::unregistered()));
        let s1 = a.admit(RequestClass::Read).await;
        let _s2 = a.admit(RequestClass::Write).await;
        let a2 = Arc::clone(&a);
        let third = tokio::spawn(async move { a2.admit(RequestClass::Read).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "third request must wait for a slot");
        assert_eq!(a.shared.metrics.queue_depth.with_label_values(&["read"]).get(), 1);
        drop(s1);
        let _s3 = tokio::time::timeout(Duration::from_secs(2), third).await.expect("granted").expect("task");
        assert_eq!(a.shared.metrics.in_flight.get(), 2);
    }

    #[tokio::test]
    async fn queued_writes_do_not_starve_reads() {
        // One write token a minute: after the first write, writes queue for a long time.
        let a = Arc::new(Admission::new(
            Rate { per_minute: 600, burst: 5 },
            Rate { per_minute: 1, burst: 1 },
            4,
            GatewayMetrics::unregistered(),
        ));
        drop(a.admit(RequestClass::Write).await);
        let mut writers = Vec::new();
        for _ in 0..20 {
            let a = Arc::clone(&a);
            writers.push(tokio::spawn(async move { drop(a.admit(RequestClass::Write).await) }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        for _ in 0..5 {
            tokio::time::timeout(Duration::from_secs(2), a.admit(RequestClass::Read))
                .await
                .expect("reads pass while writes wait for their bucket");
        }
        assert_eq!(a.shared.metrics.queue_depth.with_label_values(&["write"]).get(), 20);
        for w in writers {
            w.abort();
        }
    }

    #[tokio::test]
    async fn fifo_within_a_class() {
        let a = Arc::new(Admission::new(unlimited(), unlimited(), 1, GatewayMetrics::unregistered()));
        let first = a.admit(RequestClass::Read).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (a, order) = (Arc::clone(&a), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let _s = a.admit(RequestClass::Read).await;
                order.lock().push(i);
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(first);
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
    }
}
