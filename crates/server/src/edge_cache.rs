//! The cache in front of a tenant's guest (`cache = { enabled = true }`): cacheable
//! responses are served by the node without running the guest.
//!
//! The key is the tenant's deployed version (unless `cross_version`), the host and the
//! path with its query; `Vary` picks among variants. `GET` and `HEAD` share entries;
//! other methods, and requests with `Authorization` or `Range`, pass through. Concurrent
//! misses for one key run the guest once and the others wait for it (up to
//! `lock_timeout`); an uncacheable answer releases them at once. A stale entry within its
//! `stale-while-revalidate` window is served while exactly one background run refreshes
//! it; within `stale-if-error`, a failing guest (5xx) gets the stale copy served instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use outpost_cache::body::{Read, chained, read_up_to};
use outpost_cache::policy::{CACHE_TAG, SURROGATE_CONTROL, judge};
use outpost_cache::{Entry, Freshness, Joined, Leader, Status, TenantCache, Verdict};
use outpost_runtime::WasiBody;

use crate::router::normalize_host;
use crate::{Node, REQUEST_ID_HEADER, request_id, responses};

/// Response header naming how the cache took part.
pub const CACHE_STATUS_HEADER: &str = "x-outpost-cache";

impl Node {
    /// Answers `request` for tenant `index` from its cache, or through its guest.
    pub(crate) async fn through_cache(
        self: &Arc<Self>,
        index: usize,
        cache: &Arc<TenantCache>,
        host: &str,
        id: &str,
        request: Request<WasiBody>,
        peer: SocketAddr,
    ) -> http::Response<WasiBody> {
        let cacheable_request = (request.method() == Method::GET
            || request.method() == Method::HEAD)
            && !request.headers().contains_key(header::AUTHORIZATION)
            && !request.headers().contains_key(header::RANGE);
        if !cacheable_request {
            let response = self.run(index, id, request, peer).await;
            return labelled(cache, response, Status::Bypass);
        }
        let key = self.cache_key(index, cache, host, request.uri());
        let now = Instant::now();
        let stored = cache.lookup(&key, request.headers()).await;
        let freshness = stored.as_ref().map(|entry| entry.freshness(now));
        match (&stored, freshness) {
            (Some(entry), Some(Freshness::Fresh)) => {
                return from_entry(cache, entry, &request, Status::Hit);
            }
            (Some(entry), Some(Freshness::Revalidate)) => {
                match cache.try_lead(&key, request.headers()).await {
                    Some(Ok(leader)) => {
                        self.refresh_in_background(index, cache, &key, &request, peer, leader)
                    }
                    Some(Err(fresh)) => return from_entry(cache, &fresh, &request, Status::Hit),
                    None => {}
                }
                return from_entry(cache, entry, &request, Status::Updating);
            }
            _ => {}
        }
        if request.method() == Method::HEAD {
            let response = self.run(index, id, request, peer).await;
            return labelled(cache, response, Status::Bypass);
        }
        let usable_on_error = stored.filter(|_| freshness == Some(Freshness::IfError));
        let fetched = if freshness.is_some() {
            Status::Expired
        } else {
            Status::Miss
        };
        let leader = match cache.join(&key, request.headers()).await {
            Joined::Lead(leader) => Some(leader),
            Joined::Stored(entry) => return from_entry(cache, &entry, &request, Status::Hit),
            Joined::Follow(follower) => {
                cache.count_collapsed();
                match (
                    follower.wait(cache.settings().lock_timeout).await,
                    &usable_on_error,
                ) {
                    (Some(entry), _) => return from_entry(cache, &entry, &request, fetched),
                    // The fetch failed: the stale copy rather than another try.
                    (None, Some(stale)) => {
                        return from_entry(cache, stale, &request, Status::Stale);
                    }
                    // Uncacheable, failed or too slow: this request goes on its own.
                    (None, None) => None,
                }
            }
        };
        let (parts, body) = request.into_parts();
        let response = self
            .run(index, id, Request::from_parts(parts.clone(), body), peer)
            .await;
        if response.status().is_server_error()
            && let Some(stale) = usable_on_error
        {
            tracing::warn!(tenant = %self.tenants[index].info().name, request_id = id, status = response.status().as_u16(), "guest failed; serving the stale copy (stale-if-error)");
            drop(leader);
            return from_entry(
                cache,
                &stale,
                &Request::from_parts(parts, ()),
                Status::Stale,
            );
        }
        let (stored, response) = store(cache, &key, host, &parts, response).await;
        match stored {
            Some(entry) => {
                if let Some(leader) = leader {
                    leader.finish(Some(entry.clone()));
                }
                from_entry(cache, &entry, &Request::from_parts(parts, ()), fetched)
            }
            None => {
                drop(leader);
                labelled(cache, response, fetched)
            }
        }
    }

