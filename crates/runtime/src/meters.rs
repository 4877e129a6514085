//! The runtime's meters per tenant: instantiation time, fuel burnt, and each instance's
//! peak linear memory. Registered into the node's Prometheus registry by the server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

type Histograms = Family<TenantLabel, Histogram, fn() -> Histogram>;

/// Seconds, 10 µs to about 80 ms.
fn instantiation_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 14))
}

/// Bytes, 64 KiB to 4 GiB.
fn memory_buckets() -> Histogram {
    Histogram::new(exponential_buckets(65_536.0, 2.0, 17))
}

/// The node-wide families.
#[derive(Clone)]
pub(crate) struct RuntimeMeters {
    instantiation: Histograms,
    fuel: Family<TenantLabel, Counter>,
    memory_peak: Histograms,
}

impl Default for RuntimeMeters {
    fn default() -> RuntimeMeters {
        RuntimeMeters {
            instantiation: Family::new_with_constructor(instantiation_buckets),
            fuel: Family::default(),
            memory_peak: Family::new_with_constructor(memory_buckets),
        }
    }
}

impl RuntimeMeters {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "instantiation_seconds",
            "Time to create an instance for a request, by tenant",
            self.instantiation.clone(),
        );
        registry.register(
            "fuel_consumed",
            "wasmtime fuel burnt by guests, by tenant",
            self.fuel.clone(),
        );
        registry.register(
            "instance_memory_peak_bytes",
            "Largest linear memory each instance reached, by tenant",
            self.memory_peak.clone(),
        );
    }

    /// One tenant's handles, looked up once.
    pub(crate) fn tenant(&self, tenant: &str) -> TenantMeters {
        let label = TenantLabel {
            tenant: tenant.to_string(),
        };
        TenantMeters {
            instantiation: self.instantiation.get_or_create_owned(&label),
            fuel: self.fuel.get_or_create_owned(&label),
            memory_peak: self.memory_peak.get_or_create_owned(&label),
        }
    }
}

/// One tenant's meters: bumping them is a few atomics.
#[derive(Clone)]
pub(crate) struct TenantMeters {
    pub(crate) instantiation: Histogram,
    pub(crate) fuel: Counter,
    pub(crate) memory_peak: Histogram,
}
