//! Cached outbound fetches: a tenant with `cache = { enabled = true }` can keep origins'
//! answers to its guests' `GET`s in its cache, as Workers' `fetch` does through the zone
//! cache. A guest asks for it per request, with request headers (Workers' `cf` options,
//! which wasi:http has no place for) that the node removes before the request leaves; the
//! origin's `Cache-Control` decides unless an option overrides it:
//!
//! | header | Workers | meaning |
//! |---|---|---|
//! | `x-outpost-cache-fetch: true` | (the default) | through the cache; the origin's headers decide |
//! | `x-outpost-cache-ttl: 300` | `cacheTtl` | store for this long, whatever the origin says (0: do not store) |
//! | `x-outpost-cache-ttl-by-status: 200-299=86400, 404=1, 500-599=0` | `cacheTtlByStatus` | the same, by status |
//! | `x-outpost-cache-everything: true` | `cacheEverything` | store responses without freshness headers too, for the CDN default lifetimes |
//! | `x-outpost-cache-key: products:17` | `cacheKey` | the key instead of the URL |
//!
//! Concurrent misses for one key send one request; `Set-Cookie` and `206` answers are never
//! stored. The guest's response says `x-outpost-cache: HIT | MISS | EXPIRED | STALE`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use outpost_cache::body::{Read, chained, read_up_to};
use outpost_cache::{Entry, Freshness, Joined, Lifetimes, TenantCache, Verdict, policy};
use wasmtime_wasi_http::{Error, WasiBody};

use super::OutboundClient;

pub const CACHE_FETCH: &str = "x-outpost-cache-fetch";
pub const CACHE_TTL: &str = "x-outpost-cache-ttl";
pub const CACHE_TTL_BY_STATUS: &str = "x-outpost-cache-ttl-by-status";
pub const CACHE_EVERYTHING: &str = "x-outpost-cache-everything";
pub const CACHE_KEY: &str = "x-outpost-cache-key";
/// The response header telling the guest how the cache took part.
pub const CACHE_STATUS: &str = "x-outpost-cache";

/// What the guest asked of the cache for one request.
#[derive(Debug, Default, PartialEq)]
struct Options {
    /// Whether the guest asked for the cache at all.
    requested: bool,
    ttl: Option<Duration>,
    by_status: Vec<(u16, u16, Duration)>,
    everything: bool,
    key: Option<String>,
}

impl Options {
    /// Takes the options out of `headers`.
    fn take(headers: &mut HeaderMap) -> Result<Options, Error> {
        let mut text = |name: &str| {
            headers
                .remove(name)
                .map(|v| v.to_str().map(str::to_string))
                .transpose()
                .map_err(|_| Error::InternalError(Some(format!("{name} is not text"))))
        };
        let ttl = text(CACHE_TTL)?
            .map(|v| seconds(&v, CACHE_TTL))
            .transpose()?;
        let by_status = match text(CACHE_TTL_BY_STATUS)? {
            None => Vec::new(),
            Some(spec) => by_status(&spec)?,
        };
        let everything =
            text(CACHE_EVERYTHING)?.is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        let key = text(CACHE_KEY)?;
        let fetch = text(CACHE_FETCH)?.is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        Ok(Options {
            requested: fetch
                || everything
                || key.is_some()
                || ttl.is_some()
                || !by_status.is_empty(),
            ttl,
            by_status,
            everything,
            key,
        })
    }

    /// A lifetime forced for `status`, if the guest gave one.
    fn forced(&self, status: u16) -> Option<Duration> {
        self.by_status
            .iter()
            .find(|(low, high, _)| (*low..=*high).contains(&status))
            .map(|(_, _, ttl)| *ttl)
            .or(self.ttl)
    }
}

fn seconds(text: &str, name: &str) -> Result<Duration, Error> {
    text.trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| Error::InternalError(Some(format!("{name}: `{text}` is not whole seconds"))))
}

/// `200-299=86400, 404=1, 500-599=0`.
fn by_status(spec: &str) -> Result<Vec<(u16, u16, Duration)>, Error> {
    spec.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let bad = || {
                Error::InternalError(Some(format!(
                    "{CACHE_TTL_BY_STATUS}: `{item}` is not STATUS=SECONDS or LOW-HIGH=SECONDS"
                )))
            };
            let (statuses, ttl) = item.split_once('=').ok_or_else(bad)?;
            let (low, high) = match statuses.trim().split_once('-') {
                Some((low, high)) => (low.trim(), high.trim()),
                None => (statuses.trim(), statuses.trim()),
            };
            let low = low.parse::<u16>().map_err(|_| bad())?;
            let high = high.parse::<u16>().map_err(|_| bad())?;
            Ok((low, high, seconds(ttl, CACHE_TTL_BY_STATUS)?))
        })
        .collect()
}

/// Lifetimes for statuses when `cache-everything` finds no freshness headers
/// (Cloudflare's default edge TTLs).
fn default_lifetime(status: u16) -> Option<Duration> {
    match status {
        200 | 301 => Some(Duration::from_secs(120 * 60)),
        302 | 303 => Some(Duration::from_secs(20 * 60)),
        404 | 410 => Some(Duration::from_secs(3 * 60)),
        _ => None,
    }
}

/// `request` without the cache options (a tenant without a cache ignores them).
pub(super) fn without_options(mut request: http::Request<WasiBody>) -> http::Request<WasiBody> {
    for name in [
        CACHE_FETCH,
        CACHE_TTL,
        CACHE_TTL_BY_STATUS,
        CACHE_EVERYTHING,
        CACHE_KEY,
    ] {
        request.headers_mut().remove(name);
    }
    request
}

