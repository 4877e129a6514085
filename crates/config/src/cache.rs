//! `cache = { … }` on a tenant: the node's HTTP cache in front of its guest, and
//! `[node] cache_memory`, the bound on every tenant's cache together.

use std::time::Duration;

use toml::Spanned;

use crate::limits::size;
use crate::raw::RawCache;
use crate::{ConfigError, Validator, parse_duration};

/// Memory for all tenants' caches when `[node] cache_memory` is not set.
pub const DEFAULT_CACHE_MEMORY: u64 = 256 << 20;
/// One tenant's cache when its `cache.max_size` is not set.
pub const DEFAULT_CACHE_MAX_SIZE: u64 = 32 << 20;
/// The largest response stored when `cache.max_object` is not set.
pub const DEFAULT_CACHE_MAX_OBJECT: u64 = 8 << 20;
/// How long concurrent misses wait for the first one (nginx's `proxy_cache_lock_timeout`).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// A tenant's response cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// The tenant has a cache (a `cache` table): its guests may use the Cache API and
    /// cached fetches.
    pub declared: bool,
    /// Serve cacheable responses from the cache without running the guest.
    pub enabled: bool,
    /// Bytes of this tenant's entries (bodies and headers).
    pub max_size: u64,
    /// Responses larger than this pass through uncached.
    pub max_object: u64,
    /// Bytes of the disk tier under `data_dir/cache/<tenant>/`, which survives restarts;
    /// 0 (the default) for memory only.
    pub disk: u64,
    /// Used when a response's `Cache-Control` has no `stale-while-revalidate`.
    pub stale_while_revalidate: Duration,
    /// Used when a response's `Cache-Control` has no `stale-if-error`.
    pub stale_if_error: Duration,
    /// Keep entries across deploys (the key then leaves out the component's version).
    pub cross_version: bool,
    /// Shorten each entry's freshness by a random fraction up to this (0 to 0.5), so
    /// entries stored together do not expire together.
    pub jitter: f64,
    /// How long a miss waits for a concurrent miss of the same key before going on alone.
    pub lock_timeout: Duration,
}

impl Eq for CacheConfig {}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            declared: false,
            enabled: false,
            max_size: DEFAULT_CACHE_MAX_SIZE,
            max_object: DEFAULT_CACHE_MAX_OBJECT,
            disk: 0,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            cross_version: false,
            jitter: 0.0,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

impl Validator<'_> {
    pub(crate) fn cache(
        &self,
        raw: Option<Spanned<RawCache>>,
        errors: &mut Vec<ConfigError>,
    ) -> CacheConfig {
        let mut cache = CacheConfig::default();
        let Some(raw) = raw.map(Spanned::into_inner) else {
            return cache;
        };
        cache.declared = true;
        cache.enabled = raw.enabled.is_some_and(Spanned::into_inner);
        cache.cross_version = raw.cross_version.is_some_and(Spanned::into_inner);
        let mut bytes = |value: Option<Spanned<crate::raw::SizeValue>>, key, into: &mut u64| {
            if let Some(value) = value {
                match size(value.get_ref()) {
                    Ok(0) => errors.push(self.error(&value, key, "must be above 0")),
                    Ok(n) => *into = n,
                    Err(message) => errors.push(self.error(&value, key, message)),
                }
            }
        };
        bytes(raw.max_size, "cache.max_size", &mut cache.max_size);
        bytes(raw.max_object, "cache.max_object", &mut cache.max_object);
        if let Some(value) = raw.disk {
            match size(value.get_ref()) {
                Ok(n) => cache.disk = n,
                Err(message) => errors.push(self.error(&value, "cache.disk", message)),
            }
        }
        let mut duration = |value: Option<Spanned<String>>, key, into: &mut Duration| {
            if let Some(value) = value {
                match parse_duration(value.get_ref()) {
                    Ok(d) => *into = d,
                    Err(message) => errors.push(self.error(&value, key, message)),
                }
            }
        };
        duration(
            raw.stale_while_revalidate,
            "cache.stale_while_revalidate",
            &mut cache.stale_while_revalidate,
        );
        duration(
            raw.stale_if_error,
            "cache.stale_if_error",
            &mut cache.stale_if_error,
        );
        duration(
            raw.lock_timeout,
            "cache.lock_timeout",
            &mut cache.lock_timeout,
        );
        if let Some(jitter) = raw.jitter {
            if (0.0..=0.5).contains(jitter.get_ref()) {
                cache.jitter = *jitter.get_ref();
            } else {
                errors.push(self.error(&jitter, "cache.jitter", "a fraction from 0 to 0.5"));
            }
        }
        cache
    }
}
