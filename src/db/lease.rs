//! The work lease: which node of several on one SurrealDB server runs the lifecycle.
//!
//! Every node accepts webhooks and serves the UI and the API; one node at a time — the one
//! holding the `lease:work` row — applies webhooks, runs VPS operations (and so talks to SCP
//! for them), the scheduler and the reconciler. The row names its holder (the node id and the
//! process's start), when it expires (server time) and a fencing counter that grows each time
//! the lease changes hands.
//!
//! A node that holds the lease writes through a *fenced* store ([`Store::fenced`]): every
//! query that writes first checks, in the same transaction, that the row still carries this
//! node's counter, and fails otherwise. A node that stalls past its lease (a long pause, a
//! network split) and comes back therefore cannot overwrite what the new holder did, and it
//! stops working on its own once its local view of the lease runs out (a third of the lease
//! before it expires on the server). Embedded stores have no lease: the one process works.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::Store;

/// The one lease there is.
const ROW: &str = "lease:work";

/// This process's claim on the work lease.
#[derive(Debug)]
pub struct Fence {
    node: String,
    /// `node/start`: a restarted node is a new holder (its old self may not be gone yet).
    holder: String,
    token: AtomicU64,
    /// Until when this process may work, by its own clock.
    until: Mutex<Option<Instant>>,
}

impl Fence {
    pub fn new(node: &str) -> Self {
        let start = format!("{:016x}", rand::random::<u64>());
        Self {
            node: node.to_string(),
            holder: format!("{node}/{start}"),
            token: AtomicU64::new(0),
            until: Mutex::new(None),
        }
    }

    /// The node id (`cluster.node_id`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// True while this process holds the lease, by its own clock.
    pub fn holds(&self) -> bool {
        self.until.lock().map(|u| u.is_some_and(|t| Instant::now() < t)).unwrap_or(false)
    }

    /// The fencing counter of the lease this process holds (0 when it never held it).
    pub fn token(&self) -> u64 {
        self.token.load(Ordering::Acquire)
    }

    fn set(&self, token: Option<u64>, valid: Duration, asked_at: Instant) {
        if let Some(t) = token {
            self.token.store(t, Ordering::Release);
        }
        if let Ok(mut until) = self.until.lock() {
            *until = token.map(|_| asked_at + valid);
        }
    }
}

/// Who holds the work lease, as the store says.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LeaseRow {
    pub node: String,
    pub holder: String,
    pub fence: u64,
    /// Seconds until it expires (negative: expired).
    pub expires_in: f64,
}

impl Store {
    /// Takes the work lease for `ttl` if it is free or expired, or renews it if this process
    /// holds it; updates `fence` either way. True when this process holds it now.
    pub async fn take_lease(&self, fence: &Fence, ttl: Duration) -> anyhow::Result<bool> {
        let asked_at = Instant::now();
        let rows: Vec<LeaseRow> = self
            .query_one(
                "BEGIN TRANSACTION;
                 LET $l = (SELECT * FROM ONLY type::record($row));
                 IF $l = NONE OR $l.expires_at < time::now() OR $l.holder = $holder {
                     UPSERT type::record($row) SET node = $node, holder = $holder,
                         expires_at = time::now() + <duration> $ttl,
                         fence = IF $l != NONE AND $l.holder = $holder THEN $l.fence ELSE ($l.fence ?? 0) + 1 END,
                         taken_at = IF $l != NONE AND $l.holder = $holder THEN $l.taken_at ELSE time::now() END;
                 };
                 SELECT node, holder, fence, time::unix(expires_at) - time::unix(time::now()) AS expires_in
                     FROM ONLY type::record($row);
                 COMMIT TRANSACTION;",
                json!({
                    "row": ROW, "node": fence.node, "holder": fence.holder,
                    "ttl": format!("{}ms", ttl.as_millis()),
                }),
                3,
            )
            .await?;
        let row = rows.into_iter().next();
        let mine = row.as_ref().filter(|r| r.holder == fence.holder).map(|r| r.fence);
        // Work stops a third of the lease before the server would give it to another node.
        fence.set(mine, ttl * 2 / 3, asked_at);
        Ok(mine.is_some())
    }

    /// Gives the lease up (a clean stop), so another node takes it without waiting for it to
    /// expire.
    pub async fn release_lease(&self, fence: &Fence) -> anyhow::Result<()> {
        fence.set(None, Duration::ZERO, Instant::now());
        self.execute(
            "UPDATE type::record($row) SET expires_at = time::now() WHERE holder = $holder",
            json!({ "row": ROW, "holder": fence.holder }),
        )
        .await
    }