/// Sends `request` through `cache` (the tenant has one), or straight on for anything but
/// a `GET`.
pub(super) async fn send(
    client: Arc<OutboundClient>,
    cache: Arc<TenantCache>,
    mut request: http::Request<WasiBody>,
    first_byte: Option<Duration>,
) -> Result<http::Response<WasiBody>, Error> {
    let options = Options::take(request.headers_mut())?;
    if !options.requested || request.method() != Method::GET {
        return client.send(request, first_byte).await;
    }
    let url = request.uri().to_string();
    let key = format!("fetch {}", options.key.as_deref().unwrap_or(&url));
    let stored = cache.lookup(&key, request.headers()).await;
    let freshness = stored.as_ref().map(|e| e.freshness(Instant::now()));
    if let (Some(entry), Some(Freshness::Fresh)) = (&stored, freshness) {
        return Ok(respond(&entry.clone(), "HIT"));
    }
    let stale = stored.filter(|_| {
        matches!(
            freshness,
            Some(Freshness::Revalidate) | Some(Freshness::IfError)
        )
    });
    let fetched = if freshness.is_some() {
        "EXPIRED"
    } else {
        "MISS"
    };
    let leader = match cache.join(&key, request.headers()).await {
        Joined::Lead(leader) => Some(leader),
        Joined::Stored(entry) => return Ok(respond(&entry, "HIT")),
        Joined::Follow(follower) => {
            cache.count_collapsed();
            match follower.wait(cache.settings().lock_timeout).await {
                Some(entry) => return Ok(respond(&entry, fetched)),
                None => None,
            }
        }
    };
    let (parts, body) = request.into_parts();
    let sent = client
        .send(http::Request::from_parts(parts.clone(), body), first_byte)
        .await;
    let response = match (sent, &stale) {
        (Ok(response), Some(stale)) if response.status().is_server_error() => {
            drop(leader);
            return Ok(respond(stale, "STALE"));
        }
        (Err(_), Some(stale)) => {
            drop(leader);
            return Ok(respond(stale, "STALE"));
        }
        (result, _) => result?,
    };
    let (mut head, body) = response.into_parts();
    let Some(lifetimes) = lifetimes(&options, &parts, &head) else {
        drop(leader);
        mark(&mut head.headers, fetched);
        return Ok(http::Response::from_parts(head, body));
    };
    let bytes = match read_up_to(body, cache.settings().max_object).await? {
        Read::Whole(bytes) => bytes,
        Read::Over { head: read, rest } => {
            drop(leader);
            mark(&mut head.headers, fetched);
            return Ok(http::Response::from_parts(head, chained(read, rest)));
        }
    };
    let host = parts.uri.host().unwrap_or_default().to_ascii_lowercase();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let entry = Entry::new(
        &head,
        bytes,
        &parts.headers,
        host,
        path,
        cache.jittered(lifetimes),
    );
    let entry = cache.store(&key, entry);
    if let Some(leader) = leader {
        leader.finish(Some(entry.clone()));
    }
    Ok(respond(&entry, fetched))
}

/// How long the response may be kept, if at all.
fn lifetimes(
    options: &Options,
    request: &http::request::Parts,
    response: &http::response::Parts,
) -> Option<Lifetimes> {
    let status = response.status.as_u16();
    if response.status == StatusCode::PARTIAL_CONTENT
        || response.headers.contains_key(header::SET_COOKIE)
    {
        return None;
    }
    let forced = |fresh: Duration| {
        (!fresh.is_zero()).then(|| Lifetimes {
            fresh,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            tags: policy::tags(&response.headers),
        })
    };
    if let Some(ttl) = options.forced(status) {
        return forced(ttl);
    }
    match policy::judge(request, response, Default::default(), SystemTime::now()) {
        Verdict::Store(lifetimes) => Some(lifetimes),
        Verdict::Pass("no explicit freshness") if options.everything => {
            default_lifetime(status).and_then(forced)
        }
        Verdict::Pass(_) => None,
    }
}

fn respond(entry: &Entry, status: &'static str) -> http::Response<WasiBody> {
    let mut response = http::Response::new(
        Full::new(entry.body.clone())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = entry.status;
    *response.headers_mut() = entry.served_headers(Instant::now());
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
    mark(response.headers_mut(), status);
    response
}

fn mark(headers: &mut HeaderMap, status: &'static str) {
    headers.insert(CACHE_STATUS, HeaderValue::from_static(status));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_out_of_the_request_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_TTL, HeaderValue::from_static("300"));
        headers.insert(
            CACHE_TTL_BY_STATUS,
            HeaderValue::from_static("200-299=86400, 404=1, 500-599=0"),
        );
        headers.insert(CACHE_KEY, HeaderValue::from_static("products:17"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        let options = Options::take(&mut headers).expect("options");
        assert_eq!(headers.len(), 1, "only accept is left");
        assert_eq!(options.forced(204), Some(Duration::from_secs(86400)));
        assert_eq!(options.forced(404), Some(Duration::from_secs(1)));
        assert_eq!(options.forced(503), Some(Duration::ZERO));
        assert_eq!(options.forced(301), Some(Duration::from_secs(300)));
        assert_eq!(options.key.as_deref(), Some("products:17"));
        assert!(options.requested);
        let mut plain = HeaderMap::new();
        assert!(!Options::take(&mut plain).expect("none").requested);
        let mut bad = HeaderMap::new();
        bad.insert(CACHE_TTL_BY_STATUS, HeaderValue::from_static("ok=5"));
        assert!(Options::take(&mut bad).is_err());
    }
}
