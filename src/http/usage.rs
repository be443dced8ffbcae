//! Usage graphs of a VPS (CPU, memory, network in/out) over the last 24 hours or 7 days, from
//! SCP's metrics (`GET /metrics/{id}`, through the gateway), drawn as server-side SVG. The
//! customer's portal and the admin VPS page show the same graphs. Answers are kept a minute
//! per server and span, so a page reloaded in a loop costs SCP one read a minute.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::AppState;
use super::charts;
use crate::actors::gateway::{GetServerMetrics, ServerId, ServerMetrics, TimeGap, metric};
use crate::admin::Series;

/// How long an answer is reused.
const KEEP: Duration = Duration::from_secs(60);
/// Answers kept at most (servers × spans).
const MAX_KEPT: usize = 2048;

/// The spans a page can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Span {
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
}

impl Span {
    pub fn parse(s: Option<&str>) -> Self {
        if s == Some("7d") { Self::Week } else { Self::Day }
    }

    fn timegap(self) -> TimeGap {
        match self {
            Self::Day => TimeGap::Hours(24),
            Self::Week => TimeGap::Days(7),
        }
    }
}

/// Recent answers by (server, span).
#[derive(Debug, Default)]
pub struct UsageCache(parking_lot::Mutex<HashMap<(String, Span), (Instant, ServerMetrics)>>);

impl UsageCache {
    /// Forgets every answer (the next page reads SCP).
    pub fn clear(&self) {
        self.0.lock().clear();
    }
}

/// The graphs as HTML (SVG) fragments, and what to say when there are none.
#[derive(Debug, Serialize)]
pub struct UsageCharts {
    pub span: Span,
    pub cpu: String,
    pub memory: String,
    pub network: String,
    /// Set when SCP could not be read: what to tell the reader.
    pub unavailable: Option<String>,
}

fn series(m: &ServerMetrics, name: &str, label: &str, scale: f64) -> Series {
    let points = m
        .get(name)
        .map(|s| s.points.iter().map(|(t, v)| (t.format("%Y-%m-%d %H:%M:%S").to_string(), v * scale)).collect())
        .unwrap_or_default();
    Series { label: label.to_string(), points }
}

/// The usage of the VM of `vps` (`server_id`) over `span`; `customer`: for a customer's page
/// (the read waits in the customers' lane of the SCP budget).
pub async fn charts_for(
    state: &AppState,
    vps: &crate::lifecycle::VpsId,
    server_id: &str,
    span: Span,
    customer: bool,
) -> UsageCharts {
    let key = (server_id.to_string(), span);
    let kept = state.usage.0.lock().get(&key).filter(|(at, _)| at.elapsed() < KEEP).map(|(_, m)| m.clone());
    let metrics = match kept {
        Some(m) => Ok(m),
        None => {
            let names = [metric::CPU_UTIL, metric::MEMORY_UTIL, metric::NET_IN_BPS, metric::NET_OUT_BPS]
                .iter()
                .map(|n| n.to_string())
                .collect();
            let read = GetServerMetrics {
                server_id: ServerId::new(server_id),
                names,
                timegap: span.timegap(),
                granularity: None,
                customer,
            };
            let gateway = state.gateway_of(vps).await;
            match gateway {
                Err(e) => Err(format!("{e:#}")),
                Ok(gateway) => match gateway.send(read).await {
                    Ok(Ok(m)) => {
                        let mut cache = state.usage.0.lock();
                        if cache.len() >= MAX_KEPT {
                            cache.retain(|_, (at, _)| at.elapsed() < KEEP);
                        }
                        if cache.len() < MAX_KEPT {
                            cache.insert(key, (Instant::now(), m.clone()));
                        }
                        Ok(m)
                    }
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the gateway is not running".to_string()),
                },
            }
        }
    };
    let empty = "No data for this period yet.";
    match metrics {
        Ok(m) => UsageCharts {
            span,
            cpu: charts::lines(&[series(&m, metric::CPU_UTIL, "CPU", 1.0)], " %", empty),
            memory: charts::lines(&[series(&m, metric::MEMORY_UTIL, "Memory", 1.0)], " %", empty),
            network: charts::lines(
                &[series(&m, metric::NET_IN_BPS, "In", 1e-6), series(&m, metric::NET_OUT_BPS, "Out", 1e-6)],
                " Mbit/s",
                empty,
            ),
            unavailable: None,
        },
        Err(e) => {
            tracing::warn!(server = %server_id, error = %e, "usage could not be read from SCP");
            UsageCharts {
                span,
                cpu: String::new(),
                memory: String::new(),
                network: String::new(),
                unavailable: Some("Usage cannot be read right now. Try again in a few minutes.".to_string()),
            }
        }
    }
}
