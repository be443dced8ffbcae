//! `GET /metrics/{object_id}` (sangfor-scp-api.md §5.9) for servers.
//!
//! Series are made up, deterministically: each server gets a profile from a hash of its id
//! (CPU and memory levels, traffic volume, a daily wave's phase), each point adds noise drawn
//! from the same hash and its timestamp, and the server's power history decides whether there
//! is any load at all — a stopped or suspended VM reads 0, a freshly started one shows a boot
//! spike. The same question asked twice gets the same answer.
//!
//! The window is `[stop_time − timegap, stop_time]` in buckets of `granularity` seconds,
//! aligned to the granularity; a point is the state at the end of its bucket (at `stop_time`
//! for the bucket still running), and there are none from before the server existed.
//! Timestamps are platform local time, which for the simulator is UTC, so `stop_time` needs
//! no shifting.
//!
//! Validation follows the doc: `object_type` must be `server` (`vm` → 400, other real types
//! are not simulated → 400); `timegap` needs a unit `s`, `h` or `d` (a bare number → 404,
//! `30m` → 400); `granularity` is bare seconds and is raised to the minimum for the timegap
//! (≤1 h: 60, ≤1 d: 300, ≤30 d: 1800, longer: 43200) — the answer's `granularity` says what
//! was used; an unknown metric name (servers have no `disk.util`) → 400.

use std::f64::consts::TAU;

use serde_json::{Map, Value, json};

use super::input::Ctx;
use super::reply::{ApiError, ApiResult, Outcome, codes};
use super::service::Sim;
use super::world::{Millis, Server, scp_time};

/// Server metrics and their units.
pub const SERVER_METRICS: [(&str, &str); 10] = [
    ("cpu.util", "%"),
    ("memory.util", "%"),
    ("io.read.iops", "iops"),
    ("io.write.iops", "iops"),
    ("io.read.speed", "B/s"),
    ("io.write.speed", "B/s"),
    ("net.in.bps", "bps"),
    ("net.out.bps", "bps"),
    ("net.in.pps", "pps"),
    ("net.out.pps", "pps"),
];

/// Object types SCP has metrics for that the simulator does not make up.
const OTHER_TYPES: [&str; 5] = ["host", "az", "eip", "oss", "storage"];
/// The longest window answered.
const MAX_TIMEGAP_SECS: i64 = 366 * 86_400;
/// How long after powering on a guest shows its boot load.
const BOOT_MS: Millis = 120_000;

/// `GET /metrics/{object_id}?object_type=server&metric_names=…&timegap=…[&granularity=…][&stop_time=…]`.
pub fn query(sim: &mut Sim, ctx: &Ctx<'_>, id: &str) -> ApiResult {
    let q = &ctx.query;
    match q.get("object_type") {
        Some("server") => {}
        None => return Err(ApiError::bad_request("missing query parameter object_type")),
        Some("vm") => return Err(ApiError::bad_request("object_type vm is not valid; use server")),
        Some(t) if OTHER_TYPES.contains(&t) => {
            return Err(ApiError::bad_request(format!("the simulator has no {t} metrics, only server")));
        }
        Some(t) => return Err(ApiError::bad_request(format!("unknown object_type {t:?}"))),
    }
    let gap = timegap(q.get("timegap"))?;
    let least = min_granularity(gap);
    let granularity = match q.get("granularity") {
        None => least,
        Some(g) => g
            .trim()
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("granularity must be a number of seconds, got {g:?}")))?
            .max(least),
    };
    let names: Vec<(&str, &str)> = q
        .get("metric_names")
        .ok_or_else(|| ApiError::bad_request("missing query parameter metric_names"))?
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            SERVER_METRICS
                .iter()
                .find(|(m, _)| *m == n)
                .copied()
                .ok_or_else(|| ApiError::bad_request(format!("metric {n:?} is not available for servers")))
        })
        .collect::<Result<_, _>>()?;
    if names.is_empty() {
        return Err(ApiError::bad_request("metric_names names no metric"));
    }
    let stop = match q.get("stop_time") {
        None => ctx.now,
        Some(t) => chrono::NaiveDateTime::parse_from_str(t.trim(), "%Y-%m-%d %H:%M:%S")
            .map_err(|_| ApiError::bad_request(format!("stop_time must be YYYY-MM-DD HH:MM:SS, got {t:?}")))?
            .and_utc()
            .timestamp_millis()
            .min(ctx.now),
    };
    sim.advance(ctx.now);
    let server = sim.world.server(id).ok_or_else(|| ApiError::not_found("server", id))?;
    let samples = sample_times(stop, gap * 1000, granularity * 1000, server.created_ms);
    let profile = Profile::of(&server.id);
    let mut data = Map::new();
    for (name, unit) in names {
        let points: Vec<Value> = samples
            .iter()
            .map(|&(at, sample)| json!([scp_time(at), format!("{:.2}", profile.value(server, name, sample))]))
            .collect();
        data.insert(name.into(), json!({"unit": unit, "granularity": granularity, "datapoints": points}));
    }
    Ok(Outcome::Data(Value::Object(data)))
}

