//! What the admin UI and the JSON API read and do, in one place: both call these functions,
//! and check roles before they do.
//!
//! Reads are shaped for pages (JSON rows with the fields a page shows); actions queue durable
//! operations (`Store::enqueue_operation`), record who asked in the activity log and wake the
//! VPS's actor.

use serde::Serialize;
use serde_json::{Value, json};

use crate::db::Store;

mod catalogue;
mod dashboard;
mod logs;
mod vps;

pub use catalogue::*;
pub use dashboard::*;
pub use logs::*;
pub use vps::*;

/// Rows per page of every list.
pub const PAGE_SIZE: u64 = 50;

/// One page of a list, with how many rows and pages there are in all.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub total: u64,
    pub page: u64,
    pub pages: u64,
    /// A search matched more than [`SEARCH_CAP`] rows; `total` is the cap.
    #[serde(default)]
    pub capped: bool,
}

/// A VPS search pages through at most this many matches (ordering every match of a search
/// as broad as "customer" would read the whole table).
pub const SEARCH_CAP: u64 = 1000;

/// Rows of `table` matching `clause` (a `WHERE …` or nothing).
async fn count(store: &Store, table: &str, clause: &str, bindings: Value) -> anyhow::Result<u64> {
    let rows: Vec<Value> =
        store.query_one(&format!("SELECT count() AS n FROM {table} {clause} GROUP ALL"), bindings, 0).await?;
    Ok(rows.first().and_then(|r| r["n"].as_u64()).unwrap_or(0))
}

/// One page of `table`'s rows matching `clause`, `fields` selected, ordered by `order`.
async fn page_of(
    store: &Store,
    table: &str,
    fields: &str,
    clause: &str,
    mut bindings: Value,
    order: &str,
    page: u64,
) -> anyhow::Result<Page<Value>> {
    let total = count(store, table, clause, bindings.clone()).await?;
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    bindings["start"] = json!((page - 1) * PAGE_SIZE);
    bindings["limit"] = json!(PAGE_SIZE);
    let rows: Vec<Value> = store
        .query_one(
            &format!("SELECT {fields} FROM {table} {clause} ORDER BY {order} LIMIT $limit START $start"),
            bindings,
            0,
        )
        .await?;
    Ok(Page { rows, total, page, pages, capped: false })
}

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
