//! Every `vmauto_*` Prometheus metric, registered once in one registry.
//!
//! Components get their group of metrics from [`Metrics`], which is built once at start and
//! passed explicitly (`Arc<Metrics>`), never through a global.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Metric names, in one place.
pub mod names {
    pub const BUILD_INFO: &str = "vmauto_build_info";
    pub const HTTP_REQUESTS: &str = "vmauto_http_requests_total";
    pub const HTTP_DURATION: &str = "vmauto_http_request_duration_seconds";
    pub const ACTOR_RESTARTS: &str = "vmauto_actor_restarts_total";
    pub const ACTORS_RUNNING: &str = "vmauto_actors_running";
    pub const READY: &str = "vmauto_ready";
    pub const LEADER: &str = "vmauto_leader";
    pub const WEBHOOKS: &str = "vmauto_webhooks_total";
    pub const INBOX_BATCH: &str = "vmauto_inbox_batch_size";
    pub const KPI: &str = "vmauto_kpi";
    pub const OPERATIONS: &str = "vmauto_operations";
    pub const INBOX_PENDING: &str = "vmauto_inbox_pending";
    pub const INBOX_OLDEST_PENDING: &str = "vmauto_inbox_oldest_pending_seconds";
    pub const SCP_REQUESTS: &str = "vmauto_scp_requests_total";
    pub const SCP_REQUEST_DURATION: &str = "vmauto_scp_request_duration_seconds";
    pub const SCP_RATE_LIMIT_WAIT: &str = "vmauto_scp_rate_limit_wait_seconds";
    pub const SCP_QUEUE_DEPTH: &str = "vmauto_scp_queue_depth";
    pub const SCP_IN_FLIGHT: &str = "vmauto_scp_in_flight";
    pub const SCP_RETRIES: &str = "vmauto_scp_retries_total";
    pub const SCP_BREAKER_STATE: &str = "vmauto_scp_breaker_state";
    pub const SCP_BREAKER_TRANSITIONS: &str = "vmauto_scp_breaker_transitions_total";
    pub const SCP_TOKEN_REFRESHES: &str = "vmauto_scp_token_refreshes_total";
    pub const PLUGIN_CALLS: &str = "vmauto_plugin_calls_total";
    pub const PLUGIN_CALL_DURATION: &str = "vmauto_plugin_call_duration_seconds";
}