    fn cache_key(&self, index: usize, cache: &TenantCache, host: &str, uri: &http::Uri) -> String {
        let version = if cache.settings().cross_version {
            ""
        } else {
            &self.tenants[index].info().component_hash[..16]
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        format!("{version} {} {path}", normalize_host(host))
    }

    /// Runs the guest again for a stale entry's key and stores what it answers; the
    /// client has been served the stale copy already.
    fn refresh_in_background(
        self: &Arc<Self>,
        index: usize,
        cache: &Arc<TenantCache>,
        key: &str,
        request: &Request<WasiBody>,
        peer: SocketAddr,
        leader: Leader,
    ) {
        let node = self.clone();
        let cache = cache.clone();
        let key = key.to_string();
        let host = key.split(' ').nth(1).unwrap_or_default().to_string();
        let mut parts = Request::new(()).into_parts().0;
        parts.method = Method::GET;
        parts.uri = request.uri().clone();
        parts.headers = request.headers().clone();
        let id = request_id(None);
        if let Ok(value) = HeaderValue::from_str(&id) {
            parts.headers.insert(REQUEST_ID_HEADER, value);
        }
        tokio::spawn(async move {
            let tenant = node.tenants[index].info().name.clone();
            tracing::debug!(%tenant, request_id = %id, key, "refreshing a stale entry");
            let request = Request::from_parts(parts.clone(), responses::body(Bytes::new()));
            let response = node.run(index, &id, request, peer).await;
            let status = response.status();
            let (stored, _) = store(&cache, &key, &host, &parts, response).await;
            if stored.is_none() {
                tracing::warn!(%tenant, request_id = %id, status = status.as_u16(), "the refresh was not cacheable; the stale copy stays until its window ends");
            }
            leader.finish(stored);
        });
    }
}

/// Stores `response` if it is cacheable; answers the entry, or the response (its body
/// intact) when nothing was stored.
async fn store(
    cache: &TenantCache,
    key: &str,
    host: &str,
    request: &http::request::Parts,
    response: http::Response<WasiBody>,
) -> (Option<Arc<Entry>>, http::Response<WasiBody>) {
    let (mut parts, body) = response.into_parts();
    let lifetimes = match judge(request, &parts, cache.settings().stale, SystemTime::now()) {
        Verdict::Store(lifetimes) => lifetimes,
        Verdict::Pass(reason) => {
            tracing::debug!(key, reason, "response not cached");
            strip_cdn_headers(&mut parts.headers);
            return (None, http::Response::from_parts(parts, body));
        }
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let max = cache.settings().max_object;
    if declared.is_some_and(|len| len > max) {
        strip_cdn_headers(&mut parts.headers);
        return (None, http::Response::from_parts(parts, body));
    }
    // Read up to the largest object; past it, send what was read and the rest as it comes.
    let read = match read_up_to(body, max).await {
        Ok(Read::Whole(bytes)) => bytes,
        Ok(Read::Over { head, rest }) => {
            strip_cdn_headers(&mut parts.headers);
            return (None, http::Response::from_parts(parts, chained(head, rest)));
        }
        Err(error) => {
            tracing::warn!(key, %error, "the guest's response body failed; not cached");
            return (
                None,
                responses::text(StatusCode::BAD_GATEWAY, "response body failed"),
            );
        }
    };
    let lifetimes = cache.jittered(lifetimes);
    let path = request.uri.path_and_query().map_or("/", |p| p.as_str());
    let entry = Entry::new(
        &parts,
        read,
        &request.headers,
        normalize_host(host),
        path.to_string(),
        lifetimes,
    );
    let stored = cache.store(key, entry);
    (Some(stored.clone()), from_parts_of(&stored))
}

/// An entry's response, for when the caller has no request at hand.
fn from_parts_of(entry: &Entry) -> http::Response<WasiBody> {
    let mut response = http::Response::new(responses::body(entry.body.clone()));
    *response.status_mut() = entry.status;
    *response.headers_mut() = entry.headers.clone();
    response
}

/// The entry as a response to `request`: `304` when its `If-None-Match` matches, no body
/// for `HEAD`, with `Age` and the cache status.
fn from_entry<B>(
    cache: &TenantCache,
    entry: &Entry,
    request: &Request<B>,
    status: Status,
) -> http::Response<WasiBody> {
    let mut headers = entry.served_headers(Instant::now());
    let etag = headers.get(header::ETAG).and_then(|v| v.to_str().ok());
    let not_modified = entry.status == StatusCode::OK
        && etag.is_some_and(|etag| {
            request
                .headers()
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|list| {
                    let ours = etag.trim_start_matches("W/");
                    list.split(',')
                        .map(|t| t.trim().trim_start_matches("W/"))
                        .any(|t| t == "*" || t == ours)
                })
        });
    let (status_code, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else if request.method() == Method::HEAD {
        (entry.status, Bytes::new())
    } else {
        (entry.status, entry.body.clone())
    };
    if !not_modified {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
    }
    let mut response = http::Response::new(responses::body(body));
    *response.status_mut() = status_code;
    *response.headers_mut() = headers;
    labelled(cache, response, status)
}

fn labelled(
    cache: &TenantCache,
    mut response: http::Response<WasiBody>,
    status: Status,
) -> http::Response<WasiBody> {
    cache.count(status);
    strip_cdn_headers(response.headers_mut());
    response.headers_mut().insert(
        CACHE_STATUS_HEADER,
        HeaderValue::from_static(status.as_str()),
    );
    response
}

/// Headers meant for the cache itself, not the client.
fn strip_cdn_headers(headers: &mut http::HeaderMap) {
    headers.remove(SURROGATE_CONTROL);
    headers.remove(CACHE_TAG);
}
