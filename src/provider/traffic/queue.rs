//! Admission: token buckets per request class, a concurrency cap and a fair queue.
//!
//! SCP counts GETs and other methods separately (about 600 and 100 a minute), so each class
//! has its own bucket and its own FIFO. One dispatcher task hands out slots: it alternates
//! between the classes that have a token, so a burst of queued writes waiting for the slow
//! write bucket never holds back reads, and within a class requests go in arrival order.
//! Every wait is measured (`vmauto_scp_rate_limit_wait_seconds`) and the queue depth is a
//! gauge, so throttling shows up on a dashboard instead of as mysterious latency.
//!
//! Reads made for pages customers open ([`RequestClass::Customer`]) never touch what
//! operations use: their bucket is carved out of the read budget (the operations' read bucket
//! is the rest), they have one connection of their own, and at most [`CUSTOMER_QUEUE`] wait
//! for it; past that the caller is refused at once ([`Full`]) instead of queueing. The
//! operations' queues are bounded too (`max_queued` per class), so a runaway caller cannot
//! grow memory without limit: the refused call fails as a transient error and is retried.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// A GET made for a page a customer opened (upgrade or portal page).
    Customer,
}

/// How many customer reads may wait for their connection; the next is refused.
pub const CUSTOMER_QUEUE: usize = 8;

/// The queue of a class is full: the request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub class: RequestClass,
    pub queued: usize,
}

impl RequestClass {
    pub fn label(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Customer => "customer",
        }
    }

    /// The operations' queue this class waits in (customer reads have their own path).
    fn index(self) -> Option<usize> {
        match self {
            Self::Read => Some(0),
            Self::Write => Some(1),
            Self::Customer => None,
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
    /// Waiters per operations' queue beyond which a request is refused.
    max_queued: usize,
    customer: CustomerLane,
}

/// Customer reads: their own bucket, their own connection, a short bounded queue.
struct CustomerLane {
    bucket: Option<DefaultDirectRateLimiter>,
    slot: Arc<Semaphore>,
    waiting: AtomicUsize,
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

/// Admission limits: the buckets of the two operations' classes and of customer reads, the
/// connections operations share and how many of their requests may wait per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub read: Rate,
    pub write: Rate,
    pub customer: Rate,
    pub max_concurrency: usize,
    pub max_queued: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

const CLASSES: [RequestClass; 2] = [RequestClass::Read, RequestClass::Write];

impl Admission {
    /// `max_concurrency == 0` means one at a time; `max_queued == 0` means unbounded.
    pub fn new(limits: Limits, metrics: GatewayMetrics) -> Self {
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues { fifo: [VecDeque::new(), VecDeque::new()], next: 0 }),
            wake: Notify::new(),
            slots: Arc::new(Semaphore::new(limits.max_concurrency.max(1))),
            buckets: [bucket(limits.read), bucket(limits.write)],
            clock: DefaultClock::default(),
            metrics,
            started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            max_queued: if limits.max_queued == 0 { usize::MAX } else { limits.max_queued },
            customer: CustomerLane {
                bucket: bucket(limits.customer),
                slot: Arc::new(Semaphore::new(1)),
                waiting: AtomicUsize::new(0),
            },
        });
        Self { shared }
    }

    /// Waits for a token of `class` and a concurrency slot, in FIFO order within the class.
    /// Refuses at once when the class's queue is full.
    pub async fn admit(&self, class: RequestClass) -> Result<Slot, Full> {
        let Some(index) = class.index() else {
            return self.admit_customer().await;
        };
        self.ensure_dispatcher();
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.shared.queues.lock();
            let queued = q.fifo[index].len();
            if queued >= self.shared.max_queued {
                return Err(Full { class, queued });
            }
            q.fifo[index].push_back(Waiter { tx, since: Instant::now() });
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
        Ok(Slot { _permit: permit, metrics: self.shared.metrics.clone() })
    }

    /// A customer read: its own connection and bucket, after at most [`CUSTOMER_QUEUE`] others.
    async fn admit_customer(&self) -> Result<Slot, Full> {
        let lane = &self.shared.customer;
        let label = RequestClass::Customer.label();
        let queued = lane.waiting.fetch_add(1, Ordering::AcqRel);
        let waiting = CustomerWaiting(&self.shared);
        self.shared.metrics.queue_depth.with_label_values(&[label]).inc();
        if queued >= CUSTOMER_QUEUE {
            return Err(Full { class: RequestClass::Customer, queued });
        }
        let since = Instant::now();
        let permit = Arc::clone(&lane.slot).acquire_owned().await.expect("semaphore never closed");
        if let Some(b) = &lane.bucket {
            while let Err(not_until) = b.check() {
                tokio::time::sleep(not_until.wait_time_from(self.shared.clock.now())).await;
            }
        }
        drop(waiting);
        self.shared.metrics.rate_limit_wait.with_label_values(&[label]).observe(since.elapsed().as_secs_f64());
        self.shared.metrics.in_flight.inc();
        Ok(Slot { _permit: permit, metrics: self.shared.metrics.clone() })
    }

    fn ensure_dispatcher(&self) {
        if !self.shared.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(dispatch(Arc::clone(&self.shared)));
        }
    }
}

/// One customer read counted as waiting (also when its caller gives up) until dropped.
struct CustomerWaiting<'a>(&'a Shared);