/// The registry and every metric handle.
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub actor_restarts: IntCounterVec,
    pub actors_running: IntGaugeVec,
    pub ready: IntGauge,
    /// 1 while this node holds the work lease (always, for a single node).
    pub leader: IntGauge,
    /// Webhooks by source and result (stored, duplicate, rejected_signature, rejected_payload, …).
    pub webhooks: IntCounterVec,
    /// Rows per inbox transaction (group commit).
    pub inbox_batch_size: prometheus::Histogram,
    /// The service's key figures (`vmauto_kpi{name}`), refreshed at each scrape.
    pub kpi: prometheus::GaugeVec,
    /// Operations in the store by state (`dead` needs an admin, `held` waits for the
    /// blast-radius guard's approval), refreshed at each scrape.
    pub operations: IntGaugeVec,
    /// Webhooks stored but not applied yet, refreshed at each scrape.
    pub inbox_pending: IntGauge,
    /// Age of the oldest of them, refreshed at each scrape.
    pub inbox_oldest_pending: prometheus::Gauge,
    /// Plugin calls by plugin, call (`parse`, `choose`) and outcome (`ok` or the error's code).
    pub plugin_calls: IntCounterVec,
    /// Plugin call duration (queueing for a core included) by plugin and call.
    pub plugin_duration: HistogramVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::for_node("")
    }

    /// The metrics of node `node` (`cluster.node_id`): every series carries `node="<id>"`, so
    /// the nodes of a cluster can be scraped into one Prometheus. Empty: no such label.
    pub fn for_node(node: &str) -> Self {
        let registry = match node {
            "" => Registry::new(),
            node => Registry::new_custom(None, Some([("node".to_string(), node.to_string())].into()))
                .expect("a valid label value"),
        };
        let build_info =
            IntGaugeVec::new(Opts::new(names::BUILD_INFO, "Build information; the value is always 1."), &["version"])
                .expect("valid metric");
        build_info.with_label_values(&[crate::VERSION]).set(1);
        let http_requests = IntCounterVec::new(
            Opts::new(names::HTTP_REQUESTS, "HTTP requests by route pattern, method and status."),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(names::HTTP_DURATION, "HTTP request duration by route pattern.")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["route"],
        )
        .expect("valid metric");
        let actor_restarts = IntCounterVec::new(
            Opts::new(names::ACTOR_RESTARTS, "Restarts of supervised actors by actor name."),
            &["actor"],
        )
        .expect("valid metric");
        let actors_running = IntGaugeVec::new(
            Opts::new(names::ACTORS_RUNNING, "Supervised actors currently running, by actor name."),
            &["actor"],
        )
        .expect("valid metric");
        let ready =
            IntGauge::new(names::READY, "1 when the store is open and the actor tree runs.").expect("valid metric");
        let leader = IntGauge::new(
            names::LEADER,
            "1 while this node holds the work lease (applies webhooks, runs operations, the scheduler and the reconciler).",
        )
        .expect("valid metric");
        let webhooks = IntCounterVec::new(
            Opts::new(names::WEBHOOKS, "Webhooks received, by source and result."),
            &["source", "result"],
        )
        .expect("valid metric");
        let inbox_batch_size = prometheus::Histogram::with_opts(
            HistogramOpts::new(names::INBOX_BATCH, "Webhooks committed per inbox transaction.")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .expect("valid metric");
        let kpi = prometheus::GaugeVec::new(
            Opts::new(
                names::KPI,
                "Key figures over 30 days: automation_success_rate, error_rate, avg_provisioning_secs, \
                 avg_deprovisioning_secs, webhooks_per_minute (last hour), manual_interventions.",
            ),
            &["name"],
        )
        .expect("valid metric");
        let operations = IntGaugeVec::new(
            Opts::new(
                names::OPERATIONS,
                "Operations in the store by state (queued, held, running, waiting_task, succeeded, dead, cancelled).",
            ),
            &["state"],
        )
        .expect("valid metric");
        let inbox_pending = IntGauge::new(names::INBOX_PENDING, "Webhooks stored whose events are not applied yet.")
            .expect("valid metric");
        let inbox_oldest_pending = prometheus::Gauge::new(
            names::INBOX_OLDEST_PENDING,
            "Seconds since the oldest webhook whose events are not applied yet arrived (0 when none).",
        )
        .expect("valid metric");
        let plugin_calls = IntCounterVec::new(
            Opts::new(
                names::PLUGIN_CALLS,
                "Plugin calls by plugin, call (parse, choose) and outcome (ok, plugin_rejected, plugin_timeout, \
                 plugin_trap, plugin_memory_limit, plugin_bad_output, …).",
            ),
            &["plugin", "call", "outcome"],
        )
        .expect("valid metric");
        let plugin_duration = HistogramVec::new(
            HistogramOpts::new(names::PLUGIN_CALL_DURATION, "Plugin call duration by plugin and call.")
                .buckets(vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]),
            &["plugin", "call"],
        )
        .expect("valid metric");
        for c in [
            Box::new(kpi.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(plugin_calls.clone()),
            Box::new(plugin_duration.clone()),
            Box::new(operations.clone()),
            Box::new(inbox_pending.clone()),
            Box::new(inbox_oldest_pending.clone()),
            Box::new(webhooks.clone()),
            Box::new(inbox_batch_size.clone()),
            Box::new(build_info),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(actor_restarts.clone()),
            Box::new(actors_running.clone()),
            Box::new(ready.clone()),
            Box::new(leader.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Self {
            registry,
            http_requests,
            http_duration,
            actor_restarts,
            actors_running,
            ready,
            leader,
            webhooks,
            inbox_batch_size,
            kpi,
            operations,
            inbox_pending,
            inbox_oldest_pending,
            plugin_calls,
            plugin_duration,
        }
    }

    /// Registers a component's collector (components that own a metrics group call this).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        self.registry.register(c).expect("metric registered once");
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The SCP gateway's metrics (`vmauto_scp_*`): traffic, waiting, retries, breaker, logins.
///
/// Built once per gateway and registered with [`Metrics::register`]; the handles are cheap
/// clones shared by the gateway and its traffic layer. [`GatewayMetrics::unregistered`] serves
/// one-shot tools (`vmauto provider check`) that expose no `/metrics`.
#[derive(Clone)]
pub struct GatewayMetrics {
    /// Requests by operation and outcome (`ok` or an error kind), one per HTTP attempt.
    pub requests: IntCounterVec,
    /// Time on the wire per attempt, by operation.
    pub duration: HistogramVec,
    /// Time a request waited for a rate-limit token and a concurrency slot, by class.
    pub rate_limit_wait: HistogramVec,
    /// Requests queued for admission, by class (`read`, `write`).
    pub queue_depth: IntGaugeVec,
    /// Requests on the wire now.
    pub in_flight: IntGauge,
    /// Retries by operation and the error kind that caused them.
    pub retries: IntCounterVec,
    /// 0 closed, 1 half-open, 2 open.
    pub breaker_state: IntGauge,
    /// Breaker transitions by new state.
    pub breaker_transitions: IntCounterVec,
    /// Token logins by outcome (`ok`, `error`).
    pub token_refreshes: IntCounterVec,
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayMetrics")
    }
}

impl GatewayMetrics {
    /// Builds the group of the `default` provider and registers it in `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self::for_provider(metrics, crate::config::DEFAULT_PROVIDER)
    }

    /// Builds the group of provider `name` (every sample labelled `provider="<name>"`) and
    /// registers it in `metrics` (once per process and provider).
    pub fn for_provider(metrics: &Metrics, name: &str) -> Self {
        let m = Self::labelled(name);
        for c in m.collectors() {
            metrics.register(c);
        }
        m
    }

    /// Builds the group without registering it.
    pub fn unregistered() -> Self {
        Self::labelled(crate::config::DEFAULT_PROVIDER)
    }

    fn labelled(provider: &str) -> Self {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("provider", provider);
        let hopts = |name: &str, help: &str| HistogramOpts::new(name, help).const_label("provider", provider);
        let wait_buckets =
            vec![0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];
        Self {
            requests: IntCounterVec::new(
                opts(names::SCP_REQUESTS, "SCP requests (attempts) by operation and outcome."),
                &["op", "outcome"],
            )
            .expect("valid metric"),
            duration: HistogramVec::new(
                hopts(names::SCP_REQUEST_DURATION, "SCP request latency on the wire, by operation.")
                    .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                &["op"],
            )
            .expect("valid metric"),
            rate_limit_wait: HistogramVec::new(
                hopts(
                    names::SCP_RATE_LIMIT_WAIT,
                    "Time SCP requests waited for a rate-limit token and a concurrency slot, by class.",
                )
                .buckets(wait_buckets),
                &["class"],
            )
            .expect("valid metric"),
            queue_depth: IntGaugeVec::new(
                opts(names::SCP_QUEUE_DEPTH, "SCP requests waiting for admission, by class."),
                &["class"],
            )
            .expect("valid metric"),
            in_flight: IntGauge::with_opts(opts(names::SCP_IN_FLIGHT, "SCP requests on the wire."))
                .expect("valid metric"),
            retries: IntCounterVec::new(
                opts(names::SCP_RETRIES, "SCP request retries by operation and cause."),
                &["op", "cause"],
            )
            .expect("valid metric"),
            breaker_state: IntGauge::with_opts(opts(
                names::SCP_BREAKER_STATE,
                "SCP circuit breaker: 0 closed, 1 half-open, 2 open.",
            ))
            .expect("valid metric"),
            breaker_transitions: IntCounterVec::new(
                opts(names::SCP_BREAKER_TRANSITIONS, "SCP circuit breaker transitions by new state."),
                &["state"],
            )
            .expect("valid metric"),
            token_refreshes: IntCounterVec::new(
                opts(names::SCP_TOKEN_REFRESHES, "SCP token logins by outcome."),
                &["outcome"],
            )
            .expect("valid metric"),
        }
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.requests.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.rate_limit_wait.clone()),
            Box::new(self.queue_depth.clone()),
            Box::new(self.in_flight.clone()),
            Box::new(self.retries.clone()),
            Box::new(self.breaker_state.clone()),
            Box::new(self.breaker_transitions.clone()),
            Box::new(self.token_refreshes.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_build_info_with_prefix() {
        let m = Metrics::new();
        m.actor_restarts.with_label_values(&["webhook"]).inc();
        let text = m.render();
        assert!(text.contains("vmauto_build_info{version="), "{text}");
        assert!(text.contains("vmauto_actor_restarts_total{actor=\"webhook\"} 1"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            assert!(line.starts_with("vmauto_"), "unprefixed metric: {line}");
        }
    }

    #[test]
    fn gateway_metrics_register_with_scp_prefix() {
        let m = Metrics::new();
        let g = GatewayMetrics::new(&m);
        g.requests.with_label_values(&["get_server", "ok"]).inc();
        g.queue_depth.with_label_values(&["write"]).set(3);
        g.breaker_state.set(2);
        let other = GatewayMetrics::for_provider(&m, "b");
        other.breaker_state.set(1);
        let text = m.render();
        assert!(
            text.contains("vmauto_scp_requests_total{op=\"get_server\",outcome=\"ok\",provider=\"default\"} 1"),
            "{text}"
        );
        assert!(text.contains("vmauto_scp_queue_depth{class=\"write\",provider=\"default\"} 3"), "{text}");
        assert!(text.contains("vmauto_scp_breaker_state{provider=\"default\"} 2"), "{text}");
        assert!(text.contains("vmauto_scp_breaker_state{provider=\"b\"} 1"), "a second provider beside: {text}");
    }
}
