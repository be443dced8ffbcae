//! The store: one SurrealDB handle, ordered schema migrations, export and import.
//!
//! This is the only module that talks to SurrealDB. The engine is chosen by
//! `database.url`: the embedded SurrealKV file store (default), `mem://` (tests) or an
//! external server over `ws://`. [`models`] holds one file per table: its typed row and the
//! queries the rest of vmauto makes of it, as `Store` methods; no SurrealQL is written
//! outside `db/` (tests/architecture.rs checks it).

use std::path::Path;

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use surrealdb::Surreal;
use surrealdb::engine::any::Any;
use surrealdb::engine::local::Db;
use surrealdb::opt::auth::Root;

use crate::config::Config;

mod catalogue;
mod embedded;
pub use catalogue::Catalogued;
pub mod inbox;
pub mod lease;
pub mod link;
mod migrations;
pub use migrations::{MIGRATIONS, SCHEMA_VERSION};
pub mod models;
pub mod scp_budget;

/// Runs of a transaction that keeps meeting write conflicts, the first included.
pub const CONFLICT_ATTEMPTS: u32 = 10;

/// True for a query that is one explicit transaction: nothing before `BEGIN` or after `COMMIT`.
fn is_one_transaction(sql: &str) -> bool {
    let sql = sql.trim();
    // Most queries are not transactions: decide those without copying the text.
    if !sql.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("BEGIN")) {
        return false;
    }
    let upper = sql.to_ascii_uppercase();
    (upper.ends_with("COMMIT TRANSACTION;") || upper.ends_with("COMMIT;"))
        && upper.matches("BEGIN TRANSACTION").count() + upper.matches("BEGIN;").count() == 1
        && upper.matches("COMMIT").count() == 1
}

/// SurrealDB's "… This transaction can be retried" (read or write conflicts).
fn is_conflict(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("can be retried") || text.contains("Transaction conflict")
}

/// Exponential with full jitter: up to 2, 4, 8, … ms, at most 250 ms.
fn conflict_pause(attempt: u32) -> std::time::Duration {
    use rand::Rng;
    let cap = (1u64 << attempt.min(8)).min(250);
    std::time::Duration::from_micros(rand::thread_rng().gen_range(0..=cap * 1000))
}

