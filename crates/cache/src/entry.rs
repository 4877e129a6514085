//! One stored response and where it stands in its life.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::policy::{CACHE_TAG, Lifetimes, SURROGATE_CONTROL};

/// A stored response, with what it varies on and how long it lives.
#[derive(Debug)]
pub struct Entry {
    pub status: StatusCode,
    /// As the client gets them: without the headers meant for the CDN.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Host and path-and-query it answers, for purges.
    pub host: String,
    pub path: String,
    pub tags: Vec<String>,
    /// The request's values of the headers the response varies on.
    vary: Vec<(HeaderName, Option<HeaderValue>)>,
    stored: Instant,
    /// The same moment by the wall clock, which survives a restart.
    stored_at: SystemTime,
    /// The `Age` it arrived with.
    initial_age: Duration,
    lifetimes: Lifetimes,
}

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Stale, and may be served while one request refreshes it.
    Revalidate,
    /// Stale, and may be served only if refreshing it fails.
    IfError,
    /// Not to be served.
    Expired,
}

impl Entry {
    /// A response about to be stored; `request_headers` are those it was an answer to.
    pub fn new(
        response: &http::response::Parts,
        body: Bytes,
        request_headers: &HeaderMap,
        host: String,
        path: String,
        lifetimes: Lifetimes,
    ) -> Entry {
        let mut headers = response.headers.clone();
        headers.remove(SURROGATE_CONTROL);
        headers.remove(CACHE_TAG);
        let initial_age = headers
            .remove(header::AGE)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        let vary = response
            .headers
            .get_all(header::VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .map(|name| {
                let value = request_headers.get(&name).cloned();
                (name, value)
            })
            .collect();
        Entry {
            status: response.status,
            headers,
            body,
            host,
            path,
            tags: lifetimes.tags.clone(),
            vary,
            stored: Instant::now(),
            stored_at: SystemTime::now(),
            initial_age,
            lifetimes,
        }
    }

    /// Whether this variant answers a request with `headers`.
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| headers.get(name) == value.as_ref())
    }

    /// Whether it holds the same variant as `other` (so `other` replaces it).
    pub fn same_variant(&self, other: &Entry) -> bool {
        self.vary == other.vary
    }

    /// The headers to serve it with at `now`: its own, with `Age`, and without
    /// `Transfer-Encoding` (the body is whole: the caller sets `Content-Length` for what
    /// it sends).
    pub fn served_headers(&self, now: Instant) -> HeaderMap {
        let mut headers = self.headers.clone();
        headers.remove(header::TRANSFER_ENCODING);
        headers.insert(header::AGE, HeaderValue::from(self.age(now).as_secs()));
        headers
    }

    /// Seconds since the origin made it, for the `Age` header.
    pub fn age(&self, now: Instant) -> Duration {
        self.initial_age + now.saturating_duration_since(self.stored)
    }

    pub fn freshness(&self, now: Instant) -> Freshness {
        let since = now.saturating_duration_since(self.stored);
        let Lifetimes {
            fresh,
            stale_while_revalidate,
            stale_if_error,
            ..
        } = &self.lifetimes;
        if since < *fresh {
            Freshness::Fresh
        } else if since < *fresh + *stale_while_revalidate {
            Freshness::Revalidate
        } else if since < *fresh + *stale_if_error {
            Freshness::IfError
        } else {
            Freshness::Expired
        }
    }

    /// How long after storing it can be dropped.
    pub fn lifespan(&self) -> Duration {
        self.lifetimes.fresh
            + self
                .lifetimes
                .stale_while_revalidate
                .max(self.lifetimes.stale_if_error)
    }

    /// Bytes it costs in the cache, roughly.
    pub fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        (self.body.len() + headers + self.host.len() + self.path.len() + 256) as u64
    }
}

/// An entry as the disk tier writes it: everything but the body, which follows it.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Saved {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    host: String,
    path: String,
    tags: Vec<String>,
    vary: Vec<(String, Option<Vec<u8>>)>,
    stored_at_ms: u64,
    initial_age_secs: u64,
    fresh_ms: u64,
    stale_while_revalidate_ms: u64,
    stale_if_error_ms: u64,
    body_len: u64,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Entry {
    pub(crate) fn saved(&self) -> Saved {
        Saved {
            status: self.status.as_u16(),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                .collect(),
            host: self.host.clone(),
            path: self.path.clone(),
            tags: self.tags.clone(),
            vary: self
                .vary
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        v.as_ref().map(|v| v.as_bytes().to_vec()),
                    )
                })
                .collect(),
            stored_at_ms: self
                .stored_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, millis),
            initial_age_secs: self.initial_age.as_secs(),
            fresh_ms: millis(self.lifetimes.fresh),
            stale_while_revalidate_ms: millis(self.lifetimes.stale_while_revalidate),
            stale_if_error_ms: millis(self.lifetimes.stale_if_error),
            body_len: self.body.len() as u64,
        }
    }

    /// The entry `saved` describes, with `body`; `None` if what was written is not one.
    pub(crate) fn restored(saved: Saved, body: Bytes) -> Option<Entry> {
        let stored_at = SystemTime::UNIX_EPOCH + Duration::from_millis(saved.stored_at_ms);
        // The same age by the monotonic clock (an entry from the future counts as new).
        let age = SystemTime::now()
            .duration_since(stored_at)
            .unwrap_or_default();
        let now = Instant::now();
        let stored = now.checked_sub(age).unwrap_or(now);
        let mut headers = HeaderMap::new();
        for (name, value) in saved.headers {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_bytes(&value).ok()?,
            );
        }
        let mut vary = Vec::new();
        for (name, value) in saved.vary {
            let value = match value {
                Some(value) => Some(HeaderValue::from_bytes(&value).ok()?),
                None => None,
            };
            vary.push((HeaderName::from_bytes(name.as_bytes()).ok()?, value));
        }
        Some(Entry {
            status: StatusCode::from_u16(saved.status).ok()?,
            headers,
            body,
            host: saved.host,
            path: saved.path,
            tags: saved.tags.clone(),
            vary,
            stored,
            stored_at,
            initial_age: Duration::from_secs(saved.initial_age_secs),
            lifetimes: Lifetimes {
                fresh: Duration::from_millis(saved.fresh_ms),
                stale_while_revalidate: Duration::from_millis(saved.stale_while_revalidate_ms),
                stale_if_error: Duration::from_millis(saved.stale_if_error_ms),
                tags: saved.tags,
            },
        })
    }
}

impl Saved {
    pub(crate) fn body_len(&self) -> u64 {
        self.body_len
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn tags(&self) -> &[String] {
        &self.tags
    }
}