/// `timegap` in seconds: digits and a unit `s`, `h` or `d`.
fn timegap(raw: Option<&str>) -> Result<i64, ApiError> {
    let raw = raw.map(str::trim).ok_or_else(|| ApiError::bad_request("missing query parameter timegap"))?;
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        // What SCP does with a bare number (§5.9).
        return Err(ApiError::new(404, codes::NOT_FOUND, format!("timegap {raw:?} has no unit (s, h or d)")));
    }
    let bad = || ApiError::bad_request(format!("timegap must be a number with a unit s, h or d, got {raw:?}"));
    let unit = raw.chars().last().ok_or_else(bad)?;
    let count: i64 = raw[..raw.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let secs = match unit {
        's' => count,
        'h' => count.saturating_mul(3_600),
        'd' => count.saturating_mul(86_400),
        _ => return Err(bad()),
    };
    if !(1..=MAX_TIMEGAP_SECS).contains(&secs) {
        return Err(ApiError::bad_request(format!("timegap must be between 1s and 366d, got {raw:?}")));
    }
    Ok(secs)
}

/// The finest granularity SCP serves for a window of `gap` seconds.
pub fn min_granularity(gap: i64) -> i64 {
    if gap <= 3_600 {
        60
    } else if gap <= 86_400 {
        300
    } else if gap <= 30 * 86_400 {
        1_800
    } else {
        43_200
    }
}

/// `(timestamp, sample instant)` of each point, oldest first: buckets of `step` aligned to
/// it, back from the one holding `stop` while they start after `stop - gap`, none sampled
/// before `created`.
fn sample_times(stop: Millis, gap: Millis, step: Millis, created: Millis) -> Vec<(Millis, Millis)> {
    let last = stop - stop.rem_euclid(step);
    let mut out: Vec<(Millis, Millis)> = std::iter::successors(Some(last), |t| Some(t - step))
        .take_while(|t| *t > stop - gap)
        .map(|t| (t, (t + step).min(stop)))
        .filter(|(_, sample)| *sample >= created)
        .collect();
    out.reverse();
    out
}

/// SplitMix64: a well-mixed 64-bit hash step.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A number in `[0, 1)` from a hash.
fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

/// A server's made-up character, fixed by its id.
struct Profile {
    seed: u64,
    cpu: f64,
    cpu_swing: f64,
    memory: f64,
    traffic_bps: f64,
    out_share: f64,
    iops: f64,
    phase: f64,
}

impl Profile {
    fn of(id: &str) -> Self {
        // FNV-1a of the id.
        let seed = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        let u = |salt: u64| unit(seed ^ mix(salt));
        Self {
            seed,
            cpu: 8.0 + 20.0 * u(1),
            cpu_swing: 4.0 + 12.0 * u(2),
            memory: 35.0 + 30.0 * u(3),
            traffic_bps: 50_000.0 + 2_000_000.0 * u(4),
            out_share: 0.3 + 0.9 * u(5),
            iops: 5.0 + 80.0 * u(6),
            phase: TAU * u(7),
        }
    }