/// Runs `f` again after a [`conflict_pause`] while it meets a conflict, [`CONFLICT_ATTEMPTS`] runs at most.
async fn again_on_conflict<T, F, Fut>(mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if attempt < CONFLICT_ATTEMPTS && is_conflict(&e) => {
                let pause = conflict_pause(attempt);
                tracing::debug!(attempt, pause_ms = pause.as_millis() as u64, "transaction conflict; running it again");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// The SurrealDB handle: an embedded engine of ours, or any other by its URL.
#[derive(Clone)]
enum Conn {
    /// With the datastore itself, to close it when the appliance stops.
    Embedded(Surreal<Db>, std::sync::Arc<surrealdb_core::kvs::Datastore>),
    Url(Surreal<Any>),
}

/// Runs `$body` with `$db` bound to the handle, whichever engine it is.
macro_rules! with_db {
    ($conn:expr, $db:ident => $body:expr) => {
        match $conn {
            Conn::Embedded($db, _) => $body,
            Conn::Url($db) => $body,
        }
    };
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Conn,
    /// The connection to a server; `None` for the embedded engines.
    link: Option<std::sync::Arc<link::Link>>,
    /// Set on the handle the lifecycle writes through when several nodes share the store:
    /// its writes check this node's work lease (see [`lease`]).
    fence: Option<std::sync::Arc<lease::Fence>>,
    /// Counts the writes through this process's handles that gave room in an AZ back or moved
    /// it (a VPS failed, deleted or resized, or one made by hand): placement's running sum of
    /// what it has placed is read again from the store when this has moved.
    room_moves: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Held by the pass that brings the VPS search index up to date (one at a time).
    vps_text: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The catalogue last read (see [`catalogue`]).
    catalogue: std::sync::Arc<catalogue::CatalogueCache>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens the store named by the configuration (creating the data directory for the
    /// embedded engine) without touching the schema.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let url = config.database_url();
        if let Some(parent) = url.strip_prefix("surrealkv://").and_then(|p| Path::new(p).parent()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the data directory {}", parent.display()))?;
        }
        let cannot_open = || format!("cannot open the store at {url} (database.url)");
        let db = if url.starts_with("surrealkv://") {
            let (db, datastore) = embedded::open(&url, &config.database).await.with_context(cannot_open)?;
            Conn::Embedded(db, datastore)
        } else if url.starts_with("wss://") {
            let tls = crate::tls::verified_client_config(&config.database.ca_file, "database.ca_file")
                .map_err(anyhow::Error::msg)?;
            let options = surrealdb::opt::Config::new().rustls(tls);
            Conn::Url(surrealdb::engine::any::connect((url.as_str(), options)).await.with_context(cannot_open)?)
        } else {
            Conn::Url(surrealdb::engine::any::connect(url.as_str()).await.with_context(cannot_open)?)
        };
        let link = match &db {
            Conn::Url(server) if url.starts_with("ws") => {
                if !config.database.username.is_empty() {
                    server
                        .signin(Root {
                            username: config.database.username.clone(),
                            password: config.database.password.expose().to_string(),
                        })
                        .await
                        .context("the SurrealDB server refused database.username / database.password")?;
                }
                let deadline = std::time::Duration::from_secs(config.database.timeout_secs.max(1));
                Some(link::Link::watch(server.clone(), &url, deadline))
            }
            _ => None,
        };
        // A server defines them on first use: two appliances starting at once may conflict.
        let (ns, name) = (config.database.namespace.as_str(), config.database.database.as_str());
        again_on_conflict(|| async { Ok(with_db!(&db, db => db.use_ns(ns).use_db(name).await)?) })
            .await
            .context("cannot select the namespace and database")?;
        Ok(Self {
            db,
            link,
            fence: None,
            room_moves: Default::default(),
            vps_text: Default::default(),
            catalogue: Default::default(),
        })
    }

    /// A new in-memory store with the schema up to date (unit tests).
    #[cfg(test)]
    pub(crate) async fn in_memory() -> Self {
        let mut config = crate::config::Config::default();
        config.database.url = "mem://".into();
        Self::open(&config).await.expect("an in-memory store opens")
    }

    /// The plan `EXPLAIN` gives for statement `index` of `sql`, as one text (unit tests).
    #[cfg(test)]
    pub(crate) async fn plan(&self, sql: &str, bindings: serde_json::Value, index: usize) -> String {
        let plan: Vec<serde_json::Value> = self.query_one(sql, bindings, index).await.expect("a plan");
        plan.iter().filter_map(serde_json::Value::as_str).collect()
    }

    /// Opens the store and brings its schema up to date.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let store = Self::connect(config).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// The schema version recorded in the store (0 for an empty store). One transaction, so
    /// two nodes starting at once and both defining the table are run again on a conflict.
    pub async fn schema_version(&self) -> anyhow::Result<u32> {
        let v: Vec<u32> = self
            .query_one(
                "BEGIN TRANSACTION;
                 DEFINE TABLE IF NOT EXISTS schema_version SCHEMALESS;
                 SELECT VALUE version FROM schema_version:current;
                 COMMIT TRANSACTION;",
                serde_json::json!({}),
                2,
            )
            .await?;
        Ok(v.first().copied().unwrap_or(0))
    }

    /// Applies every migration newer than the store's version, in order, each in its own
    /// transaction together with the version bump. Refuses a store newer than this binary.
    ///
    /// Several nodes may start on one server at once: a migration another node applied
    /// first (its transaction conflicts with ours, or its definitions exist by the time
    /// ours runs) is skipped once the recorded version shows it.
    pub async fn migrate(&self) -> anyhow::Result<u32> {
        let current = self.schema_version().await?;
        if current > SCHEMA_VERSION {
            bail!(
                "the store has schema version {current} but this vmauto only knows up to {SCHEMA_VERSION}; \
                 it was written by a newer vmauto. Install that version (or restore a backup made by this one)."
            );
        }
        for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
            let script = format!(
                "BEGIN TRANSACTION;\n{sql}\nUPSERT schema_version:current SET version = {version}, name = $name, applied_at = time::now();\nCOMMIT TRANSACTION;"
            );
            let mut attempt = 1;
            loop {
                let applied = self.run_unbounded(&script, serde_json::json!({ "name": name })).await;
                let Err(e) = applied else {
                    tracing::info!(version, name, "schema migration applied");
                    break;
                };
                if self.schema_version().await.is_ok_and(|v| v >= *version) {
                    tracing::info!(version, name, "schema migration applied by another node");
                    break;
                }
                if attempt >= CONFLICT_ATTEMPTS || !is_conflict(&e) {
                    return Err(e.context(format!("migration {version} ({name}) failed")));
                }
                tokio::time::sleep(conflict_pause(attempt)).await;
                attempt += 1;
            }
        }
        Ok(SCHEMA_VERSION)
    }

    /// Writes out and closes the embedded store (nothing for a server's): its next opening
    /// then has no log to replay. Every handle fails from here on; called last when the
    /// appliance stops.
    pub async fn close(&self) {
        if let Conn::Embedded(_, datastore) = &self.db
            && let Err(e) = embedded::close(datastore).await
        {
            tracing::warn!(error = %format!("{e:#}"), "the store did not close cleanly; it recovers from its log at the next start");
        }
    }

    /// True when the store answers.
    pub async fn is_healthy(&self) -> bool {
        match &self.link {
            Some(link) => with_db!(&self.db, db => link.call(db.health().into_future()).await.is_ok()),
            None => with_db!(&self.db, db => db.health().await.is_ok()),
        }
    }

    /// This handle, writing only while `fence` holds the work lease.
    pub fn fenced(&self, fence: std::sync::Arc<lease::Fence>) -> Self {
        Self { fence: Some(fence), ..self.clone() }
    }

    /// This handle without a fence: for writes any node may make (the inbox, an admin's or a
    /// payment's requests).
    pub fn unfenced(&self) -> Self {
        Self { fence: None, ..self.clone() }
    }

    /// The fence of this handle, if it has one.
    pub fn fence(&self) -> Option<&lease::Fence> {
        self.fence.as_deref()
    }

    /// True when work written through this handle may go ahead: always for an unfenced
    /// handle, while the lease is held for a fenced one.
    pub fn may_work(&self) -> bool {
        self.fence.as_ref().is_none_or(|f| f.holds())
    }

    /// How many writes through this process's handles moved room in an AZ so far (see
    /// [`Store::room_moved`]).
    pub fn room_moves(&self) -> u64 {
        self.room_moves.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Notes a write that gave room in an AZ back or moved it (called after the write, also
    /// when it failed: a write whose outcome is not known may have committed).
    pub fn room_moved(&self) {
        self.room_moves.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Held by the pass that brings the VPS search index up to date.
    pub(crate) fn vps_text_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.vps_text
    }

    /// The connection to a SurrealDB server (`None` for the embedded engines).
    pub fn link(&self) -> Option<&link::Link> {
        self.link.as_deref()
    }

    /// Runs a query with JSON bindings and returns statement `index` deserialized as `T`.
    pub async fn query_one<T: DeserializeOwned>(
        &self,
        sql: &str,
        bindings: serde_json::Value,
        index: usize,
    ) -> anyhow::Result<T> {
        let (mut response, offset) = self.run(sql, bindings).await?;
        let value: serde_json::Value =
            response.take::<Vec<serde_json::Value>>(index + offset).map(serde_json::Value::Array)?;
        Ok(serde_json::from_value(value)?)
    }

    /// [`Store::query_one`] for a statement that yields at most one row: that row, if any.
    pub async fn query_first<T: DeserializeOwned>(
        &self,
        sql: &str,
        bindings: serde_json::Value,
        index: usize,
    ) -> anyhow::Result<Option<T>> {
        Ok(self.query_one::<Vec<T>>(sql, bindings, index).await?.into_iter().next())
    }

    /// Runs statements for their effect; any statement error fails the call.
    pub async fn execute(&self, sql: &str, bindings: serde_json::Value) -> anyhow::Result<()> {
        self.run(sql, bindings).await.map(drop)
    }

    /// Runs a query; on failure reports the statement error that caused it (not the
    /// "transaction failed" echoes of the statements after it).
    ///
    /// A query that is one explicit transaction (`BEGIN TRANSACTION; … COMMIT TRANSACTION;`)
    /// and fails because a concurrent transaction wrote the same rows is run again, after a
    /// short random pause, up to [`CONFLICT_ATTEMPTS`] times: a conflicting transaction
    /// commits nothing, so running it again is as if it had started a little later.
    ///
    /// Through a fenced handle a query that writes first checks the work lease, in its
    /// transaction (a query that is not one is made one); the answer's second part is how many
    /// statements that added before the caller's.
    async fn run(&self, sql: &str, bindings: serde_json::Value) -> anyhow::Result<(surrealdb::IndexedResults, usize)> {
        match &self.fence {
            Some(fence) if lease::writes(sql) => {
                if !fence.holds() {
                    bail!("this node no longer holds the work lease; the node that holds it does this work");
                }
                let mut bindings = bindings;
                if let Some(map) = bindings.as_object_mut() {
                    map.insert("vmauto_fence".into(), fence.token().into());
                }
                let one = is_one_transaction(sql);
                let sql = sql.trim().trim_end_matches(';');
                // `BEGIN` has a place among the answers, as every statement.
                let (fenced, added) = match sql.find(';') {
                    Some(begin) if one => (format!("{};\n{}\n{};", &sql[..begin], lease::CHECK, &sql[begin + 1..]), 1),
                    _ if sql.to_ascii_uppercase().contains("BEGIN") => (format!("{}\n{sql};", lease::CHECK), 1),
                    _ => (format!("BEGIN TRANSACTION;\n{}\n{sql};\nCOMMIT TRANSACTION;", lease::CHECK), 2),
                };
                Ok((self.run_retrying(&fenced, bindings).await?, added))
            }
            _ => Ok((self.run_retrying(sql, bindings).await?, 0)),
        }
    }

    async fn run_retrying(&self, sql: &str, bindings: serde_json::Value) -> anyhow::Result<surrealdb::IndexedResults> {
        if !is_one_transaction(sql) {
            return self.run_once(sql, bindings).await;
        }
        again_on_conflict(|| self.run_once(sql, bindings.clone())).await
    }

    async fn run_once(&self, sql: &str, bindings: serde_json::Value) -> anyhow::Result<surrealdb::IndexedResults> {
        let response = match &self.db {
            Conn::Embedded(db, _) => embedded::query(db, sql, bindings).await?,
            Conn::Url(db) => {
                let query = db.query(sql).bind(bindings).into_future();
                match &self.link {
                    Some(link) => link.call(query).await?,
                    None => query.await?,
                }
            }
        };
        Self::statement_errors(response)
    }

    /// [`Store::run_once`] without the server's answer deadline: for migrations, which may
    /// rightly take long on a large store.
    async fn run_unbounded(&self, sql: &str, bindings: serde_json::Value) -> anyhow::Result<surrealdb::IndexedResults> {
        let response = match &self.db {
            Conn::Embedded(db, _) => embedded::query(db, sql, bindings).await?,
            Conn::Url(db) => db.query(sql).bind(bindings).await?,
        };
        Self::statement_errors(response)
    }

    /// The response, or the statement error that failed it.
    fn statement_errors(mut response: surrealdb::IndexedResults) -> anyhow::Result<surrealdb::IndexedResults> {
        let mut errors: Vec<(usize, surrealdb::Error)> = response.take_errors().into_iter().collect();
        if errors.is_empty() {
            return Ok(response);
        }
        errors.sort_by_key(|(i, _)| *i);
        let cause = errors.iter().find(|(_, e)| !e.to_string().contains("failed transaction")).unwrap_or(&errors[0]);
        if cause.1.to_string().contains("Memtable arena is full") {
            anyhow::bail!(
                "statement {} failed: one write was larger than the store's write buffer; raise database.memtable_mib ({})",
                cause.0,
                cause.1
            );
        }
        anyhow::bail!("statement {} failed: {}", cause.0, cause.1)
    }

    /// Creates a row in `table` stamped with `created_at = time::now()`; returns its id.
    pub async fn create(&self, table: &str, row: serde_json::Value) -> anyhow::Result<String> {
        let ids: Vec<serde_json::Value> = self
            .query_one(
                "CREATE type::table($table) CONTENT object::extend($row, { created_at: time::now() }) RETURN VALUE id",
                serde_json::json!({ "table": table, "row": row }),
                0,
            )
            .await?;
        let id = ids.into_iter().next().context("CREATE returned no id")?;
        Ok(id.as_str().map(str::to_owned).unwrap_or_else(|| id.to_string()))
    }

    /// Writes a SurrealQL dump of the whole database to `path`.
    pub async fn export(&self, path: &Path) -> anyhow::Result<()> {
        with_db!(&self.db, db => db.export(path).await).with_context(|| format!("export to {} failed", path.display()))
    }

    /// The same dump as [`Store::export`], as a stream of chunks. The dump is read in one
    /// transaction, so it is a consistent snapshot even while the appliance writes.
    pub async fn export_stream(&self) -> anyhow::Result<impl futures::Stream<Item = anyhow::Result<Vec<u8>>> + use<>> {
        use futures::StreamExt;
        let backup = with_db!(&self.db, db => db.export(()).await.context("the export could not start")?.boxed());
        Ok(backup.map(|chunk| chunk.map_err(anyhow::Error::from)))
    }

    /// Restores a dump made by [`Store::export`] into this empty store (opened with
    /// [`Store::connect`], not yet migrated), then brings the schema up to date.
    pub async fn import(&self, path: &Path) -> anyhow::Result<()> {
        let version = self.schema_version().await?;
        if version != 0 {
            bail!(
                "the target store is not empty (schema version {version}); import only into an empty store \
                 (a new data directory or database.url)"
            );
        }
        with_db!(&self.db, db => db.import(path).await)
            .with_context(|| format!("import from {} failed", path.display()))?;
        self.migrate().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_transaction_is_run_again() {
        assert!(is_one_transaction("BEGIN TRANSACTION;\n UPDATE a:1 SET n += 1;\n COMMIT TRANSACTION;"));
        assert!(!is_one_transaction("UPDATE a:1 SET n += 1;"));
        assert!(!is_one_transaction(
            "UPDATE b:1 SET n = 1; BEGIN TRANSACTION; UPDATE a:1 SET n += 1; COMMIT TRANSACTION;"
        ));
        assert!(!is_one_transaction(
            "BEGIN TRANSACTION; UPDATE a:1 SET n += 1; COMMIT TRANSACTION; BEGIN TRANSACTION; UPDATE a:2 SET n = 1; COMMIT TRANSACTION;"
        ));
        assert!(is_conflict(&anyhow::anyhow!(
            "statement 8 failed: Cannot COMMIT: Transaction conflict: Transaction write conflict. This transaction can be retried"
        )));
        assert!(!is_conflict(&anyhow::anyhow!("statement 1 failed: An error occurred: no such VPS")));
    }

    /// Concurrent transactions on one row conflict; each is run again until it commits, so
    /// every increment lands.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conflicting_transactions_are_run_again_until_they_commit() {
        let store = Store::in_memory().await;
        store.execute("UPSERT counter:one SET n = 0", serde_json::json!({})).await.unwrap();
        let tx = "BEGIN TRANSACTION;
                  LET $n = (SELECT VALUE n FROM ONLY counter:one);
                  UPDATE counter:one SET n = $n + 1;
                  COMMIT TRANSACTION;";
        let writers: Vec<_> = (0..12)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.execute(tx, serde_json::json!({})).await })
            })
            .collect();
        for w in writers {
            w.await.unwrap().expect("a conflicting transaction is run again, not failed");
        }
        let n: Vec<u64> =
            store.query_one("SELECT VALUE n FROM ONLY counter:one", serde_json::json!({}), 0).await.unwrap();
        assert_eq!(n, vec![12]);
    }

    /// With the smallest write buffer the embedded store flushes to files many times over;
    /// every row is read back, also after the store is opened again, and a size out of range
    /// is refused by name.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_write_buffer_flushes_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.database.url = format!("surrealkv://{}", dir.path().join("store").display());
        config.database.memtable_mib = 4;
        config.database.cache_mib = 1;
        let pad = "x".repeat(2000);
        let store = Store::open(&config).await.expect("store");
        store.execute("DEFINE TABLE IF NOT EXISTS filler SCHEMALESS", serde_json::json!({})).await.unwrap();
        for batch in 0..60 {
            let sql = "FOR $i IN $ids { CREATE type::record('filler', $i) SET pad = $pad; }";
            let ids: Vec<u64> = (batch * 100..batch * 100 + 100).collect();
            store.execute(sql, serde_json::json!({ "ids": ids, "pad": pad })).await.unwrap();
        }
        store.close().await;
        drop(store);
        let store = Store::open(&config).await.expect("the store opens again");
        let n: Vec<u64> = store
            .query_one("SELECT VALUE n FROM (SELECT count() AS n FROM filler GROUP ALL)", serde_json::json!({}), 0)
            .await
            .unwrap();
        assert_eq!(n, vec![6000], "12 MB of rows through a 4 MiB write buffer, all there");
        config.database.memtable_mib = 1;
        let refused = config.database.check(1024 * 1024).unwrap_err().to_string();
        assert!(refused.contains("database.memtable_mib"), "{refused}");
        config.database.memtable_mib = 4;
        let refused = config.database.check(3 * 1024 * 1024).unwrap_err().to_string();
        assert!(refused.contains("server.body_limit_bytes"), "a webhook must fit twice: {refused}");
        assert!(config.database.check(2 * 1024 * 1024).is_ok());
    }
}