impl Drop for CustomerWaiting<'_> {
    fn drop(&mut self) {
        self.0.customer.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.queue_depth.with_label_values(&[RequestClass::Customer.label()]).dec();
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

    fn limits(read: Rate, write: Rate, max_concurrency: usize) -> Limits {
        Limits { read, write, customer: unlimited(), max_concurrency, max_queued: 0 }
    }

    #[tokio::test]
    async fn caps_concurrency() {
        let a = Arc::new(Admission::new(limits(unlimited(), unlimited(), 2), GatewayMetrics::unregistered()));
        let s1 = a.admit(RequestClass::Read).await.expect("queued");
        let _s2 = a.admit(RequestClass::Write).await.expect("queued");
        let a2 = Arc::clone(&a);
        let third = tokio::spawn(async move { a2.admit(RequestClass::Read).await.expect("queued") });
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
            limits(Rate { per_minute: 600, burst: 5 }, Rate { per_minute: 1, burst: 1 }, 4),
            GatewayMetrics::unregistered(),
        ));
        drop(a.admit(RequestClass::Write).await.expect("queued"));
        let mut writers = Vec::new();
        for _ in 0..20 {
            let a = Arc::clone(&a);
            writers.push(tokio::spawn(async move { drop(a.admit(RequestClass::Write).await.expect("queued")) }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        for _ in 0..5 {
            tokio::time::timeout(Duration::from_secs(2), a.admit(RequestClass::Read))
                .await
                .expect("reads pass while writes wait for their bucket")
                .expect("queued");
        }
        assert_eq!(a.shared.metrics.queue_depth.with_label_values(&["write"]).get(), 20);
        for w in writers {
            w.abort();
        }
    }

    #[tokio::test]
    async fn fifo_within_a_class() {
        let a = Arc::new(Admission::new(limits(unlimited(), unlimited(), 1), GatewayMetrics::unregistered()));
        let first = a.admit(RequestClass::Read).await.expect("queued");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (a, order) = (Arc::clone(&a), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let _s = a.admit(RequestClass::Read).await.expect("queued");
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

    #[tokio::test]
    async fn customer_reads_never_take_an_operations_slot() {
        let a = Arc::new(Admission::new(limits(unlimited(), unlimited(), 1), GatewayMetrics::unregistered()));
        // A customer read on the wire: operations still get their one connection at once.
        let customer = a.admit(RequestClass::Customer).await.expect("queued");
        let op = tokio::time::timeout(Duration::from_secs(2), a.admit(RequestClass::Read)).await;
        assert!(op.is_ok(), "an operation's read waits for nobody's customer read");
        // And the other way round: operations holding every slot do not block a customer read.
        drop(customer);
        let again = tokio::time::timeout(Duration::from_secs(2), a.admit(RequestClass::Customer)).await;
        assert!(again.expect("customer read admitted").is_ok());
    }

    #[tokio::test]
    async fn customer_reads_queue_briefly_then_are_refused() {
        let a = Arc::new(Admission::new(limits(unlimited(), unlimited(), 4), GatewayMetrics::unregistered()));
        let on_the_wire = a.admit(RequestClass::Customer).await.expect("queued");
        let mut waiting = Vec::new();
        for _ in 0..CUSTOMER_QUEUE {
            let a = Arc::clone(&a);
            waiting.push(tokio::spawn(async move { a.admit(RequestClass::Customer).await.map(drop) }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = a.admit(RequestClass::Customer).await.map(drop);
        assert_eq!(refused, Err(Full { class: RequestClass::Customer, queued: CUSTOMER_QUEUE }));
        assert_eq!(a.shared.metrics.queue_depth.with_label_values(&["customer"]).get(), CUSTOMER_QUEUE as i64);
        drop(on_the_wire);
        for w in waiting {
            assert!(w.await.expect("task").is_ok(), "the queued customer reads are served in turn");
        }
        assert_eq!(a.shared.metrics.queue_depth.with_label_values(&["customer"]).get(), 0);
    }

    #[tokio::test]
    async fn customer_bucket_is_its_own() {
        // The operations' read bucket is empty after one request; customer reads have theirs.
        let l = Limits {
            read: Rate { per_minute: 1, burst: 1 },
            write: unlimited(),
            customer: Rate { per_minute: 60, burst: 3 },
            max_concurrency: 4,
            max_queued: 0,
        };
        let a = Arc::new(Admission::new(l, GatewayMetrics::unregistered()));
        drop(a.admit(RequestClass::Read).await.expect("queued"));
        for _ in 0..3 {
            let c = tokio::time::timeout(Duration::from_secs(2), a.admit(RequestClass::Customer)).await;
            drop(c.expect("customer reads do not wait for the operations' bucket").expect("queued"));
        }
    }

    #[tokio::test]
    async fn operation_queues_are_bounded() {
        let l = Limits { max_queued: 3, ..limits(unlimited(), unlimited(), 1) };
        let a = Arc::new(Admission::new(l, GatewayMetrics::unregistered()));
        let held = a.admit(RequestClass::Write).await.expect("queued");
        let mut waiting = Vec::new();
        for _ in 0..3 {
            let a = Arc::clone(&a);
            waiting.push(tokio::spawn(async move { a.admit(RequestClass::Write).await.map(drop) }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(a.admit(RequestClass::Write).await.map(drop), Err(Full { class: RequestClass::Write, queued: 3 }));
        // The read queue is a different queue.
        let a2 = Arc::clone(&a);
        let read = tokio::spawn(async move { a2.admit(RequestClass::Read).await.map(drop) });
        drop(held);
        for w in waiting {
            assert!(w.await.expect("task").is_ok());
        }
        assert!(read.await.expect("task").is_ok());
    }
}
