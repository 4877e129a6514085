//! outpost's HTTP cache: one bounded, in-memory store per tenant (moka, weighed in bytes,
//! evicting by TinyLFU admission and LRU), RFC 9111 freshness through
//! http-cache-semantics, collapsed misses, stale-while-revalidate / stale-if-error
//! windows, `Vary`, and purges by URL, prefix, tag or everything.
//!
//! The caches outlive the tenant versions that fill them (a deploy keeps the store; the
//! key carries the version instead), so the node keeps them here, by tenant name, and
//! hands each served tenant its own.

pub mod body;
pub mod conditional;
mod disk;
mod entry;
mod flight;
pub mod policy;
mod purge;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderMap;
use moka::notification::RemovalCause;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

pub use entry::{Entry, Freshness};
pub use flight::{Follower, Joined, Leader};
pub use policy::{Lifetimes, StaleDefaults, Verdict};
pub use purge::Purge;

/// Variants kept per key (one per combination of `Vary` header values).
const MAX_VARIANTS: usize = 8;
/// How long an entry is kept after it may no longer be served, so its next fetch is
/// reported as `EXPIRED` rather than `MISS`.
const KEEP_EXPIRED: Duration = Duration::from_secs(10);

/// How a response relates to the cache, as `x-outpost-cache` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Served fresh from the cache.
    Hit,
    /// Nothing usable was stored; fetched (and stored if cacheable).
    Miss,
    /// An expired entry was replaced by a fetch.
    Expired,
    /// Served stale while one background request refreshes it.
    Updating,
    /// Served stale because fetching failed (stale-if-error).
    Stale,
    /// The request or the response is not cacheable.
    Bypass,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Hit => "HIT",
            Status::Miss => "MISS",
            Status::Expired => "EXPIRED",
            Status::Updating => "UPDATING",
            Status::Stale => "STALE",
            Status::Bypass => "BYPASS",
        }
    }
}

/// A tenant's cache settings, as the cache needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Bytes this tenant's entries may take.
    pub capacity: u64,
    /// Responses larger than this are not stored.
    pub max_object: u64,
    pub stale: StaleDefaults,
    /// Up to this fraction is taken off each entry's freshness, at random.
    pub jitter: f64,
    /// How long a miss waits for the same key's fetch.
    pub lock_timeout: Duration,
    /// Entries outlive a deploy (the key leaves the version out).
    pub cross_version: bool,
    /// Bytes of the disk tier (`data_dir/cache/<tenant>/`); 0 for memory only.
    pub disk: u64,
}

struct Variants {
    list: Vec<Arc<Entry>>,
    /// The longest a variant may still be served (moka drops the key after it).
    lifespan: Duration,
}

impl Variants {
    fn of(list: Vec<Arc<Entry>>) -> Variants {
        let lifespan = list.iter().map(|e| e.lifespan()).max().unwrap_or_default() + KEEP_EXPIRED;
        Variants { list, lifespan }
    }
}

struct Lifespan;

impl moka::Expiry<String, Arc<Variants>> for Lifespan {
    fn expire_after_create(
        &self,
        _: &String,
        value: &Arc<Variants>,
        _: Instant,
    ) -> Option<Duration> {
        Some(value.lifespan)
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Arc<Variants>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.lifespan)
    }
}

/// One tenant's cache.
pub struct TenantCache {
    entries: moka::sync::Cache<String, Arc<Variants>>,
    disk: Option<Arc<disk::DiskTier>>,
    flights: Arc<flight::Flights>,
    settings: Settings,
    meters: TenantMeters,
}

#[derive(Clone)]
struct TenantMeters {
    /// By [`Status`], in declaration order.
    by_status: [Counter; 6],
    collapsed: Counter,
    evictions: Counter,
}

