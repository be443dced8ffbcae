//! The embedded SurrealKV store and the threads it works on.
//!
//! SurrealDB runs a query on the task that awaits it, and SurrealKV runs its memtable flushes
//! and level compactions as tasks of the runtime the store was opened on, each without
//! yielding until it is done. vmauto's actors run on actix's single-threaded runtimes, so on
//! them every statement of the intake, the decisions and the scheduler, and every flush and
//! compaction (seconds on a large store), took turns on one thread while the machine's other
//! cores waited. The embedded store is therefore opened, queried and closed on a
//! multi-threaded runtime of its own, with a worker per core: the actors hand it their
//! statements and wait for the answers, and a compaction holds up one worker, not the
//! appliance.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use surrealdb::Surreal;
use surrealdb::engine::local::Db;
use surrealdb_core::kvs::Datastore;

/// The store's runtime: a worker per core, at least two (started on first use, kept for the
/// life of the process).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("vmauto-store")
            .enable_all()
            .build()
            .expect("the store's threads cannot start")
    })
}

/// Runs `work` on the store's runtime and answers what it does. Dropping the returned future
/// stops `work` at its next await, as dropping `work` itself would (a transaction cut short
/// commits nothing).
pub(super) async fn on_store<T: Send + 'static>(
    work: impl Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    match tokio_util::task::AbortOnDropHandle::new(runtime().spawn(work)).await {
        Ok(answer) => answer,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(anyhow::anyhow!("the store's task was cancelled: {e}")),
    }
}

/// Runs `sql` with `bindings` on the store's runtime.
pub(super) async fn query(
    db: &Surreal<Db>,
    sql: &str,
    bindings: serde_json::Value,
) -> anyhow::Result<surrealdb::IndexedResults> {
    let (db, sql) = (db.clone(), sql.to_string());
    on_store(async move { Ok(db.query(sql).bind(bindings).await?) }).await
}

/// The SDK's handle on the embedded store, and the datastore itself, to close it.
pub(super) type Embedded = (Surreal<Db>, Arc<Datastore>);

/// Opens the embedded store on the store's runtime (see the module's documentation).
pub(super) async fn open(url: &str, config: &crate::config::DatabaseConfig) -> anyhow::Result<Embedded> {
    let (url, config) = (url.to_string(), config.clone());
    on_store(async move { open_here(&url, &config).await }).await
}

/// Writes out and closes the embedded store, on the store's runtime.
pub(super) async fn close(datastore: &Arc<Datastore>) -> anyhow::Result<()> {
    let datastore = datastore.clone();
    on_store(async move { datastore.shutdown().await }).await
}

/// Opens the embedded SurrealKV store at `url` with a write buffer and block cache of the
/// configured sizes (left to itself the engine takes them from the host's memory: on a
/// 24 GB machine a 1 GiB memtable and a 10.5 GiB cache, which the process's memory then
/// grows into under a steady stream of writes). The same steps as the SDK's own opening.
async fn open_here(url: &str, config: &crate::config::DatabaseConfig) -> anyhow::Result<Embedded> {
    const MIB: u64 = 1024 * 1024;
    let engine = surrealdb_cnf::ConfigMap::empty()
        .with_key_value("surrealkv_max_memtable_size", (config.memtable_mib * MIB).to_string())
        .with_key_value("surrealkv_block_cache_capacity", (config.cache_mib * MIB).to_string());
    let build = || Datastore::builder().with_config(engine.clone()).without_maintenance_tasks().build_with_path(url);
    if left_a_log(url) {
        // SurrealKV 0.21 opens its log's writer before it replays the log; when a crash cut
        // the log's last record short, the replay repairs the log by writing a new file in
        // place of the old one, and the writer goes on appending to the replaced file, which
        // no later start reads: what this start acknowledged would be lost at the next crash.
        // So a store whose last stop was not clean is opened once to replay (and repair) its
        // log and closed, which writes everything out and removes the log, then opened for
        // use with a log of its own.
        let replayed = build().await?;
        replayed.shutdown().await.context("cannot write out the store after replaying its log")?;
        drop(replayed);
    }
    let datastore = build().await?;
    // The version key first: a maintenance task writing before it would make a new store
    // look like one from before versioned stores.
    datastore.check_version().await?;
    datastore.bootstrap().await?;
    datastore.start_maintenance_tasks();
    let db = Surreal::<Db>::unstable_from_datastore(datastore.clone(), None).await?;
    Ok((db, datastore))
}

/// Whether the SurrealKV store at `url` has a log with records in it: its last stop was not
/// clean (a clean stop writes everything out and removes the log).
fn left_a_log(url: &str) -> bool {
    let Some(path) = url.strip_prefix("surrealkv://") else { return false };
    let Ok(entries) = std::fs::read_dir(std::path::Path::new(path).join("wal")) else { return false };
    entries.flatten().any(|e| e.metadata().is_ok_and(|m| m.is_file() && m.len() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is handed to the store runs on its threads, whichever runtime hands it over
    /// (the actors' are single-threaded).
    #[tokio::test(flavor = "current_thread")]
    async fn work_runs_on_the_store_threads() {
        let thread = on_store(async { Ok(std::thread::current().name().map(str::to_string)) }).await.expect("ran");
        assert_eq!(thread.as_deref(), Some("vmauto-store"));
        assert_ne!(std::thread::current().name(), Some("vmauto-store"));
    }

    /// A task that does not yield (as a SurrealKV compaction does not) holds one worker; the
    /// others go on answering.
    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_worker_leaves_the_others_answering() {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let blocked = runtime().spawn(async move { released.recv_timeout(std::time::Duration::from_secs(60)).is_ok() });
        // Whichever worker took the blocking task, this one is answered by another.
        for _ in 0..4 {
            on_store(async { Ok(()) }).await.expect("answered while a worker is blocked");
        }
        release.send(()).expect("the blocked task waits");
        assert!(blocked.await.expect("finished"), "the blocked task was released, not timed out");
    }

    /// Dropping the answer's future stops the work it handed over.
    #[tokio::test(flavor = "current_thread")]
    async fn dropping_the_answer_stops_the_work() {
        let (held, dropped) = tokio::sync::oneshot::channel::<()>();
        let work = on_store(async move {
            let _held = held;
            std::future::pending::<anyhow::Result<()>>().await
        });
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), work).await;
        assert!(waited.is_err(), "the work never finishes by itself");
        // Dropped work lets go of what it held at once; kept, it would hold it for ever.
        let held = tokio::time::timeout(std::time::Duration::from_secs(10), dropped).await;
        assert!(held.is_ok_and(|r| r.is_err()), "the work was dropped, and what it held with it");
    }
}
