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

mod node;
mod tenant;

use std::time::Duration;

pub use entry::{Entry, Freshness};
pub use flight::{Follower, Joined, Leader};
pub use node::HttpCache;
pub use policy::{Lifetimes, StaleDefaults, Verdict};
pub use purge::Purge;
pub use tenant::TenantCache;

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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::HeaderMap;
    use std::time::Instant;

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
