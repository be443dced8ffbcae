//! Supervision: capped exponential back-off between restarts and restart counts as metrics.
//! The tree itself is built in [`super::tree`].
//!
//! Every child is started with [`actix::Supervisor`], which restarts an actor whose context
//! stops while its address is still held. Each child embeds a [`Supervision`] and calls it
//! from `started` and `restarting`: a restarted actor first waits out its back-off (its
//! mailbox keeps queueing meanwhile, so no message is lost) and the restart is counted in
//! `vmauto_actor_restarts_total{actor}`. A panic is not caught: it is a bug, the process
//! exits and systemd or the container runtime restarts it; recovery from the store makes that
//! safe (design.md §2).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context};

use crate::telemetry::metrics::Metrics;

/// First restart back-off.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest back-off between restarts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A child that ran this long without failing starts over at the base back-off.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The supervision state a child carries across its restarts.
#[derive(Debug)]
pub struct Supervision {
    name: &'static str,
    metrics: Arc<Metrics>,
    /// Restarts since the child was last stable.
    consecutive: u32,
    /// Restarts over the child's life.
    total: u64,
    started_at: Instant,
}

impl Supervision {
    pub fn new(name: &'static str, metrics: Arc<Metrics>) -> Self {
        Self { name, metrics, consecutive: 0, total: 0, started_at: Instant::now() }
    }

    /// The back-off before the `n`-th consecutive restart: base · 2^(n-1), capped.
    pub fn backoff(n: u32) -> Duration {
        if n == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(n.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
        BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_CAP)
    }

    /// Restarts over the child's life.
    pub fn restarts(&self) -> u64 {
        self.total
    }

    /// Call from `Actor::started`: applies the back-off of a restart and marks the child
    /// running.
    pub fn on_started<A>(&mut self, ctx: &mut Context<A>)
    where
        A: Actor<Context = Context<A>>,
    {
        self.metrics.actors_running.with_label_values(&[self.name]).set(1);
        let delay = Self::backoff(self.consecutive);
        if !delay.is_zero() {
            tracing::warn!(
                actor = self.name,
                restarts = self.total,
                delay_ms = delay.as_millis() as u64,
                "restarting after back-off"
            );
            ctx.wait(actix::fut::wrap_future(tokio::time::sleep(delay)));
        }
        self.started_at = Instant::now();
    }

    /// Call from `Supervised::restarting`: counts the restart.
    pub fn on_restarting(&mut self) {
        if self.started_at.elapsed() >= STABLE_AFTER {
            self.consecutive = 0;
        }
        self.consecutive = self.consecutive.saturating_add(1);
        self.total += 1;
        self.metrics.actor_restarts.with_label_values(&[self.name]).inc();
        self.metrics.actors_running.with_label_values(&[self.name]).set(0);
    }
}

/// Makes an actor with a `sup: Supervision` field a supervised child: counts its restarts
/// and answers [`Restart`](super::messages::Restart) and
/// [`RestartCount`](super::messages::RestartCount). Its `Actor::started` must call
/// `self.sup.on_started(ctx)`.
#[macro_export]
macro_rules! supervised_child {
    ($actor:ty) => {
        impl ::actix::Supervised for $actor {
            fn restarting(&mut self, _: &mut <Self as ::actix::Actor>::Context) {
                self.sup.on_restarting();
            }
        }

        impl ::actix::Handler<$crate::actors::messages::Restart> for $actor {
            type Result = ();

            fn handle(&mut self, _: $crate::actors::messages::Restart, ctx: &mut Self::Context) {
                ::actix::ActorContext::stop(ctx);
            }
        }

        impl ::actix::Handler<$crate::actors::messages::RestartCount> for $actor {
            type Result = u64;

            fn handle(&mut self, _: $crate::actors::messages::RestartCount, _: &mut Self::Context) -> u64 {
                self.sup.restarts()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(Supervision::backoff(0), Duration::ZERO);
        assert_eq!(Supervision::backoff(1), Duration::from_millis(100));
        assert_eq!(Supervision::backoff(2), Duration::from_millis(200));
        assert_eq!(Supervision::backoff(5), Duration::from_millis(1600));
        assert_eq!(Supervision::backoff(20), BACKOFF_CAP);
        assert_eq!(Supervision::backoff(u32::MAX), BACKOFF_CAP);
    }
}
