//! The dashboard's figures: VPS counts by state, webhook and operation series, failures and
//! held operations.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::db::Store;
use crate::lifecycle::{OpKind, OpState};

/// Buckets of an hourly series over the last `hours`.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub label: String,
    /// Hour start (RFC 3339) and value.
    pub points: Vec<(String, f64)>,
}

fn hour_buckets(hours: i64) -> Vec<DateTime<Utc>> {
    let now = Utc::now();
    let top = now - Duration::seconds(i64::from(now.timestamp() as i32 % 3600));
    (0..hours).rev().map(|h| top - Duration::hours(h)).collect()
}

fn bucket_of(buckets: &[DateTime<Utc>], t: DateTime<Utc>) -> Option<usize> {
    buckets.iter().rposition(|b| *b <= t)
}

/// Webhooks per hour by outcome over the last 24 hours.
pub async fn webhook_volume(store: &Store) -> anyhow::Result<Vec<Series>> {
    let rows = store.webhooks_last_day().await?;
    let buckets = hour_buckets(24);
    let kinds = ["processed", "parked", "failed", "other"];
    let mut counts = vec![vec![0.0; buckets.len()]; kinds.len()];
    for r in rows {
        let Some(b) = bucket_of(&buckets, r.at) else { continue };
        let status = r.status.as_deref().unwrap_or("other");
        let k = kinds.iter().position(|k| *k == status).unwrap_or(kinds.len() - 1);
        counts[k][b] += 1.0;
    }
    Ok(kinds
        .iter()
        .zip(counts)
        .map(|(k, c)| Series {
            label: (*k).to_string(),
            points: buckets.iter().map(|b| b.to_rfc3339()).zip(c).collect(),
        })
        .collect())
}

/// Mean provisioning and deprovisioning seconds per hour, and failed operations per hour,
/// over the last 24 hours.
pub async fn operation_series(store: &Store) -> anyhow::Result<Vec<Series>> {
    let rows = store.operations_finished_last_day().await?;
    let buckets = hour_buckets(24);
    let mut sums = [vec![0.0; buckets.len()], vec![0.0; buckets.len()]];
    let mut ns = [vec![0.0; buckets.len()], vec![0.0; buckets.len()]];
    let mut failed = vec![0.0; buckets.len()];
    for r in rows {
        let Some(b) = bucket_of(&buckets, r.at) else { continue };
        if r.state == OpState::Dead {
            failed[b] += 1.0;
            continue;
        }
        let i = match r.kind {
            OpKind::Create => 0,
            OpKind::Delete => 1,
            _ => continue,
        };
        if r.state == OpState::Succeeded {
            sums[i][b] += r.secs.unwrap_or(0.0);
            ns[i][b] += 1.0;
        }
    }
    let mean = |i: usize| -> Vec<f64> {
        sums[i].iter().zip(&ns[i]).map(|(s, n)| if *n > 0.0 { s / n } else { 0.0 }).collect()
    };
    let labels = |v: Vec<f64>| buckets.iter().map(|b| b.to_rfc3339()).zip(v).collect();
    Ok(vec![
        Series { label: "provisioning (s)".into(), points: labels(mean(0)) },
        Series { label: "deprovisioning (s)".into(), points: labels(mean(1)) },
        Series { label: "failed operations".into(), points: labels(failed) },
    ])
}

/// Where this node stands among the nodes sharing the store (`cluster.node_id` set).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterStatus {
    /// This node's id.
    pub node: String,
    /// Whether this node holds the work lease now.
    pub holds_lease: bool,
    /// The lease as the store has it: holder node, fencing counter, seconds left (negative:
    /// expired; the next node to ask takes it).
    pub lease_node: Option<String>,
    pub lease_counter: Option<u64>,
    pub lease_expires_in_secs: Option<f64>,
    pub lease_secs: u64,
}

/// The cluster's state as this node sees it; `None` for a single node.
pub async fn cluster_status(
    store: &crate::db::Store,
    config: &crate::config::Config,
    holds_lease: bool,
) -> anyhow::Result<Option<ClusterStatus>> {
    if config.cluster.node_id.is_empty() {
        return Ok(None);
    }
    let lease = store.lease_holder().await?;
    Ok(Some(ClusterStatus {
        node: config.cluster.node_id.clone(),
        holds_lease,
        lease_node: lease.as_ref().map(|l| l.node.clone()),
        lease_counter: lease.as_ref().map(|l| l.fence),
        lease_expires_in_secs: lease.as_ref().map(|l| l.expires_in),
        lease_secs: config.cluster.lease_secs,
    }))
}
