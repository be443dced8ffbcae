//! What an anonymous sender can make vmauto store: a refused webhook (bad signature, bad body,
//! too large) is recorded in the inbox so an admin can see why a sender is refused, but only
//! a capped prefix of its body, and only within a per-minute budget per source and per client
//! address. Refusals past the budget are counted (`vmauto_webhook_refusals_unrecorded_total`)
//! and answered the same way, but cost no store write. The budget is kept in memory: its
//! tables hold at most the configured sources and [`MAX_CLIENTS`] addresses per minute.

use std::collections::HashMap;
use std::net::IpAddr;

use parking_lot::Mutex;

/// Addresses tracked in one minute; a minute with more distinct senders than this records
/// refusals only from the addresses it already tracks.
pub const MAX_CLIENTS: usize = 4096;

/// A per-minute budget per name (a source, a customer link) and per client address: the
/// budget of recorded refusals, and of requests to a customer link.
#[derive(Debug)]
pub struct RefusalBudget {
    per_source: u32,
    per_client: u32,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    minute: i64,
    sources: HashMap<String, u32>,
    clients: HashMap<IpAddr, u32>,
}

impl RefusalBudget {
    pub fn new(per_source: u32, per_client: u32) -> Self {
        Self { per_source, per_client, window: Mutex::new(Window::default()) }
    }

    /// Whether a refusal from `client` to `source` may be recorded now (and counts it if so).
    pub fn allow(&self, source: &str, client: Option<IpAddr>) -> bool {
        self.allow_at(source, client, chrono::Utc::now().timestamp() / 60)
    }

    fn allow_at(&self, source: &str, client: Option<IpAddr>, minute: i64) -> bool {
        let mut w = self.window.lock();
        if w.minute != minute {
            *w = Window { minute, ..Window::default() };
        }
        let from_source = w.sources.get(source).copied().unwrap_or(0);
        if from_source >= self.per_source {
            return false;
        }
        if let Some(ip) = client {
            let tracked = w.clients.len();
            let from_client = match w.clients.get(&ip) {
                Some(n) => *n,
                None if tracked >= MAX_CLIENTS => return false,
                None => 0,
            };
            if from_client >= self.per_client {
                return false;
            }
            w.clients.insert(ip, from_client + 1);
        }
        *w.sources.entry(source.to_string()).or_insert(0) += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_hold_per_client_and_per_source_and_renew_each_minute() {
        let b = RefusalBudget::new(5, 2);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let c: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(b.allow_at("ghl", Some(a), 1));
        assert!(b.allow_at("ghl", Some(a), 1));
        assert!(!b.allow_at("ghl", Some(a), 1), "a client's third refusal in a minute is not recorded");
        assert!(b.allow_at("ghl", Some(c), 1));
        assert!(b.allow_at("ghl", Some(c), 1));
        assert!(b.allow_at("ghl", None, 1));
        assert!(!b.allow_at("ghl", None, 1), "the source's budget (5) is spent");
        assert!(b.allow_at("stripe", Some("192.0.2.3".parse().expect("ip")), 1), "another source has its own");
        assert!(b.allow_at("ghl", Some(a), 2), "a new minute, a new budget");
    }

    #[test]
    fn the_address_table_is_bounded() {
        let b = RefusalBudget::new(u32::MAX, 1);
        for i in 0..MAX_CLIENTS as u32 {
            assert!(b.allow_at("s", Some(IpAddr::from(i.to_be_bytes())), 7));
        }
        assert!(!b.allow_at("s", Some(IpAddr::from(u32::MAX.to_be_bytes())), 7), "no room for a new address");
        assert_eq!(b.window.lock().clients.len(), MAX_CLIENTS);
    }
}