    /// Who holds the work lease (none before any node took it).
    pub async fn lease_holder(&self) -> anyhow::Result<Option<LeaseRow>> {
        self.query_first(
            "SELECT node, holder, fence, time::unix(expires_at) - time::unix(time::now()) AS expires_in FROM ONLY type::record($row)",
            json!({ "row": ROW }),
            0,
        )
        .await
    }
}

/// True for SurrealQL that writes (the statements a fenced store checks the lease before).
pub(super) fn writes(sql: &str) -> bool {
    sql.split(|c: char| !c.is_ascii_alphabetic())
        .any(|w| ["CREATE", "UPDATE", "UPSERT", "DELETE", "INSERT", "RELATE"].iter().any(|k| w.eq_ignore_ascii_case(k)))
}

/// The statement a fenced write starts with.
pub(super) const CHECK: &str = "IF (SELECT VALUE fence FROM ONLY lease:work) != $vmauto_fence { THROW \"this node no longer holds the work lease\" };";

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> Store {
        Store::in_memory().await
    }

    #[test]
    fn writes_are_told_from_reads() {
        assert!(writes("UPDATE vps:a SET x = 1"));
        assert!(writes("select * from a; delete b"));
        assert!(!writes("SELECT * FROM vps WHERE updated_at > $t"));
        assert!(!writes("SELECT VALUE state FROM operation"));
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_a_new_counter_for_each() {
        let store = store().await;
        let (a, b) = (Fence::new("a"), Fence::new("b"));
        let ttl = Duration::from_millis(600);
        assert!(store.take_lease(&a, ttl).await.unwrap());
        assert!(a.holds());
        let first = a.token();
        assert!(!store.take_lease(&b, ttl).await.unwrap(), "held by a");
        assert!(!b.holds());
        assert!(store.take_lease(&a, ttl).await.unwrap(), "a renews");
        assert_eq!(a.token(), first, "a renewal keeps the counter");
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!a.holds(), "a's own view ran out");
        assert!(store.take_lease(&b, ttl).await.unwrap(), "expired: b takes it");
        assert_eq!(b.token(), first + 1);
        assert!(!store.take_lease(&a, ttl).await.unwrap(), "a cannot take it back");
        assert_eq!(store.lease_holder().await.unwrap().unwrap().node, "b");
        store.release_lease(&b).await.unwrap();
        assert!(store.take_lease(&a, ttl).await.unwrap(), "released: a takes it at once");
    }

    #[tokio::test]
    async fn a_fenced_write_fails_once_another_node_took_the_lease() {
        let store = store().await;
        let (a, b) = (std::sync::Arc::new(Fence::new("a")), Fence::new("b"));
        let ttl = Duration::from_millis(300);
        assert!(store.take_lease(&a, ttl).await.unwrap());
        let fenced = store.fenced(a.clone());
        fenced.execute("CREATE t:1 SET n = 1", json!({})).await.expect("a holds the lease");
        let n: Vec<u64> = fenced.query_one("UPDATE t:1 SET n = 2 RETURN VALUE n", json!({}), 0).await.unwrap();
        assert_eq!(n, vec![2], "statement indexes are the caller's");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(store.take_lease(&b, ttl).await.unwrap());
        // a's clock says it no longer holds it: refused before the store is asked.
        let err = fenced.execute("UPDATE t:1 SET n = 3", json!({})).await.unwrap_err();
        assert!(format!("{err:#}").contains("work lease"), "{err:#}");
        // Even a node whose clock is late is refused by the store.
        a.set(Some(a.token()), Duration::from_secs(60), Instant::now());
        let err = fenced.execute("UPDATE t:1 SET n = 3", json!({})).await.unwrap_err();
        assert!(format!("{err:#}").contains("work lease"), "{err:#}");
        let tx = "BEGIN TRANSACTION; UPDATE t:1 SET n = 4; COMMIT TRANSACTION;";
        assert!(fenced.execute(tx, json!({})).await.is_err());
        let n: Vec<u64> = store.query_one("SELECT VALUE n FROM t:1", json!({}), 0).await.unwrap();
        assert_eq!(n, vec![2]);
        // Reads are not fenced.
        assert!(fenced.query_one::<Vec<u64>>("SELECT VALUE n FROM t:1", json!({}), 0).await.is_ok());
    }
}
