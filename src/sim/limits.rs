//! SCP's documented rate limits (sangfor-scp-api.md §3.3): GET 600/min, other methods 100/min,
//! per caller, answered with 429. Backed by `governor`'s GCRA; swapped whole when the limits
//! change at run time.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::RwLock;

type Keyed = DefaultKeyedRateLimiter<String>;

#[derive(Default)]
struct Pair {
    get: Option<Arc<Keyed>>,
    write: Option<Arc<Keyed>>,
}

/// The two limiters (GET and everything else); a limit of 0 turns that side off.
#[derive(Default)]
pub struct Limits {
    pair: RwLock<Pair>,
}

fn limiter(per_minute: u32) -> Option<Arc<Keyed>> {
    NonZeroU32::new(per_minute).map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n))))
}

impl Limits {
    pub fn new(get_per_minute: u32, write_per_minute: u32) -> Self {
        let limits = Self::default();
        limits.set(get_per_minute, write_per_minute);
        limits
    }

    /// Replaces both limiters (their buckets start full again).
    pub fn set(&self, get_per_minute: u32, write_per_minute: u32) {
        *self.pair.write() = Pair { get: limiter(get_per_minute), write: limiter(write_per_minute) };
    }

    /// `Err(seconds to wait)` when `key` is over its limit for this method.
    pub fn check(&self, method: &str, key: &str) -> Result<(), u64> {
        let l = {
            let pair = self.pair.read();
            if method == "GET" { pair.get.clone() } else { pair.write.clone() }
        };
        let Some(l) = l else { return Ok(()) };
        let key = key.to_string();
        l.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_method_and_off() {
        let l = Limits::new(2, 0);
        assert!(l.check("GET", "a").is_ok());
        assert!(l.check("GET", "a").is_ok());
        let wait = l.check("GET", "a").expect_err("third GET is limited");
        assert!(wait >= 1);
        assert!(l.check("GET", "b").is_ok(), "limits are per caller");
        for _ in 0..50 {
            assert!(l.check("POST", "a").is_ok(), "0 turns the write limit off");
        }
    }
}