    /// Noise in `[0, 1)` for a metric at an instant (whole seconds, so a repeated question
    /// gets the same answer).
    fn noise(&self, at: Millis, salt: u64) -> f64 {
        unit(self.seed ^ mix(at.div_euclid(1000).unsigned_abs() ^ mix(salt)))
    }

    /// `metric` of `server` at instant `at`.
    fn value(&self, server: &Server, metric: &str, at: Millis) -> f64 {
        let Some(on_since) = server.on_since(at) else { return 0.0 };
        let booting = at - on_since < BOOT_MS;
        let secs = at as f64 / 1000.0;
        let daily = (TAU * secs / 86_400.0 + self.phase).sin();
        let hourly = (TAU * secs / 5_400.0 + 2.0 * self.phase).sin();
        let n = |salt| self.noise(at, salt);
        let traffic = self.traffic_bps * (1.0 + 0.6 * daily + 0.2 * hourly) * (0.6 + 0.8 * n(10));
        let burst = if n(11) > 0.97 { 4.0 } else { 1.0 };
        let iops = self.iops * (1.0 + 0.4 * daily) * (0.5 + n(20)) * if booting { 5.0 } else { 1.0 };
        match metric {
            "cpu.util" if booting => 55.0 + 35.0 * n(1),
            "cpu.util" => (self.cpu + self.cpu_swing * daily + 3.0 * hourly + 6.0 * (n(1) - 0.5)).clamp(0.5, 100.0),
            "memory.util" => {
                let ramp = if booting { (at - on_since) as f64 / BOOT_MS as f64 } else { 1.0 };
                ((self.memory + 4.0 * daily) * (0.3 + 0.7 * ramp) + 2.0 * (n(2) - 0.5)).clamp(1.0, 99.0)
            }
            "net.in.bps" => traffic * burst,
            "net.out.bps" => traffic * burst * self.out_share * (0.8 + 0.4 * n(12)),
            // Average packets of 900 bytes in and 400 out.
            "net.in.pps" => traffic * burst / 8.0 / 900.0,
            "net.out.pps" => traffic * burst * self.out_share / 8.0 / 400.0,
            "io.read.iops" => iops,
            "io.write.iops" => iops * 0.6,
            "io.read.speed" => iops * 16_384.0,
            "io.write.speed" => iops * 0.6 * 8_192.0,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timegaps_and_granularity() {
        assert_eq!(timegap(Some("24h")).ok(), Some(86_400));
        assert_eq!(timegap(Some("1800s")).ok(), Some(1_800));
        assert_eq!(timegap(Some("7d")).ok(), Some(604_800));
        assert_eq!(timegap(Some("3600")).unwrap_err().status, 404);
        for bad in ["30m", "h", "0h", "-1h", "400d", "1.5h", "12é"] {
            assert_eq!(timegap(Some(bad)).unwrap_err().status, 400, "{bad}");
        }
        assert_eq!(timegap(None).unwrap_err().status, 400);
        let mins: Vec<i64> = [1_800, 3_600, 3_601, 86_400, 604_800, 2_592_000, 2_592_001].map(min_granularity).into();
        assert_eq!(mins, vec![60, 60, 300, 300, 1_800, 1_800, 43_200]);
    }

    #[test]
    fn buckets_are_aligned_and_start_with_the_server() {
        // stop at 10:07:30, one hour by five minutes: 12 buckets, the last one still running.
        let stop = 36_450_000;
        let s = sample_times(stop, 3_600_000, 300_000, 0);
        assert_eq!(s.len(), 12);
        assert_eq!(s.last(), Some(&(36_300_000, stop)));
        assert_eq!(s[0], (33_000_000, 33_300_000));
        let young = sample_times(stop, 3_600_000, 300_000, 36_000_000);
        assert_eq!(young.first().map(|p| p.0), Some(35_700_000));
    }
}
