//! `outpost:edge/cache`: Workers' Cache API on the node's HTTP cache. Guests put
//! responses under URLs and match later requests against them; the entries share the
//! tenant's cache (and its size bound) with the cache in front of the guest, under keys of
//! their own (`api <url>`), which no deploy changes.
//!
//! The four parts, as for every capability: [`CacheCtx`] (the tenant's cache, if enabled),
//! [`CacheCtxView`], [`CacheView`] and [`add_to_linker`].

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use outpost_cache::{Entry, Freshness, TenantCache, Verdict, conditional, policy};
use wasmtime::component::{HasData, Linker};

use crate::generated::outpost::edge::cache::{CacheRequest, CachedResponse, Host};
use crate::{EdgeError, EdgeResult};

/// One tenant's access to its cache.
pub struct CacheCtx {
    tenant: String,
    cache: Option<Arc<TenantCache>>,
}

impl CacheCtx {
    /// `cache` is the tenant's cache, or `None` when it is not enabled.
    pub fn new(tenant: &str, cache: Option<Arc<TenantCache>>) -> CacheCtx {
        CacheCtx {
            tenant: tenant.to_string(),
            cache,
        }
    }

    /// The tenant's cache, for cached outbound fetches.
    pub fn tenant_cache(&self) -> Option<&Arc<TenantCache>> {
        self.cache.as_ref()
    }
}

/// What a cache host call sees.
pub struct CacheCtxView<'a> {
    pub ctx: &'a CacheCtx,
}

/// Implemented by store data that offers the `cache` interface.
pub trait CacheView: Send {
    fn cache(&mut self) -> CacheCtxView<'_>;
}

struct HasCache;

impl HasData for HasCache {
    type Data<'a> = CacheCtxView<'a>;
}

/// Adds `outpost:edge/cache` to `linker`.
pub fn add_to_linker<T: CacheView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    crate::generated::outpost::edge::cache::add_to_linker::<T, HasCache>(linker, T::cache)
}

crate::error::convert_edge_errors!(CacheCtxView<'_>);

impl CacheCtxView<'_> {
    fn store(&self) -> EdgeResult<&TenantCache> {
        self.ctx.cache.as_deref().ok_or_else(|| {
            crate::ErrorCode::NoSuchBinding(format!(
                "tenant `{}` has no cache; add cache = {{ max_size = \"32MiB\" }} (or {{ enabled = true }} to cache its responses too) to its config",
                self.ctx.tenant
            ))
            .into()
        })
    }
}

/// A request as the cache policy reads it, and its key.
struct Parsed {
    parts: http::request::Parts,
    key: String,
    host: String,
    path: String,
}

fn parse(request: CacheRequest) -> EdgeResult<Parsed> {
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|_| EdgeError::invalid(format!("`{}` is not an HTTP method", request.method)))?;
    let uri: http::Uri = request
        .url
        .parse()
        .map_err(|e| EdgeError::invalid(format!("`{}` is not a URL: {e}", request.url)))?;
    let Some(host) = uri.host().map(str::to_ascii_lowercase) else {
        return Err(EdgeError::invalid(format!(
            "`{}` is not an absolute URL; the cache is keyed by https://host/path",
            request.url
        )));
    };
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method;
    parts.headers = headers(request.headers)?;
    if let Ok(value) = HeaderValue::from_str(&host) {
        parts.headers.insert(header::HOST, value);
    }
    parts.uri = uri;
    Ok(Parsed {
        key: format!("api {}", request.url),
        parts,
        host,
        path,
    })
}

fn headers(list: Vec<(String, Vec<u8>)>) -> EdgeResult<HeaderMap> {
    let mut headers = HeaderMap::new();
    for (name, value) in list {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| EdgeError::invalid(format!("`{name}` is not a header name")))?;
        let value = HeaderValue::from_bytes(&value)
            .map_err(|_| EdgeError::invalid(format!("the value of `{name}` is not valid")))?;
        headers.append(name, value);
    }
    Ok(headers)
}

fn header_list(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect()
}

impl Host for CacheCtxView<'_> {
    async fn match_(&mut self, request: CacheRequest) -> EdgeResult<Option<CachedResponse>> {
        let cache = self.store()?;
        let request = parse(request)?;
        if request.parts.method != Method::GET {
            return Ok(None);
        }
        let Some(entry) = cache.lookup(&request.key, &request.parts.headers).await else {
            return Ok(None);
        };
        if entry.freshness(Instant::now()) != Freshness::Fresh {
            return Ok(None);
        }
        Ok(Some(answer(&entry, &request.parts.headers)))
    }

    async fn put(&mut self, request: CacheRequest, response: CachedResponse) -> EdgeResult<bool> {
        let cache = self.store()?;
        let request = parse(request)?;
        if request.parts.method != Method::GET {
            return Err(EdgeError::invalid(format!(
                "cache.put stores GET requests only, not {}",
                request.parts.method
            )));
        }
        let status = StatusCode::from_u16(response.status)
            .map_err(|_| EdgeError::invalid(format!("{} is not a status", response.status)))?;
        let mut parts = http::Response::new(()).into_parts().0;
        parts.status = status;
        parts.headers = headers(response.headers)?;
        if status == StatusCode::PARTIAL_CONTENT {
            return Err(EdgeError::invalid("cache.put does not store 206 responses"));
        }
        if parts.headers.get_all(header::VARY).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|i| i.trim() == "*"))
        }) {
            return Err(EdgeError::invalid(
                "cache.put does not store a response with Vary: *",
            ));
        }
        let max = cache.settings().max_object;
        if response.body.len() as u64 > max {
            return Err(EdgeError::limit(
                "cache.max_object",
                format!(
                    "the body is {} bytes; the tenant's cache stores objects up to {max} bytes",
                    response.body.len()
                ),
            ));
        }
        let lifetimes = match policy::judge(
            &request.parts,
            &parts,
            Default::default(),
            SystemTime::now(),
        ) {
            Verdict::Store(lifetimes) => lifetimes,
            Verdict::Pass(reason) => {
                tracing::debug!(key = request.key, reason, "cache.put: not stored");
                return Ok(false);
            }
        };
        let entry = Entry::new(
            &parts,
            Bytes::from(response.body),
            &request.parts.headers,
            request.host,
            request.path,
            cache.jittered(lifetimes),
        );
        cache.store(&request.key, entry);
        Ok(true)
    }

    async fn delete(&mut self, request: CacheRequest) -> EdgeResult<bool> {
        let cache = self.store()?;
        let request = parse(request)?;
        Ok(cache.remove(&request.key))
    }
}

