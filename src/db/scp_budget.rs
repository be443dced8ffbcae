//! The SCP budget several nodes share (`cluster.node_id` set): one GCRA per provider and
//! request class, its state a row in the store, the server's clock its clock — the same
//! algorithm SCP-like limiters use, so the nodes together send no faster than one node may.

use std::time::Duration;

use serde_json::json;

use super::Store;

impl Store {
    /// Takes one request from the budget `key` allows (`per_minute`, at most `burst` at once):
    /// `None` when taken, or how long until one is free.
    pub async fn take_scp_budget(&self, key: &str, per_minute: u32, burst: u32) -> anyhow::Result<Option<Duration>> {
        if per_minute == 0 {
            return Ok(None);
        }
        let interval = 60_000.0 / f64::from(per_minute);
        let window = interval * f64::from(burst.max(1));
        let wait: Vec<f64> = self
            .unfenced()
            .query_one(
                "BEGIN TRANSACTION;
                 LET $now = time::nano(time::now()) / 1000000.0;
                 LET $tat = math::max([(SELECT VALUE tat FROM ONLY type::record('scp_budget', $key)) ?? 0, $now]);
                 LET $next = $tat + $interval;
                 IF $next - $now <= $window { UPSERT type::record('scp_budget', $key) SET tat = $next; };
                 RETURN IF $next - $now <= $window THEN 0.0 ELSE $next - $now - $window END;
                 COMMIT TRANSACTION;",
                json!({ "key": key, "interval": interval, "window": window }),
                5,
            )
            .await?;
        Ok(wait.first().copied().filter(|w| *w > 0.0).map(|w| Duration::from_secs_f64(w / 1000.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_then_one_per_interval() {
        let store = Store::in_memory().await;
        // 60 a minute (one a second), two at once.
        assert_eq!(store.take_scp_budget("p/write", 60, 2).await.unwrap(), None);
        assert_eq!(store.take_scp_budget("p/write", 60, 2).await.unwrap(), None);
        let wait = store.take_scp_budget("p/write", 60, 2).await.unwrap().expect("spent");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        // Another class, another budget; no limit, no wait.
        assert_eq!(store.take_scp_budget("p/read", 60, 2).await.unwrap(), None);
        assert_eq!(store.take_scp_budget("p/x", 0, 0).await.unwrap(), None);
    }
}
