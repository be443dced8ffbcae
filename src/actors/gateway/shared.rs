//! The SCP budget the nodes of a cluster share, kept in the store (see
//! `db::scp_budget`): every request a gateway sends, on any node, takes a token from it.

use std::sync::Arc;
use std::time::Duration;

use crate::config::SangforConfig;
use crate::db::Store;
use crate::provider::traffic::{RequestClass, SharedBudget};

/// One provider's budget in the store: reads (customers' included) and writes.
pub struct StoreBudget {
    store: Store,
    read_key: String,
    write_key: String,
    reads: u32,
    writes: u32,
}

impl StoreBudget {
    /// The budget of provider `name` (`sp`'s limits), in `store`.
    pub fn shared(store: Store, name: &str, sp: &SangforConfig) -> Arc<dyn SharedBudget> {
        Arc::new(Self {
            store,
            read_key: format!("{name}/read"),
            write_key: format!("{name}/write"),
            reads: sp.get_per_minute,
            writes: sp.write_per_minute,
        })
    }
}

impl SharedBudget for StoreBudget {
    fn take(&self, class: RequestClass) -> futures::future::BoxFuture<'_, Result<Option<Duration>, String>> {
        let (key, per_minute) = match class {
            RequestClass::Write => (&self.write_key, self.writes),
            RequestClass::Read | RequestClass::Customer => (&self.read_key, self.reads),
        };
        // The same bursts as each node's own buckets: a tenth of the minute's budget.
        let burst = (per_minute / 10).max(1);
        Box::pin(async move { self.store.take_scp_budget(key, per_minute, burst).await.map_err(|e| format!("{e:#}")) })
    }
}
