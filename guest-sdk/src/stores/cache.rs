//! The node's HTTP cache, as Workers' Cache API (`caches.default`) gives it, and the cache
//! options of an outbound fetch (Workers' `cf: { cacheTtl, … }`).
//!
//! ```ignore
//! let cache = env.cache();
//! if let Some(hit) = cache.lookup(&req).await? {
//!     return Ok(hit);
//! }
//! let fresh = env.fetch(req.forward_to(origin)?).await?;
//! let body = fresh.read_bytes().await?;
//! let answer = Response::bytes(body).with_header("cache-control", "public, max-age=60");
//! cache.put(url, answer).await?;
//! ```

use super::store_error;
use super::wit::outpost::edge::cache as host;
use crate::{Request, Response, Result};

/// The tenant's cache (`env.cache()`); needs `cache = { enabled = true }` on the tenant.
#[derive(Clone, Copy, Default)]
pub struct Cache;

impl Cache {
    /// The fresh stored response for `url` (`https://host/path?query`), if any.
    pub async fn get(&self, url: &str) -> Result<Option<Response>> {
        self.matching(url, Vec::new())
    }

    /// The fresh stored response for `request` (its URL, and its headers for `Vary`,
    /// `Range`, `If-None-Match` and `If-Modified-Since`: a `206`, `416` or `304` may come
    /// back).
    pub async fn lookup(&self, request: &Request) -> Result<Option<Response>> {
        self.matching(&request.uri().to_string(), header_list(request.headers()))
    }

    /// Stores `response` under `url` for `GET`s; `false` when its headers say not to
    /// store it (no freshness, `no-store`, `private`, `Set-Cookie`). The body is read.
    pub async fn put(&self, url: &str, response: Response) -> Result<bool> {
        let status = response.status();
        let headers = header_list(response.headers());
        let body = response.read_bytes().await?;
        let request = host::CacheRequest {
            method: "GET".into(),
            url: url.to_string(),
            headers: Vec::new(),
        };
        let response = host::CachedResponse {
            status,
            headers,
            body,
        };
        host::put(&request, &response).map_err(|e| store_error(format_args!("cache.put {url}"), e))
    }

    /// Removes what is stored for `url`; whether there was something.
    pub async fn delete(&self, url: &str) -> Result<bool> {
        let request = host::CacheRequest {
            method: "GET".into(),
            url: url.to_string(),
            headers: Vec::new(),
        };
        host::delete(&request).map_err(|e| store_error(format_args!("cache.delete {url}"), e))
    }

    fn matching(&self, url: &str, headers: Vec<(String, Vec<u8>)>) -> Result<Option<Response>> {
        let request = host::CacheRequest {
            method: "GET".into(),
            url: url.to_string(),
            headers,
        };
        let found = host::match_(&request)
            .map_err(|e| store_error(format_args!("cache.match {url}"), e))?;
        Ok(found.map(|stored| {
            let mut response = Response::bytes(stored.body).with_status(stored.status);
            for (name, value) in stored.headers {
                if let Ok(value) = String::from_utf8(value) {
                    response = response.with_header(&name, value);
                }
            }
            response
        }))
    }
}

fn header_list(headers: &crate::HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect()
}

/// How an outbound `GET` uses the tenant's cache (`req.with_cache(CacheOptions::origin())`).
/// The response's `x-outpost-cache` header says `HIT`, `MISS`, `EXPIRED` or `STALE`.
#[derive(Debug, Clone, Default)]
pub struct CacheOptions {
    ttl: Option<u64>,
    by_status: Vec<String>,
    everything: bool,
    key: Option<String>,
}

impl CacheOptions {
    /// Through the cache, as the origin's `Cache-Control` says.
    pub fn origin() -> CacheOptions {
        CacheOptions::default()
    }

    /// Keep the response `seconds`, whatever the origin says (`cacheTtl`; 0: not at all).
    pub fn ttl(mut self, seconds: u64) -> CacheOptions {
        self.ttl = Some(seconds);
        self
    }

    /// Keep responses whose status is in `statuses` (`"200-299"`, `"404"`) for `seconds`
    /// (`cacheTtlByStatus`); checked before [`CacheOptions::ttl`].
    pub fn ttl_by_status(mut self, statuses: &str, seconds: u64) -> CacheOptions {
        self.by_status.push(format!("{statuses}={seconds}"));
        self
    }

    /// Keep responses without freshness headers too, for the CDN default lifetimes
    /// (`cacheEverything`: 200 and 301 two hours, 302 and 303 twenty minutes, 404 and 410
    /// three minutes).
    pub fn everything(mut self) -> CacheOptions {
        self.everything = true;
        self
    }

    /// Store under `key` instead of the URL (`cacheKey`).
    pub fn key(mut self, key: impl Into<String>) -> CacheOptions {
        self.key = Some(key.into());
        self
    }

    /// The request headers that carry these options to the node (which removes them).
    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("x-outpost-cache-fetch", "true".to_string())];
        if let Some(ttl) = self.ttl {
            headers.push(("x-outpost-cache-ttl", ttl.to_string()));
        }
        if !self.by_status.is_empty() {
            headers.push(("x-outpost-cache-ttl-by-status", self.by_status.join(", ")));
        }
        if self.everything {
            headers.push(("x-outpost-cache-everything", "true".to_string()));
        }
        if let Some(key) = &self.key {
            headers.push(("x-outpost-cache-key", key.clone()));
        }
        headers
    }
}
