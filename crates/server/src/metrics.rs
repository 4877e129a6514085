//! Prometheus metrics, served by the admin API's `GET /metrics`.
//!
//! Per tenant: requests by status class, latency, limit hits by kind. Per node: tenant
//! loads by compile cache outcome. Gauges read at scrape time are `Collector`s that their
//! owners register: the control plane's (requests in flight per tenant, components in
//! memory) and the listeners' (connections, requests in flight). The runtime's own meters
//! (fuel, memory, instantiation, storage) are registered by the runtime. So this module
//! knows none of them.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TenantLabel {
    pub(crate) tenant: String,
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
    loads: Family<OutcomeLabel, Counter>,
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
        let loads = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "tenant_loads",
            "Tenant versions loaded, by compile cache outcome (hit, miss, shared)",
            loads.clone(),
        );
        Arc::new(Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            limit_hits,
            loads,
        })
    }

    /// Lets the runtime, the control plane and the listeners add their own metrics.
    pub fn register(&self, add: impl FnOnce(&mut Registry)) {
        add(&mut self.registry.lock().unwrap_or_else(|e| e.into_inner()));
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
    pub fn render(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::error!("cannot encode metrics: {error}");
        }
        text
    }
}

/// Writes one gauge, read at scrape time (for a `Collector`).
pub(crate) fn encode_gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// Writes one gauge per label set, read at scrape time (for a `Collector`).
pub(crate) fn encode_gauges<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (label, value) in values {
        ConstGauge::new(value).encode(metric.encode_family(&label)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl prometheus_client::collector::Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            encode_gauge(&mut encoder, "connections", "Open client connections", 3)?;
            let tenants = ["a", "b"].map(|tenant| TenantLabel {
                tenant: tenant.into(),
            });
            encode_gauges(
                &mut encoder,
                "tenant_requests_in_flight",
                "in flight",
                tenants.into_iter().zip([1, 2]),
            )
        }
    }

    #[test]
    fn scrape_time_gauges_render_with_the_node_prefix() {
        let metrics = Metrics::new();
        metrics.register(|registry| registry.register_collector(Box::new(Fixed)));
        let text = metrics.render();
        for line in [
            "# TYPE outpost_connections gauge",
            "outpost_connections 3",
            "outpost_tenant_requests_in_flight{tenant=\"a\"} 1",
            "outpost_tenant_requests_in_flight{tenant=\"b\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }
}