impl TenantCache {
    fn new(settings: Settings, meters: TenantMeters, disk_dir: Option<PathBuf>) -> TenantCache {
        let disk = disk_dir
            .filter(|_| settings.disk > 0)
            .and_then(|dir| match disk::DiskTier::open(&dir, settings.disk) {
                Ok(tier) => Some(tier),
                Err(error) => {
                    tracing::error!(dir = %dir.display(), %error, "the cache's disk tier cannot be used; caching in memory only");
                    None
                }
            });
        let evictions = meters.evictions.clone();
        let entries = moka::sync::Cache::builder()
            .max_capacity(settings.capacity)
            .weigher(|key: &String, variants: &Arc<Variants>| {
                let bytes: u64 =
                    variants.list.iter().map(|e| e.weight()).sum::<u64>() + key.len() as u64;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .expire_after(Lifespan)
            .eviction_listener(move |_, _, cause| {
                if cause == RemovalCause::Size {
                    evictions.inc();
                }
            })
            .support_invalidation_closures()
            .build();
        TenantCache {
            entries,
            disk,
            flights: Arc::default(),
            settings,
            meters,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The stored variant of `key` that answers a request with `headers`, from memory or
    /// else from the disk tier.
    pub async fn lookup(&self, key: &str, headers: &HeaderMap) -> Option<Arc<Entry>> {
        let variants = match self.entries.get(key) {
            Some(variants) => variants,
            None => self.read_disk(key).await?,
        };
        variants
            .list
            .iter()
            .find(|entry| entry.matches(headers))
            .cloned()
    }

    /// Brings `key` back from the disk tier into memory.
    async fn read_disk(&self, key: &str) -> Option<Arc<Variants>> {
        let disk = self.disk.clone()?;
        let owned = key.to_string();
        let read = tokio::task::spawn_blocking(move || disk.read(&owned))
            .await
            .ok()??;
        let now = Instant::now();
        let list: Vec<Arc<Entry>> = read
            .into_iter()
            .filter(|entry| entry.freshness(now) != Freshness::Expired)
            .map(Arc::new)
            .collect();
        if list.is_empty() {
            return None;
        }
        let variants = Arc::new(Variants::of(list));
        self.entries.insert(key.to_string(), variants.clone());
        Some(variants)
    }

    /// Stores `entry` under `key`, replacing the same variant; answers what was stored.
    pub fn store(&self, key: &str, entry: Entry) -> Arc<Entry> {
        let entry = Arc::new(entry);
        let now = Instant::now();
        let mut list: Vec<Arc<Entry>> = self
            .entries
            .get(key)
            .map(|v| {
                v.list
                    .iter()
                    .filter(|old| {
                        !old.same_variant(&entry) && old.freshness(now) != Freshness::Expired
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        list.push(entry.clone());
        if list.len() > MAX_VARIANTS {
            list.remove(0);
        }
        let variants = Variants::of(list);
        if let Some(disk) = &self.disk {
            let (disk, key, list) = (disk.clone(), key.to_string(), variants.list.clone());
            let generation = disk.generation();
            let write = move || disk.write(&key, &list, generation);
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(write)),
                Err(_) => write(),
            }
        }
        self.entries.insert(key.to_string(), Arc::new(variants));
        entry
    }

    /// Drops `key`; whether it was there.
    pub fn remove(&self, key: &str) -> bool {
        if let Some(disk) = &self.disk {
            disk.remove(key);
        }
        self.entries.remove(key).is_some()
    }

    /// Joins (or leads) the fetch of `key`.
    pub fn join(&self, key: &str) -> Joined {
        self.flights.join(key)
    }

    /// Leads a refresh of `key` unless one is running.
    pub fn try_lead(&self, key: &str) -> Option<Leader> {
        self.flights.try_lead(key)
    }

    /// Drops every entry `purge` names (at once for lookups; memory is freed as moka
    /// gets to it).
    pub fn purge(&self, purge: &Purge) {
        if let Some(disk) = &self.disk {
            disk.purge(purge);
        }
        match purge {
            Purge::Everything => self.entries.invalidate_all(),
            _ => {
                let purge = purge.clone();
                let result = self.entries.invalidate_entries_if(move |_, variants| {
                    variants.list.iter().any(|entry| purge.covers(entry))
                });
                if let Err(error) = result {
                    tracing::error!(%error, "purge failed; purging everything instead");
                    self.entries.invalidate_all();
                }
            }
        }
    }

    /// Bytes held (after pending maintenance).
    pub fn bytes(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }

    /// Bytes of the disk tier's files.
    pub fn disk_bytes(&self) -> u64 {
        self.disk.as_ref().map_or(0, |disk| disk.bytes())
    }

    /// Counts a response by how it used the cache.
    pub fn count(&self, status: Status) {
        let index = match status {
            Status::Hit => 0,
            Status::Miss => 1,
            Status::Expired => 2,
            Status::Updating => 3,
            Status::Stale => 4,
            Status::Bypass => 5,
        };
        self.meters.by_status[index].inc();
    }

    /// Counts a request that waited for another's fetch.
    pub fn count_collapsed(&self) {
        self.meters.collapsed.inc();
    }

    /// `lifetimes` with jitter applied (freshness shortened by up to `jitter`).
    pub fn jittered(&self, mut lifetimes: Lifetimes) -> Lifetimes {
        if self.settings.jitter > 0.0 {
            let cut = rand::random::<f64>() * self.settings.jitter;
            lifetimes.fresh = lifetimes.fresh.mul_f64(1.0 - cut);
        }
        lifetimes
    }
}

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
                Some(existing) if existing.settings == settings => existing,
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn settings(capacity: u64) -> Settings {
        Settings {
            capacity,
            max_object: 1 << 20,
            stale: StaleDefaults::default(),
            jitter: 0.0,
            lock_timeout: Duration::from_secs(5),
            cross_version: false,
            disk: 0,
        }
    }

    fn entry(path: &str, body: usize, vary: Option<(&str, &str)>, tags: &[&str]) -> Entry {
        let mut response = http::Response::builder().status(200);
        let mut request = HeaderMap::new();
        if let Some((name, value)) = vary {
            response = response.header("vary", name);
            request.insert(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        let (parts, ()) = response.body(()).expect("response").into_parts();
        Entry::new(
            &parts,
            Bytes::from(vec![b'x'; body]),
            &request,
            "shop.test".into(),
            path.into(),
            Lifetimes {
                fresh: Duration::from_secs(60),
                stale_while_revalidate: Duration::ZERO,
                stale_if_error: Duration::ZERO,
                tags: tags.iter().map(|t| t.to_string()).collect(),
            },
        )
    }

    #[tokio::test]
    async fn variants_are_kept_apart_and_replaced() {
        let cache = HttpCache::new(1 << 30, None);
        cache.configure(&[("t".into(), settings(1 << 20))]);
        let cache = cache.tenant("t").expect("configured");
        cache.store("k", entry("/", 1, Some(("accept-language", "de")), &[]));
        cache.store("k", entry("/", 2, Some(("accept-language", "fr")), &[]));
        cache.store("k", entry("/", 3, Some(("accept-language", "fr")), &[]));
        let asking = |lang: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("accept-language", lang.parse().expect("value"));
            let cache = cache.clone();
            async move { cache.lookup("k", &headers).await.map(|e| e.body.len()) }
        };
        assert_eq!(asking("de").await, Some(1));
        assert_eq!(asking("fr").await, Some(3));
        assert_eq!(asking("en").await, None);
    }

    #[tokio::test]
    async fn purges_by_tag_prefix_and_url() {
        let cache = HttpCache::new(1 << 30, None);
        cache.configure(&[("t".into(), settings(1 << 20))]);
        let cache = cache.tenant("t").expect("configured");
        for (key, path, tags) in [
            ("a", "/products/1", &["p1"][..]),
            ("b", "/products/2", &["p2"][..]),
            ("c", "/about", &[][..]),
        ] {
            cache.store(key, entry(path, 10, None, tags));
        }
        let none = HeaderMap::new();
        cache.purge(&Purge::parse_tags(&["p1".into()]));
        assert!(cache.lookup("a", &none).await.is_none());
        assert!(cache.lookup("b", &none).await.is_some());
        cache.purge(&Purge::parse_prefixes(&["/products/".into()]).expect("prefix"));
        assert!(cache.lookup("b", &none).await.is_none());
        assert!(cache.lookup("c", &none).await.is_some());
        cache.purge(&Purge::parse_urls(&["https://shop.test/about".into()]).expect("url"));
        assert!(cache.lookup("c", &none).await.is_none());
    }

    #[test]
    fn the_byte_bound_holds_under_a_flood_of_keys() {
        let cache = HttpCache::new(1 << 30, None);
        cache.configure(&[("t".into(), settings(256 << 10))]);
        let cache = cache.tenant("t").expect("configured");
        for i in 0..2_000 {
            cache.store(&format!("k{i}"), entry("/", 1_000, None, &[]));
        }
        let bytes = cache.bytes();
        assert!(bytes <= 256 << 10, "{bytes} bytes held");
        assert!(bytes > 128 << 10, "the cache is used: {bytes} bytes");
    }

    #[tokio::test]
    async fn tenant_sizes_are_scaled_into_the_node_bound() {
        let cache = HttpCache::new(1 << 20, None);
        cache.configure(&[
            ("a".into(), settings(1 << 20)),
            ("b".into(), settings(1 << 20)),
        ]);
        let a = cache.tenant("a").expect("a");
        assert_eq!(a.settings().capacity, 512 << 10);
        // Unchanged settings keep the same store (and its entries).
        a.store("k", entry("/", 1, None, &[]));
        cache.configure(&[
            ("a".into(), settings(1 << 20)),
            ("b".into(), settings(1 << 20)),
        ]);
        let again = cache.tenant("a").expect("a");
        assert!(again.lookup("k", &HeaderMap::new()).await.is_some());
        cache.configure(&[("b".into(), settings(1 << 20))]);
        assert!(cache.tenant("a").is_none());
    }

    #[tokio::test]
    async fn the_disk_tier_brings_entries_back_and_purges_reach_it() {
        let dir = tempfile::tempdir().expect("dir");
        let mut with_disk = settings(1 << 20);
        with_disk.disk = 1 << 20;
        let first = HttpCache::new(1 << 30, Some(dir.path().to_path_buf()));
        first.configure(&[("t".into(), with_disk.clone())]);
        let cache = first.tenant("t").expect("configured");
        cache.store(
            "a",
            entry("/a", 100, Some(("accept-language", "de")), &["x"]),
        );
        cache.store("b", entry("/b", 100, None, &["y"]));
        // The writes run on the blocking pool: wait until both files are there.
        for _ in 0..500 {
            if cache.disk_bytes() > 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop((cache, first));
        // A new cache on the same directory (a restart) finds them.
        let second = HttpCache::new(1 << 30, Some(dir.path().to_path_buf()));
        second.configure(&[("t".into(), with_disk)]);
        let cache = second.tenant("t").expect("configured");
        let mut de = HeaderMap::new();
        de.insert("accept-language", "de".parse().expect("value"));
        let found = cache.lookup("a", &de).await.expect("from disk");
        assert_eq!(found.body.len(), 100);
        assert_eq!(found.freshness(Instant::now()), Freshness::Fresh);
        assert!(
            cache.lookup("a", &HeaderMap::new()).await.is_none(),
            "other variant"
        );
        let before = cache.disk_bytes();
        cache.purge(&Purge::parse_tags(&["y".into()]));
        assert!(cache.lookup("b", &HeaderMap::new()).await.is_none());
        let after = cache.disk_bytes();
        assert!(
            after > 0 && after < before,
            "{before} -> {after}: b's file is gone"
        );
    }
}
