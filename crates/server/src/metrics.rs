//! Prometheus metrics, served by the admin API's `GET /metrics`.
//!
//! Per tenant: requests by status class, latency, limit hits by kind, requests in
//! flight. Per node: client connections, requests in flight, tenant loads by compile
//! cache outcome. The runtime's own meters (fuel, memory, instantiation, storage) are
//! registered by the runtime into the same registry.

use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Front;
use crate::control::Control;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    tenant: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    tenant: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds, from 0.25 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}

/// The node's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<StatusLabels, Counter>,
    latency: Histograms<TenantLabel>,
    limit_hits: Family<LimitLabels, Counter>,
    tenant_in_flight: Family<TenantLabel, Gauge>,
    connections: Gauge,
    in_flight: Gauge,
    loads: Family<OutcomeLabel, Counter>,
    components: Gauge,
    front: OnceLock<Arc<Front>>,
}

/// One tenant's meters, looked up once when the node is built so a request only bumps
/// atomics.
#[derive(Clone)]
pub(crate) struct TenantMeters {
    /// By status class: 1xx … 5xx.
    by_class: [Counter; 5],
    latency: Histogram,
    limit_hits: Family<LimitLabels, Counter>,
    tenant: String,
}

impl TenantMeters {
    pub(crate) fn observe(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.latency.observe(seconds);
    }

    pub(crate) fn limit_hit(&self, kind: &'static str) {
        self.limit_hits
            .get_or_create(&LimitLabels {
                tenant: self.tenant.clone(),
                kind,
            })
            .inc();
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("outpost");
        let requests = Family::<StatusLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by tenant and status class",
            requests.clone(),
        );
        let latency: Histograms<TenantLabel> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from request to response head, by tenant",
            latency.clone(),
        );
        let limit_hits = Family::<LimitLabels, Counter>::default();
        registry.register(
            "limit_hits",
            "Requests ended by a limit, by tenant and kind (cpu, memory, timeout, body, concurrency)",
            limit_hits.clone(),
        );
        let tenant_in_flight = Family::<TenantLabel, Gauge>::default();
        registry.register(
            "tenant_requests_in_flight",
            "Requests a tenant is running (admitted, not finished)",
            tenant_in_flight.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being handled on the node",
            in_flight.clone(),
        );
        let loads = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "tenant_loads",
            "Tenant versions loaded, by compile cache outcome (hit, miss, shared)",
            loads.clone(),
        );
        let components = Gauge::default();
        registry.register(
            "components_in_memory",
            "Distinct compiled components in memory (freed when no serving version uses them)",
            components.clone(),
        );
        Arc::new(Metrics {
            components,
            registry: Mutex::new(registry),
            requests,
            latency,
            limit_hits,
            tenant_in_flight,
            connections,
            in_flight,
            loads,
            front: OnceLock::new(),
        })
    }

    /// Lets the runtime (or anything else) add its own metrics.
    pub fn register(&self, add: impl FnOnce(&mut Registry)) {
        add(&mut self.registry.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The listeners' shared front, for connection and in-flight gauges.
    pub fn watch_front(&self, front: Arc<Front>) {
        let _ = self.front.set(front);
    }

    pub(crate) fn tenant(&self, tenant: &str) -> TenantMeters {
        let status = |class| StatusLabels {
            tenant: tenant.to_string(),
            class,
        };
        TenantMeters {
            by_class: ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .map(|class| self.requests.get_or_create_owned(&status(class))),
            latency: self.latency.get_or_create_owned(&TenantLabel {
                tenant: tenant.to_string(),
            }),
            limit_hits: self.limit_hits.clone(),
            tenant: tenant.to_string(),
        }
    }

    /// A tenant's requests answered so far, by status class.
    pub(crate) fn requests_by_class(
        &self,
        tenant: &str,
    ) -> std::collections::BTreeMap<&'static str, u64> {
        let meters = self.tenant(tenant);
        ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .into_iter()
            .zip(meters.by_class.iter().map(Counter::get))
            .collect()
    }

    /// Counts a tenant version loaded, by where its compiled code came from.
    pub fn tenant_loaded(&self, outcome: &'static str) {
        self.loads.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// The text exposition (OpenMetrics) of every metric.
    pub fn render(&self, control: &Control) -> String {
        if let Some(front) = self.front.get() {
            self.connections.set(front.connections() as i64);
            self.in_flight.set(front.in_flight() as i64);
        }
        self.components.set(control.components_in_memory() as i64);
        for tenant in control.tenants() {
            self.tenant_in_flight
                .get_or_create(&TenantLabel {
                    tenant: tenant.info().name.to_string(),
                })
                .set(tenant.in_flight() as i64);
        }
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::error!("cannot encode metrics: {error}");
        }
        text
    }
}
