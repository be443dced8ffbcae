//! What the admin UI and the JSON API do, in one place: both call these functions, and check
//! roles before they do. The pages' reads are `Store` methods (`db::models`); what is here
//! checks a request, queues durable operations (`Store::enqueue_operation`), records who
//! asked in the activity log and wakes the VPS's actor, and shapes the dashboard's series.

mod catalogue;
mod dashboard;
mod logs;
mod vps;

pub use crate::db::models::{PAGE_SIZE, Page, SEARCH_CAP};

pub use catalogue::*;
pub use dashboard::*;
pub use logs::*;
pub use vps::*;

/// A value computed from the store that pages may show a few seconds old when computing it
/// is slow (over 20 ms, i.e. a large table): a view older than `max_age` is then served while
/// a fresh one is computed in the background, so no page waits for the scan. While it is
/// cheap, every view computes it afresh.
pub struct Snapshot<T> {
    /// When it was computed, the value, and how long computing it took.
    value: parking_lot::Mutex<Option<(std::time::Instant, T, std::time::Duration)>>,
    refreshing: std::sync::atomic::AtomicBool,
    max_age: std::time::Duration,
}

impl<T: Clone + Send + 'static> Snapshot<T> {
    pub fn new(max_age: std::time::Duration) -> Self {
        Self { value: parking_lot::Mutex::new(None), refreshing: false.into(), max_age }
    }

    pub async fn get<F, Fut>(self: &std::sync::Arc<Self>, compute: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        use std::sync::atomic::Ordering;
        use std::time::{Duration, Instant};
        const CHEAP: Duration = Duration::from_millis(20);
        let current = self.value.lock().clone();
        match current {
            Some((at, v, took)) if took >= CHEAP => {
                if at.elapsed() > self.max_age && !self.refreshing.swap(true, Ordering::SeqCst) {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let t0 = Instant::now();
                        if let Ok(fresh) = compute().await {
                            *me.value.lock() = Some((Instant::now(), fresh, t0.elapsed()));
                        }
                        me.refreshing.store(false, Ordering::SeqCst);
                    });
                }
                Ok(v)
            }
            _ => {
                let t0 = Instant::now();
                let v = compute().await?;
                *self.value.lock() = Some((Instant::now(), v.clone(), t0.elapsed()));
                Ok(v)
            }
        }
    }
}
