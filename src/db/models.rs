//! One file per table: its typed row, the enums of its states and kinds, and the queries the
//! rest of vmauto makes of it, as methods on [`Store`](super::Store). Only `db/` writes
//! SurrealQL; handlers, actors and pages call these methods and get typed rows back.
//!
//! Record keys are plain strings chosen by vmauto (`type::record('vps', $key)`); every
//! SELECT projects `record::id(id) AS id` so rows come back with that key as `id`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Store;

/// Defines a record key type: a `String` that is stored, sent, rendered and printed as the bare
/// string (`#[serde(transparent)]`, `Debug` and `Display` of the string).
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        /// Shows the bare string, as a `String` does, so messages that print it do not change.
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.0, f)
            }
        }

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

pub mod activity;
pub mod admin_user;
pub mod api_token;
pub mod notification;
pub mod notify_attempt;
pub mod operation;
pub mod payment;
pub mod portal_link;
pub mod reveal_link;
pub mod session;
pub mod setting;
pub mod subscription;
pub mod template;
pub mod upgrade_link;
pub mod upgrade_offer;
pub mod vps;
pub mod webhook_event;

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
    #[derive(Deserialize)]
    struct Count {
        // An empty selection grouped ALL comes back as one row without the field.
        #[serde(default)]
        n: u64,
    }
    let rows: Vec<Count> = store.query_one(&count_query(table, clause), bindings, 0).await?;
    Ok(rows.first().map_or(0, |r| r.n))
}

/// The query [`count`] runs.
fn count_query(table: &str, clause: &str) -> String {
    format!("SELECT count() AS n FROM {table} {clause} GROUP ALL")
}

/// The query [`page_of`] runs for its rows (`$limit` of them from `$start`).
fn page_query(table: &str, fields: &str, clause: &str, order: &str) -> String {
    format!("SELECT {fields} FROM {table} {clause} ORDER BY {order} LIMIT $limit START $start")
}

/// The rows of `table` in each of `states` (states with none left out), each counted from
/// the table's `state` index alone. The state is written in the query, not bound: with a
/// literal the store counts the index's entries (`IndexCountScan`), bound as a parameter it
/// fetches every row of the state.
async fn count_by_state(store: &Store, table: &str, states: &[&str]) -> anyhow::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for state in states {
        let n: Vec<Value> = store.query_one(&state_count_query(table, state), json!({}), 0).await?;
        match n.first().and_then(|r| r["n"].as_u64()) {
            Some(n) if n > 0 => out.push((state.to_string(), n)),
            _ => {}
        }
    }
    Ok(out)
}

/// The query [`count_by_state`] runs for one state.
fn state_count_query(table: &str, state: &str) -> String {
    format!("SELECT count() AS n FROM {table} WHERE state = '{state}' GROUP ALL")
}

/// One page of `table`'s rows matching `clause`, `fields` selected, ordered by `order`.
async fn page_of<T: DeserializeOwned>(
    store: &Store,
    table: &str,
    fields: &str,
    clause: &str,
    mut bindings: Value,
    order: &str,
    page: u64,
) -> anyhow::Result<Page<T>> {
    let total = count(store, table, clause, bindings.clone()).await?;
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    bindings["start"] = json!((page - 1) * PAGE_SIZE);
    bindings["limit"] = json!(PAGE_SIZE);
    let rows: Vec<T> = store.query_one(&page_query(table, fields, clause, order), bindings, 0).await?;
    Ok(Page { rows, total, page, pages, capped: false })
}

/// Reads a field as `T`, or as `T::default()` when it holds anything else (or nothing, with
/// `#[serde(default)]`): for fields vmauto has always read leniently, as with
/// `value.as_str().unwrap_or_default()`, so a stray value is not an error.
fn lenient<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let value = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

