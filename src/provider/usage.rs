//! What a customer's portal shows of a running VM besides its state: a remote console and
//! usage graphs. Provider-neutral, like [`super::types`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::NaiveDateTime;
use serde::Serialize;

/// A remote-console (noVNC) URL. It carries a short-lived token that opens the console to
/// whoever holds it, so it is a secret: `Debug` shows only its origin and path, and the
/// type is not `Serialize` — hand it on with [`ConsoleUrl::expose`] where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleUrl(String);

impl ConsoleUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The whole URL, token included; call only where it is handed to the one client that
    /// opens it, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its query and fragment (where the token travels), for logs.
    pub fn redacted(&self) -> String {
        let end = self.0.find(['?', '#']).unwrap_or(self.0.len());
        let hidden = if end < self.0.len() { "?…" } else { "" };
        format!("{}{hidden}", &self.0[..end])
    }
}

impl fmt::Debug for ConsoleUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConsoleUrl").field(&self.redacted()).finish()
    }
}

/// The server metrics SCP keeps (sangfor-scp-api.md §5.9); servers have no `disk.util`.
pub mod metric {
    pub const CPU_UTIL: &str = "cpu.util";
    pub const MEMORY_UTIL: &str = "memory.util";
    pub const IO_READ_IOPS: &str = "io.read.iops";
    pub const IO_WRITE_IOPS: &str = "io.write.iops";
    pub const IO_READ_SPEED: &str = "io.read.speed";
    pub const IO_WRITE_SPEED: &str = "io.write.speed";
    pub const NET_IN_BPS: &str = "net.in.bps";
    pub const NET_OUT_BPS: &str = "net.out.bps";
    pub const NET_IN_PPS: &str = "net.in.pps";
    pub const NET_OUT_PPS: &str = "net.out.pps";
    /// Every server metric.
    pub const SERVER: [&str; 10] = [
        CPU_UTIL,
        MEMORY_UTIL,
        IO_READ_IOPS,
        IO_WRITE_IOPS,
        IO_READ_SPEED,
        IO_WRITE_SPEED,
        NET_IN_BPS,
        NET_OUT_BPS,
        NET_IN_PPS,
        NET_OUT_PPS,
    ];
}

/// How far back a metrics query reaches, as SCP spells it: a count of seconds, hours or days
/// (`1800s`, `24h`, `7d`). SCP refuses minutes, so `30m` parses as `1800s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeGap {
    Seconds(u32),
    Hours(u32),
    Days(u32),
}

impl TimeGap {
    /// The span in seconds.
    pub fn secs(self) -> u64 {
        match self {
            Self::Seconds(n) => u64::from(n),
            Self::Hours(n) => u64::from(n) * 3_600,
            Self::Days(n) => u64::from(n) * 86_400,
        }
    }

    /// The finest granularity (seconds between points) SCP serves for this span.
    pub fn min_granularity(self) -> u32 {
        match self.secs() {
            s if s <= 3_600 => 60,
            s if s <= 86_400 => 300,
            s if s <= 30 * 86_400 => 1_800,
            _ => 43_200,
        }
    }
}

impl fmt::Display for TimeGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Seconds(n) => write!(f, "{n}s"),
            Self::Hours(n) => write!(f, "{n}h"),
            Self::Days(n) => write!(f, "{n}d"),
        }
    }
}

impl FromStr for TimeGap {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || format!("a time span is a positive count with a unit s, m, h or d (`24h`), not {s:?}");
        let unit = s.chars().last().ok_or_else(bad)?;
        let count: u32 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(bad());
        }
        match unit {
            's' => Ok(Self::Seconds(count)),
            'm' => count.checked_mul(60).map(Self::Seconds).ok_or_else(bad),
            'h' => Ok(Self::Hours(count)),
            'd' => Ok(Self::Days(count)),
            _ => Err(bad()),
        }
    }
}

/// One metric of one server over time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSeries {
    /// `%`, `bps`, `pps`, … as the platform names it.
    pub unit: String,
    /// Seconds between points as the platform used them (it may raise what was asked).
    pub granularity_secs: u32,
    /// `(platform local time, value)`, oldest first. SCP reports its own local time without
    /// an offset, so the times are naive; points the platform left empty are not here.
    pub points: Vec<(NaiveDateTime, f64)>,
}

impl MetricSeries {
    /// The newest value, if any.
    pub fn latest(&self) -> Option<f64> {
        self.points.last().map(|(_, v)| *v)
    }
}

/// Series by metric name (`cpu.util` → …).
pub type ServerMetrics = BTreeMap<String, MetricSeries>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_urls_hide_their_token() {
        let url = ConsoleUrl::new("https://scp.example/console/novnc/?server_id=s1&token=abc123");
        assert_eq!(url.redacted(), "https://scp.example/console/novnc/?…");
        let shown = format!("{url:?}");
        assert!(!shown.contains("abc123") && shown.contains("scp.example"), "{shown}");
        assert_eq!(ConsoleUrl::new("https://h/x").redacted(), "https://h/x");
    }

    #[test]
    fn time_gaps_parse_print_and_bound_granularity() {
        assert_eq!("24h".parse(), Ok(TimeGap::Hours(24)));
        assert_eq!("7d".parse(), Ok(TimeGap::Days(7)));
        assert_eq!("30m".parse(), Ok(TimeGap::Seconds(1_800)));
        for bad in ["", "24", "0h", "h", "-1d", "5w", "1.5h"] {
            assert!(bad.parse::<TimeGap>().is_err(), "{bad}");
        }
        assert_eq!(TimeGap::Seconds(1_800).to_string(), "1800s");
        let mins =
            [TimeGap::Hours(1), TimeGap::Hours(24), TimeGap::Days(7), TimeGap::Days(31)].map(TimeGap::min_granularity);
        assert_eq!(mins, [60, 300, 1_800, 43_200]);
    }
}
