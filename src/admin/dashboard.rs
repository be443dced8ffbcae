//! The dashboard's figures: VPS counts by state, webhook and operation series, failures and
//! held operations.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::db::Store;

/// VPS counts by state.
pub async fn counts_by_state(store: &Store) -> anyhow::Result<Vec<(String, u64)>> {
    let rows: Vec<Value> = store.query_one("SELECT state, count() AS n FROM vps GROUP BY state", json!({}), 0).await?;
    let mut out: Vec<(String, u64)> = rows
        .into_iter()
        .map(|r| (r["state"].as_str().unwrap_or("?").to_string(), r["n"].as_u64().unwrap_or(0)))
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.1));
    Ok(out)
}

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
    let rows: Vec<Value> = store
        .query_one(
            "SELECT <string>received_at AS at, status FROM webhook_event WHERE received_at > time::now() - 24h
             ORDER BY received_at LIMIT 100000",
            json!({}),
            0,
        )
        .await?;
    let buckets = hour_buckets(24);
    let kinds = ["processed", "parked", "failed", "other"];
    let mut counts = vec![vec![0.0; buckets.len()]; kinds.len()];
    for r in rows {
        let Some(t) = r["at"].as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok()) else { continue };
        let Some(b) = bucket_of(&buckets, t) else { continue };
        let status = r["status"].as_str().unwrap_or("other");
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
    let rows: Vec<Value> = store
        .query_one(
            "SELECT kind, state, <string>finished_at AS at,
                time::unix(finished_at) - time::unix(next_attempt_at OR created_at) AS secs
             FROM operation WHERE finished_at > time::now() - 24h LIMIT 100000",
            json!({}),
            0,
        )
        .await?;
    let buckets = hour_buckets(24);
    let mut sums = [vec![0.0; buckets.len()], vec![0.0; buckets.len()]];
    let mut ns = [vec![0.0; buckets.len()], vec![0.0; buckets.len()]];
    let mut failed = vec![0.0; buckets.len()];
    for r in rows {
        let Some(t) = r["at"].as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok()) else { continue };
        let Some(b) = bucket_of(&buckets, t) else { continue };
        if r["state"] == "dead" {
            failed[b] += 1.0;
            continue;
        }
        let i = match r["kind"].as_str() {
            Some("create") => 0,
            Some("delete") => 1,
            _ => continue,
        };
        if r["state"] == "succeeded" {
            sums[i][b] += r["secs"].as_f64().unwrap_or(0.0);
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

/// Recent dead operations (newest first).
pub async fn recent_failures(store: &Store, limit: u64) -> anyhow::Result<Vec<Value>> {
    store
        .query_one(
            "SELECT record::id(id) AS id, vps, kind, last_error, attempts, <string>updated_at AS at FROM operation
             WHERE state = 'dead' ORDER BY updated_at DESC LIMIT $limit",
            json!({ "limit": limit }),
            0,
        )
        .await
}

/// Operations the blast-radius guard holds for an admin.
pub async fn held_operations(store: &Store) -> anyhow::Result<Vec<Value>> {
    store
        .query_one(
            "SELECT record::id(id) AS id, vps, kind, requested_by, <string>created_at AS at,
                (SELECT VALUE customer_name FROM ONLY type::record('vps', $parent.vps)) AS customer
             FROM operation WHERE state = 'held' ORDER BY created_at LIMIT 500",
            json!({}),
            0,
        )
        .await
}