/// The entry as a response to a request with `headers`: 304, 206 or 416 when they ask.
fn answer(entry: &Entry, headers: &HeaderMap) -> CachedResponse {
    let etag = entry
        .headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok());
    let modified = entry
        .headers
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let mut out = entry.served_headers(Instant::now());
    let respond = |status: StatusCode, mut out: HeaderMap, body: Bytes| {
        out.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        CachedResponse {
            status: status.as_u16(),
            headers: header_list(&out),
            body: body.to_vec(),
        }
    };
    if entry.status == StatusCode::OK {
        if conditional::not_modified(headers, etag, modified) {
            out.remove(header::CONTENT_LENGTH);
            return CachedResponse {
                status: 304,
                headers: header_list(&out),
                body: Vec::new(),
            };
        }
        let len = entry.body.len() as u64;
        let range = headers
            .get(header::RANGE)
            .filter(|_| conditional::if_range_holds(headers, etag, modified))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| conditional::byte_range(v, len));
        match range {
            Some(Ok(range)) => {
                let content_range = format!("bytes {}-{}/{len}", range.start(), range.end());
                if let Ok(value) = HeaderValue::from_str(&content_range) {
                    out.insert(header::CONTENT_RANGE, value);
                }
                let (start, end) = (*range.start() as usize, *range.end() as usize + 1);
                return respond(
                    StatusCode::PARTIAL_CONTENT,
                    out,
                    entry.body.slice(start..end),
                );
            }
            Some(Err(())) => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    out.insert(header::CONTENT_RANGE, value);
                }
                return respond(StatusCode::RANGE_NOT_SATISFIABLE, out, Bytes::new());
            }
            None => {}
        }
    }
    respond(entry.status, out, entry.body.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> CacheRequest {
        CacheRequest {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn without_a_cache_the_guest_is_told_how_to_declare_one() {
        let ctx = CacheCtx::new("shop", None);
        let mut view = CacheCtxView { ctx: &ctx };
        let error = view
            .match_(request("https://shop.test/"))
            .await
            .unwrap_err();
        let Some(crate::ErrorCode::NoSuchBinding(text)) = error.code() else {
            panic!("{error:?}")
        };
        assert!(text.contains("cache = {"), "{text}");
    }

    #[tokio::test]
    async fn put_refuses_what_the_cache_api_refuses_and_match_finds_what_it_stored() {
        let caches = outpost_cache::HttpCache::new(1 << 20, None);
        caches.configure(&[(
            "shop".into(),
            outpost_cache::Settings {
                capacity: 1 << 20,
                max_object: 16,
                stale: Default::default(),
                jitter: 0.0,
                lock_timeout: std::time::Duration::from_secs(1),
                cross_version: false,
                disk: 0,
            },
        )]);
        let ctx = CacheCtx::new("shop", caches.tenant("shop"));
        let mut view = CacheCtxView { ctx: &ctx };
        let response = |status: u16, headers: &[(&str, &str)], body: &[u8]| CachedResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: body.to_vec(),
        };
        let fresh = [("cache-control", "max-age=60")];
        let mut post = request("https://shop.test/a");
        post.method = "POST".into();
        for (request, response) in [
            (post, response(200, &fresh, b"x")),
            (request("https://shop.test/a"), response(206, &fresh, b"x")),
            (
                request("https://shop.test/a"),
                response(200, &[("cache-control", "max-age=60"), ("vary", "*")], b"x"),
            ),
            (request("/relative"), response(200, &fresh, b"x")),
        ] {
            let error = view.put(request, response).await.unwrap_err();
            assert!(
                matches!(error.code(), Some(crate::ErrorCode::InvalidArgument(_))),
                "{error:?}"
            );
        }
        let too_big = view
            .put(
                request("https://shop.test/a"),
                response(200, &fresh, &[0; 17]),
            )
            .await
            .unwrap_err();
        assert!(matches!(
            too_big.code(),
            Some(crate::ErrorCode::LimitExceeded(_))
        ));
        assert!(
            !view
                .put(request("https://shop.test/a"), response(200, &[], b"x"))
                .await
                .expect("put"),
            "no freshness: not stored"
        );
        assert!(
            view.put(
                request("https://shop.test/a"),
                response(200, &fresh, b"hello")
            )
            .await
            .expect("put")
        );
        let found = view
            .match_(request("https://shop.test/a"))
            .await
            .expect("match")
            .expect("stored");
        assert_eq!(found.body, b"hello");
        assert!(
            view.delete(request("https://shop.test/a"))
                .await
                .expect("delete")
        );
        assert!(
            view.match_(request("https://shop.test/a"))
                .await
                .expect("match")
                .is_none()
        );
    }
}
