//! The SCP provider against the simulator over real HTTP: both authentications, every
//! operation, paging, idempotent creates under retry, fault storms, the circuit breaker,
//! `provider check`, and the `bench_gateway_*` figures (ignored; run them explicitly).

mod bench;
mod client;
mod faults;
mod harness;
mod usage;
mod wire;
