//! One tenant's cache: its variants per key in a moka store weighed in bytes, its
//! collapsed fetches, and the disk tier behind it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use moka::notification::RemovalCause;
use prometheus_client::metrics::counter::Counter;

use crate::entry::{Entry, Freshness};
use crate::flight::{Flights, Joined, Leader};
use crate::policy::Lifetimes;
use crate::purge::Purge;
use crate::{Settings, Status, disk};

/// Variants kept per key (one per combination of `Vary` header values).
const MAX_VARIANTS: usize = 8;
/// How long an entry is kept after it may no longer be served, so its next fetch is
/// reported as `EXPIRED` rather than `MISS`.
const KEEP_EXPIRED: Duration = Duration::from_secs(10);

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
    flights: Arc<Flights>,
    settings: Settings,
    meters: TenantMeters,
}

#[derive(Clone)]
pub(crate) struct TenantMeters {
    /// By [`Status`], in declaration order.
    pub(crate) by_status: [Counter; 6],
    pub(crate) collapsed: Counter,
    pub(crate) evictions: Counter,
}

impl TenantCache {
    pub(crate) fn new(
        settings: Settings,
        meters: TenantMeters,
        disk_dir: Option<PathBuf>,
    ) -> TenantCache {
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
    /// Joins (or leads) the fetch of `key` for a request with `headers`, after a lookup
    /// found nothing fresh. A lead taken just after another fetch stored the key answers
    /// [`Joined::Stored`] instead, so the key is never fetched twice in a row.
    pub async fn join(&self, key: &str, headers: &HeaderMap) -> Joined {
        match self.flights.join(key) {
            Joined::Lead(leader) => match self.fresh_since(key, headers).await {
                Some(entry) => {
                    leader.finish(Some(entry.clone()));
                    Joined::Stored(entry)
                }
                None => Joined::Lead(leader),
            },
            other => other,
        }
    }

    /// Leads a refresh of `key` unless one is running, or a refresh that just finished
    /// stored it fresh (then `Err` with that entry).
    pub async fn try_lead(
        &self,
        key: &str,
        headers: &HeaderMap,
    ) -> Option<Result<Leader, Arc<Entry>>> {
        let leader = self.flights.try_lead(key)?;
        match self.fresh_since(key, headers).await {
            Some(entry) => {
                leader.finish(Some(entry.clone()));
                Some(Err(entry))
            }
            None => Some(Ok(leader)),
        }
    }

    async fn fresh_since(&self, key: &str, headers: &HeaderMap) -> Option<Arc<Entry>> {
        self.lookup(key, headers)
            .await
            .filter(|entry| entry.freshness(Instant::now()) == Freshness::Fresh)
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
