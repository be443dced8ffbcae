//! The connection to a SurrealDB server (`ws://`, `wss://`): whether it answers now.
//!
//! SurrealDB's WebSocket client reconnects by itself after the server goes away (once a
//! second, replaying the sign-in and the namespace), but until it has reconnected every
//! query waits for it, without a deadline. vmauto must not wait: a webhook that cannot be
//! stored is answered 429 at once (the sender retries), `/readyz` says the store is away, and
//! the actors' loops try again later. So, for a server:
//!
//! - a watch asks the server for its health every second (a second to answer); two misses
//!   in a row mark the link *away*, the first answer after that marks it back;
//! - while the link is away every store call fails at once with [`Unavailable`];
//! - every call has a deadline (`database.timeout_secs`); one that misses it fails with
//!   [`Unavailable`] and asks the watch to look now.
//!
//! A call that missed its deadline may still run on the server once the client reconnects
//! (the client keeps what it was given): vmauto's writes are idempotent or guarded for this
//! — an inbox row is keyed by its dedupe key, so a webhook answered 429 whose row lands
//! later is a duplicate when the sender retries, and is answered 200.
//!
//! The embedded engines have no link: their calls run without a deadline.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use surrealdb::Surreal;
use surrealdb::engine::any::Any;

/// How often the watch asks, and how long an answer may take.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Missed probes in a row that mark the link away.
const MISSES_AWAY: u32 = 2;

/// A store call that could not reach the server; the caller should try again later.
#[derive(Debug, thiserror::Error)]
#[error("the SurrealDB server at {url} does not answer ({why}); vmauto reconnects by itself - try again shortly")]
pub struct Unavailable {
    pub url: String,
    pub why: &'static str,
}

/// The state of the connection to a server, shared by every clone of the store.
#[derive(Debug)]
pub struct Link {
    url: String,
    deadline: Duration,
    away: AtomicBool,
    /// Times the link went away since start.
    losses: AtomicU64,
    /// Set by a call that missed its deadline: the watch probes at once.
    nudge: tokio::sync::Notify,
}

impl Link {
    /// A link to `url`, watched while the returned handle (or a clone of it) lives.
    pub fn watch(db: Surreal<Any>, url: &str, deadline: Duration) -> Arc<Self> {
        let link = Arc::new(Self {
            url: url.to_string(),
            deadline,
            away: AtomicBool::new(false),
            losses: AtomicU64::new(0),
            nudge: tokio::sync::Notify::new(),
        });
        tokio::spawn(watch(db, Arc::downgrade(&link)));
        link
    }

    /// False while the server is away.
    pub fn is_up(&self) -> bool {
        !self.away.load(Ordering::Acquire)
    }

    /// How many times the server went away since start.
    pub fn losses(&self) -> u64 {
        self.losses.load(Ordering::Relaxed)
    }

    /// Runs a store call within the deadline, or fails at once while the server is away. A
    /// call the connection failed under (the server went away while it ran) fails with
    /// [`Unavailable`] too: it may or may not have been applied.
    pub async fn call<T>(&self, f: impl Future<Output = Result<T, surrealdb::Error>>) -> anyhow::Result<T> {
        if !self.is_up() {
            return Err(self.unavailable("reconnecting").into());
        }
        match tokio::time::timeout(self.deadline, f).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if e.is_connection() => {
                self.nudge.notify_one();
                Err(anyhow::Error::new(self.unavailable("the connection broke")).context(e.to_string()))
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                self.nudge.notify_one();
                Err(self.unavailable("no answer within database.timeout_secs").into())
            }
        }
    }

    fn unavailable(&self, why: &'static str) -> Unavailable {
        Unavailable { url: self.url.clone(), why }
    }

    fn set(&self, up: bool) {
        let was_up = !self.away.swap(!up, Ordering::AcqRel);
        match (was_up, up) {
            (true, false) => {
                self.losses.fetch_add(1, Ordering::Relaxed);
                tracing::error!(url = %self.url, "the SurrealDB server does not answer: webhooks are answered 429 until it is back");
            }
            (false, true) => tracing::warn!(url = %self.url, "the SurrealDB server answers again"),
            _ => {}
        }
    }
}

/// Probes the server every second until the link is dropped.
async fn watch(db: Surreal<Any>, link: Weak<Link>) {
    let mut misses = 0u32;
    loop {
        let nudged = {
            let Some(l) = link.upgrade() else { return };
            let nudge = async move { l.nudge.notified().await };
            tokio::time::timeout(PROBE_EVERY, nudge).await.is_ok()
        };
        let answered = matches!(tokio::time::timeout(PROBE_EVERY, db.health()).await, Ok(Ok(())));
        let Some(l) = link.upgrade() else { return };
        if answered {
            misses = 0;
            l.set(true);
        } else {
            misses += 1;
            // A call that missed its deadline and a probe that missed as well: away now.
            if misses >= MISSES_AWAY || nudged {
                l.set(false);
            }
        }
    }
}

/// True for an error that means the server could not be reached (so the caller retries).
pub fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Unavailable>())
}
