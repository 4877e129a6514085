//! Host-side timing of tenants' store operations: `outpost_storage_operation_seconds`,
//! by tenant, store (kv, sql, blob) and operation.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    tenant: String,
    store: &'static str,
    op: &'static str,
}

/// Seconds, 5 µs to about 10 s.
fn operation_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_005, 2.0, 22))
}

/// The node's store-operation histograms; cheap to clone (one family underneath).
#[derive(Clone)]
pub struct StoreMeters {
    ops: Family<OperationLabels, Histogram, fn() -> Histogram>,
}

impl Default for StoreMeters {
    fn default() -> StoreMeters {
        StoreMeters {
            ops: Family::new_with_constructor(operation_buckets),
        }
    }
}

impl StoreMeters {
    /// Adds the histogram to the node's metrics.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "storage_operation_seconds",
            "Host-side time of tenants' store operations, by tenant, store (kv, sql, blob) and operation; a blob get is timed to its first byte, a blob put from finish() to durable",
            self.ops.clone(),
        );
    }

    /// Times one operation of `tenant` on `store`, until the timer drops.
    pub(crate) fn time(
        &self,
        tenant: &str,
        store: &'static str,
        op: &'static str,
    ) -> OperationTimer {
        let labels = OperationLabels {
            tenant: tenant.to_string(),
            store,
            op,
        };
        OperationTimer {
            histogram: self.ops.get_or_create_owned(&labels),
            started: Instant::now(),
        }
    }
}

/// Observes an operation's duration when dropped, however the operation ends.
pub(crate) struct OperationTimer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for OperationTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}
