//! Every tenant's cache on a node, within the node's byte bound, and their metrics.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::tenant::{TenantCache, TenantMeters};
use crate::{Settings, Status};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    tenant: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

/// Every tenant's cache on the node, within the node's byte bound.
pub struct HttpCache {
    /// All tenants' capacities together stay within this.
    node_capacity: u64,
    /// Where tenants' disk tiers live (`<dir>/<tenant>/`).
    disk_root: Option<PathBuf>,
    tenants: Mutex<HashMap<String, Arc<TenantCache>>>,
    responses: Family<StatusLabels, Counter>,
    collapsed: Family<TenantLabel, Counter>,
    evictions: Family<TenantLabel, Counter>,
}

impl HttpCache {
    /// Caches within `node_capacity` bytes of memory, with disk tiers under `disk_root`.
    pub fn new(node_capacity: u64, disk_root: Option<PathBuf>) -> Arc<HttpCache> {
        Arc::new(HttpCache {
            node_capacity,
            disk_root,
            tenants: Mutex::default(),
            responses: Family::default(),
            collapsed: Family::default(),
            evictions: Family::default(),
        })
    }

    /// Sets which tenants have caches and how big: `wanted` is every tenant with a cache.
    /// If their sizes add up to more than the node's bound, each is scaled down to fit.
    /// A tenant whose settings are unchanged keeps its entries.
    pub fn configure(&self, wanted: &[(String, Settings)]) {
        let total: u64 = wanted.iter().map(|(_, s)| s.capacity).sum();
        let scale = if total > self.node_capacity {
            let scale = self.node_capacity as f64 / total as f64;
            tracing::warn!(
                wanted = total,
                node = self.node_capacity,
                "tenant caches add up to more than [node] cache_memory; each gets {:.0}% of its max_size",
                scale * 100.0
            );
            scale
        } else {
            1.0
        };
        let mut tenants = self.lock();
        let mut next = HashMap::new();
        for (name, settings) in wanted {
            let mut settings = settings.clone();
            settings.capacity = (settings.capacity as f64 * scale) as u64;
            let cache = match tenants.remove(name) {
                Some(existing) if *existing.settings() == settings => existing,
                _ => Arc::new(TenantCache::new(
                    settings,
                    self.meters(name),
                    self.disk_root.as_ref().map(|root| root.join(name)),
                )),
            };
            next.insert(name.clone(), cache);
        }
        *tenants = next;
    }

    /// The cache of `tenant`, if it has one.
    pub fn tenant(&self, tenant: &str) -> Option<Arc<TenantCache>> {
        self.lock().get(tenant).cloned()
    }

    /// Registers the cache's counters and its bytes gauge.
    pub fn register_metrics(self: &Arc<Self>, registry: &mut Registry) {
        registry.register(
            "cache_responses",
            "Responses of tenants with a cache, by tenant and x-outpost-cache status",
            self.responses.clone(),
        );
        registry.register(
            "cache_collapsed_waiters",
            "Requests that waited for another request's fetch of the same key, by tenant",
            self.collapsed.clone(),
        );
        registry.register(
            "cache_evictions",
            "Entries evicted to stay within the tenant's cache size, by tenant",
            self.evictions.clone(),
        );
        registry.register_collector(Box::new(BytesGauge(Arc::downgrade(self))));
    }

    fn meters(&self, tenant: &str) -> TenantMeters {
        let by = |status: Status| {
            self.responses
                .get_or_create(&StatusLabels {
                    tenant: tenant.to_string(),
                    status: status.as_str(),
                })
                .clone()
        };
        let label = TenantLabel {
            tenant: tenant.to_string(),
        };
        TenantMeters {
            by_status: [
                by(Status::Hit),
                by(Status::Miss),
                by(Status::Expired),
                by(Status::Updating),
                by(Status::Stale),
                by(Status::Bypass),
            ],
            collapsed: self.collapsed.get_or_create(&label).clone(),
            evictions: self.evictions.get_or_create(&label).clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TenantCache>>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `outpost_cache_bytes{tenant}`, read at each scrape.
struct BytesGauge(std::sync::Weak<HttpCache>);

impl std::fmt::Debug for BytesGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BytesGauge")
    }
}

impl prometheus_client::collector::Collector for BytesGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(cache) = self.0.upgrade() else {
            return Ok(());
        };
        let tenants: Vec<(String, Arc<TenantCache>)> = cache
            .lock()
            .iter()
            .map(|(name, cache)| (name.clone(), cache.clone()))
            .collect();
        let mut metric = encoder.encode_descriptor(
            "cache_bytes",
            "Bytes held by each tenant's cache",
            None,
            MetricType::Gauge,
        )?;
        for (tenant, cache) in tenants {
            let gauge = ConstGauge::new(cache.bytes() as i64);
            gauge.encode(metric.encode_family(&TenantLabel { tenant })?)?;
        }
        Ok(())
    }
}
