//! One stored response and where it stands in its life.

use std::time::{Duration, Instant};

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
