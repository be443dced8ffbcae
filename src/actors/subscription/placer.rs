//! The subscription actor's placement: asks each candidate's gateway for its health and the
//! AZ's capacity (kept [`KEEP`] per AZ, so a burst of orders costs SCP one read per AZ every
//! [`KEEP`]), subtracts what vmauto has placed there that SCP does not count yet, and lets
//! [`crate::lifecycle::placement::place`] choose. Decisions run one at a time, and each writes
//! its new VPS before the next is placed: a burst cannot oversubscribe an AZ.
//!
//! What vmauto has placed is summed by the store once per capacity answer, then kept as a
//! running sum: each decision's new VPS is added to it once written ([`Placer::placed`]). It
//! is summed again when a write gave room back or moved it ([`Store::room_moves`]: a VPS
//! failed, went, was resized or made by hand) and always when several nodes share the store
//! (another node's writes are not seen here). Without the running sum, each order of a
//! burst read every VPS placed since the last capacity answer — a burst of n orders read
//! n²/2 rows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use crate::actors::gateway::{Gateways, GetCapacity, GetGatewayStatus};
use crate::config::Candidate;
use crate::db::Store;
use crate::db::models::vps::Reserved;
use crate::lifecycle::Spec;
use crate::lifecycle::choices::Wanted;
use crate::lifecycle::placement::{Known, Placed, Room, place};
use crate::provider::Capacity;
use crate::provider::traffic::BreakerState;

/// How long an AZ's capacity answer is used.
pub const KEEP: Duration = Duration::from_secs(15);
/// How long a decision waits for a capacity answer; then the candidate counts as one that
/// cannot be asked (the SCP's read budget may be taken by operations).
pub const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// A capacity answer, with when it was read (by the clock of this process and the wall's).
#[derive(Clone)]
struct Answer {
    at: Instant,
    read_at: DateTime<Utc>,
    cap: Capacity,
    /// What vmauto placed in the AZ that the answer does not count, and the store's
    /// [`Store::room_moves`] when it was summed.
    reserved: Option<(u64, Reserved)>,
}

/// Capacity answers by (provider, AZ), with when they were read.
#[derive(Clone, Default)]
pub struct Placer {
    read: Arc<Mutex<HashMap<(String, String), Answer>>>,
}

impl Placer {
    /// Where `spec` goes among `wanted`'s candidates.
    pub async fn place(
        &self,
        store: &Store,
        gateways: &Gateways,
        wanted: &Wanted,
        spec: Spec,
    ) -> anyhow::Result<Placed> {
        let mut known = Vec::with_capacity(wanted.candidates.len());
        for c in &wanted.candidates {
            known.push(self.room(store, gateways, c).await?);
        }
        Ok(place(wanted.policy, spec, &known))
    }

    /// The room of one candidate, or why it cannot be asked; `Err` only for the store.
    async fn room(&self, store: &Store, gateways: &Gateways, c: &Candidate) -> anyhow::Result<Known> {
        let Some(gw) = gateways.get(&c.provider) else {
            return Ok(Err(format!("provider {} is not configured", c.provider)));
        };
        let key = (c.provider.clone(), c.az.clone());
        let kept = self.read.lock().get(&key).filter(|a| a.at.elapsed() < KEEP).cloned();
        let (read_at, cap, summed) = match kept {
            Some(a) => (a.read_at, a.cap, a.reserved),
            None => {
                let Ok(status) = gw.send(GetGatewayStatus).await else {
                    return Ok(Err(format!("the gateway of provider {} is not running", c.provider)));
                };
                if !status.configured {
                    return Ok(Err(status
                        .problem
                        .unwrap_or_else(|| format!("provider {} is not configured", c.provider))));
                }
                if status.breaker != BreakerState::Closed {
                    return Ok(Err(format!(
                        "provider {} is failing (circuit breaker {:?})",
                        c.provider, status.breaker
                    )));
                }
                let read_at = Utc::now();
                let ask = tokio::time::timeout(ASK_TIMEOUT, gw.send(GetCapacity { zone_id: Some(c.az.clone()) }));
                match ask.await {
                    Ok(Ok(Ok(cap))) => {
                        let answer = Answer { at: Instant::now(), read_at, cap: cap.clone(), reserved: None };
                        self.read.lock().insert(key.clone(), answer);
                        (read_at, cap, None)
                    }
                    Ok(Ok(Err(e))) => return Ok(Err(format!("provider {} AZ {}: {e}", c.provider, c.az))),
                    Ok(Err(_)) => return Ok(Err(format!("the gateway of provider {} is not running", c.provider))),
                    Err(_) => return Ok(Err(format!("provider {} did not answer within {ASK_TIMEOUT:?}", c.provider))),
                }
            }
        };
        let moves = store.room_moves();
        let reserved = match summed {
            Some((at, sum)) if at == moves && store.fence().is_none() => sum,
            _ => {
                let sum = store.reserved_in(&c.provider, &c.az, read_at).await?;
                if let Some(a) = self.read.lock().get_mut(&key).filter(|a| a.read_at == read_at) {
                    a.reserved = Some((moves, sum));
                }
                sum
            }
        };
        let free =
            |item: &Option<crate::provider::CapacityItem>, taken: u64| item.as_ref().map(|i| i.free() - taken as f64);
        Ok(Ok(Room {
            cores: free(&cap.cpu, reserved.cores),
            memory_mb: free(&cap.memory, reserved.memory_mb),
            disk_mb: free(&cap.storage, reserved.disk_gb * 1024),
        }))
    }

    /// A VPS of `spec` placed at `c` was written: it is added to the AZ's running sum.
    pub fn placed(&self, c: &Candidate, spec: Spec) {
        if let Some((_, sum)) =
            self.read.lock().get_mut(&(c.provider.clone(), c.az.clone())).and_then(|a| a.reserved.as_mut())
        {
            sum.cores += u64::from(spec.cores);
            sum.memory_mb += spec.memory_mb;
            sum.disk_gb += spec.disk_gb;
            sum.vms += 1;
        }
    }
}