/// Reads a field that holds `null` as `Some(None)`: with `#[serde(default)]` and
/// `skip_serializing_if = "Option::is_none"`, a `null` is written back as `null` and a missing
/// field stays missing.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::{Value, json};

    use crate::db::Store;

    /// The live-update stream's three reads, run every second for every open browser, each
    /// read a range of their index from `$since` and stop at their limit, whatever the table's
    /// size (`EXPLAIN` of a read that filters the whole index shows an empty `access`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn change_feeds_read_a_range_of_their_index() {
        let store = Store::in_memory().await;
        store
            .execute(
                // One transaction, run again on a conflict with the background index builds.
                "BEGIN TRANSACTION;
                 FOR $i IN 0..300 {
                     CREATE vps CONTENT { state: 'active', updated_at: time::now() - 2h };
                     CREATE operation CONTENT { vps: 'v', kind: 'create', state: 'done', updated_at: time::now() - 2h };
                     CREATE notification CONTENT { title: 'n', severity: 'info', created_at: time::now() - 2h };
                 };
                 COMMIT TRANSACTION;",
                json!({}),
            )
            .await
            .expect("seeded");
        let since = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        for (query, index, limit) in [
            (super::vps::VPS_CHANGES, "vps_updated", 500),
            (super::operation::OPERATION_CHANGES, "operation_updated", 500),
            (super::notification::NOTIFICATIONS_SINCE, "notification_time", 50),
        ] {
            let (bound, select) = query.split_once(';').expect("a LET, then the SELECT");
            let plan = store.plan(&format!("{bound}; EXPLAIN {select}"), json!({ "since": since }), 1).await;
            assert!(plan.contains(&format!("IndexScan [ctx: Db] [index: {index}, access: >d'")), "{plan}");
            assert!(plan.contains(&format!("limit: {limit}")), "the limit is not in the scan: {plan}");
            let rows: Vec<Value> = store.query_one(query, json!({ "since": since }), 1).await.expect("the read runs");
            assert!(rows.is_empty(), "only rows changed in the last hour: {rows:?}");
        }
    }

    /// The key figures (every metrics scrape and dashboard view) read the operations of their
    /// window from a range of `operation_created`, the day's finished ones from a range of
    /// `operation_finished`, and count operations and VPSs by state from the state indexes
    /// alone: their cost follows the window, not the history. And they count what they should.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn key_figures_read_their_window_not_the_history() {
        use super::operation::*;
        let store = Store::in_memory().await;
        store
            .execute(
                "BEGIN TRANSACTION;
                 FOR $i IN 0..300 {
                     CREATE operation CONTENT { vps: 'old', kind: 'create', state: 'succeeded', requested_by: 'admin:a',
                         created_at: time::now() - 60d, finished_at: time::now() - 60d };
                 };
                 CREATE operation CONTENT { vps: 'a', kind: 'create', state: 'succeeded', requested_by: 'webhook',
                     created_at: time::now() - 1h, next_attempt_at: time::now() - 1h, finished_at: time::now() - 1h + 30s };
                 CREATE operation CONTENT { vps: 'a', kind: 'delete', state: 'succeeded', requested_by: 'admin:root',
                     created_at: time::now() - 2d, next_attempt_at: time::now() - 2d, finished_at: time::now() - 2d + 5s };
                 CREATE operation CONTENT { vps: 'b', kind: 'resize', state: 'dead', requested_by: 'webhook',
                     created_at: time::now() - 3d, finished_at: time::now() - 3d };
                 CREATE operation CONTENT { vps: 'c', kind: 'create', state: 'queued', created_at: time::now() };
                 CREATE vps CONTENT { state: 'active' }; CREATE vps CONTENT { state: 'active' };
                 CREATE vps CONTENT { state: 'deleted' };
                 COMMIT TRANSACTION;",
                json!({}),
            )
            .await
            .expect("seeded");
        wait_until_built(&store, "operation", "operation_created").await;
        wait_until_built(&store, "operation", "operation_finished").await;
        let explain = |query: String| {
            let store = store.clone();
            async move { store.plan(&query, json!({ "window": "30d" }), 1).await }
        };
        let plan = explain(format!("{OPERATIONS_OF_WINDOW_FROM} EXPLAIN {OPERATIONS_OF_WINDOW}")).await;
        assert!(plan.contains("IndexScan [ctx: Db] [index: operation_created, access: >d'"), "{plan}");
        let plan = explain(format!("RETURN 0; EXPLAIN {OPERATIONS_FINISHED_LAST_DAY}")).await;
        assert!(plan.contains("IndexScan [ctx: Db] [index: operation_finished, access: >d'"), "{plan}");
        for table in ["operation", "vps"] {
            let plan = explain(format!("RETURN 0; EXPLAIN {}", super::state_count_query(table, "active"))).await;
            assert!(plan.contains("IndexCountScan"), "{plan}");
        }

        let f = store.operation_figures(30).await.expect("figures");
        assert_eq!((f.succeeded, f.dead, f.manual), (2, 1, 1));
        assert_eq!(f.provisioning_secs.len(), 1);
        assert!((f.provisioning_secs[0] - 30.0).abs() < 1.0, "{:?}", f.provisioning_secs);
        assert!((f.deprovisioning_secs[0] - 5.0).abs() < 1.0, "{:?}", f.deprovisioning_secs);
        let mut by_state = store.operations_by_state().await.expect("by state");
        by_state.sort();
        let expected = [("dead", 1), ("queued", 1), ("succeeded", 302)].map(|(s, n)| (s.to_string(), n));
        assert_eq!(by_state, expected);
        assert_eq!(store.operations_finished_last_day().await.expect("finished").len(), 1);
        let vps = store.vps_counts_by_state().await.expect("VPS counts");
        assert_eq!(vps, [("active", 2), ("deleted", 1)].map(|(s, n)| (s.to_string(), n)));
    }

    /// A page of the activity log filtered by level is a range of `activity_level_at`, newest
    /// first, stopped at the page; its count is an index count. And it lists what it should.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn activity_by_level_reads_a_page_of_an_index() {
        use super::activity::{ACTIVITY_FIELDS, ActivityQuery, activity_filter};
        let store = Store::in_memory().await;
        wait_until_built(&store, "activity", "activity_level_at").await;
        store
            .execute(
                "BEGIN TRANSACTION;
                 FOR $i IN 0..300 {
                     CREATE activity CONTENT { at: time::now() - 1h, level: 'info', actor: 'system', message: 'm', data: {} };
                 };
                 FOR $i IN 1..4 {
                     CREATE activity CONTENT { at: time::now() - <duration> string::concat(<string> $i, 'm'),
                         level: 'warning', actor: 'system', message: string::concat('w', <string> $i), data: {} };
                 };
                 COMMIT TRANSACTION;",
                json!({}),
            )
            .await
            .expect("seeded");
        let query = ActivityQuery { level: "warn".into(), ..ActivityQuery::default() };
        let (clause, bindings) = activity_filter(&query).expect("a known level");
        let explain = |sql: String| {
            let (store, mut bindings) = (store.clone(), bindings.clone());
            bindings["limit"] = json!(super::PAGE_SIZE);
            bindings["start"] = json!(0);
            async move { store.plan(&format!("EXPLAIN {sql}"), bindings, 0).await }
        };
        let plan = explain(super::count_query("activity", &clause)).await;
        assert!(plan.contains("IndexCountScan"), "{plan}");
        let plan = explain(super::page_query("activity", ACTIVITY_FIELDS, &clause, "at DESC")).await;
        assert!(
            plan.contains("IndexScan [ctx: Db] [index: activity_level_at, access: ['warning'], direction: Backward"),
            "{plan}"
        );
        assert!(plan.contains("limit: $limit"), "the page's limit is not in the scan: {plan}");

        let page = store.activity_page(&query).await.expect("page");
        assert_eq!(page.total, 3);
        let messages: Vec<&str> = page.rows.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(messages, ["w1", "w2", "w3"], "newest first");
    }

    /// Waits until `index`, built in the background (`CONCURRENTLY`), is ready: the planner
    /// uses it from then on.
    pub(super) async fn wait_until_built(store: &Store, table: &str, index: &str) {
        for _ in 0..200 {
            let info: Vec<Value> =
                store.query_one(&format!("INFO FOR INDEX {index} ON {table}"), json!({}), 0).await.expect("info");
            if info.first().is_some_and(|i| i["building"]["status"] == "ready") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("{index} was not built within 5 s");
    }
}
