//! Whether a response may be stored, and for how long it is fresh and then usable stale.
//!
//! Freshness and storability are http-cache-semantics' (RFC 9111, as a shared cache):
//! `s-maxage`, `max-age`, `Expires`, `Age`, `no-store`, `private`, `Authorization`. On top
//! of it: the directives aimed at a CDN win over `Cache-Control` (`Surrogate-Control`,
//! then `CDN-Cache-Control`, RFC 9213), a response must say how long it is fresh (no
//! heuristic lifetimes: a guest decides what is cached), and the rules every CDN adds:
//! no `206`, no `Set-Cookie`, no `Vary: *`.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, header};
use http_cache_semantics::{CacheOptions, CachePolicy};

/// Response headers that steer a CDN and are not passed on to clients.
pub const SURROGATE_CONTROL: &str = "surrogate-control";
pub const CDN_CACHE_CONTROL: &str = "cdn-cache-control";
pub const CACHE_TAG: &str = "cache-tag";

/// Stale windows when a response names none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StaleDefaults {
    pub while_revalidate: Duration,
    pub if_error: Duration,
}

/// How long a stored response lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifetimes {
    /// Fresh from when it was stored.
    pub fresh: Duration,
    /// After that, served stale while one request refreshes it.
    pub stale_while_revalidate: Duration,
    /// After freshness, served stale when refreshing fails.
    pub stale_if_error: Duration,
    /// `Cache-Tag` values, for purging.
    pub tags: Vec<String>,
}

/// What the cache makes of a response.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Store(Lifetimes),
    /// Not stored, and why (for the debug log).
    Pass(&'static str),
}

/// Judges `response` to `request` as a shared cache would at `now`.
pub fn judge(
    request: &http::request::Parts,
    response: &http::response::Parts,
    defaults: StaleDefaults,
    now: SystemTime,
) -> Verdict {
    if response.status == http::StatusCode::PARTIAL_CONTENT {
        return Verdict::Pass("partial content");
    }
    if response.headers.contains_key(header::SET_COOKIE) {
        return Verdict::Pass("set-cookie");
    }
    if comma_items(&response.headers, header::VARY.as_str()).any(|item| item == "*") {
        return Verdict::Pass("vary: *");
    }
    let directives = effective_cache_control(&response.headers);
    let explicit = directive(&directives, "max-age").is_some()
        || directive(&directives, "s-maxage").is_some()
        || response.headers.contains_key(header::EXPIRES);
    if !explicit {
        return Verdict::Pass("no explicit freshness");
    }
    // http-cache-semantics reads Cache-Control: hand it the directives that apply here.
    let mut judged = response.clone();
    judged.headers.remove(SURROGATE_CONTROL);
    judged.headers.remove(CDN_CACHE_CONTROL);
    match HeaderValue::from_str(&directives) {
        Ok(value) => {
            judged.headers.insert(header::CACHE_CONTROL, value);
        }
        Err(_) => return Verdict::Pass("unreadable cache-control"),
    }
    let policy = CachePolicy::new_options(request, &judged, now, CacheOptions::default());
    if !policy.is_storable() {
        return Verdict::Pass("not storable (no-store, private, authorization or status)");
    }
    let fresh = policy.time_to_live(now);
    if fresh.is_zero() {
        return Verdict::Pass("already stale");
    }
    let no_stale = directive(&directives, "must-revalidate").is_some()
        || directive(&directives, "proxy-revalidate").is_some();
    let seconds = |name: &str, default: Duration| {
        if no_stale {
            return Duration::ZERO;
        }
        directive(&directives, name)
            .flatten()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(default, Duration::from_secs)
    };
    Verdict::Store(Lifetimes {
        fresh,
        stale_while_revalidate: seconds("stale-while-revalidate", defaults.while_revalidate),
        stale_if_error: seconds("stale-if-error", defaults.if_error),
        tags: tags(&response.headers),
    })
}

/// The directives a CDN obeys: `Surrogate-Control`, else `CDN-Cache-Control`, else
/// `Cache-Control`.
pub fn effective_cache_control(headers: &HeaderMap) -> String {
    for name in [
        SURROGATE_CONTROL,
        CDN_CACHE_CONTROL,
        header::CACHE_CONTROL.as_str(),
    ] {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !values.is_empty() {
            return values.join(", ");
        }
    }
    String::new()
}

/// `Some(value)` for `name=value`, `Some(None)` for a bare `name`.
fn directive<'a>(directives: &'a str, name: &str) -> Option<Option<&'a str>> {
    directives.split(',').find_map(|item| {
        let item = item.trim();
        let (key, value) = match item.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.trim().trim_matches('"'))),
            None => (item, None),
        };
        key.eq_ignore_ascii_case(name).then_some(value)
    })
}

fn comma_items<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// A response's `Cache-Tag` values (Cloudflare's spelling: comma-separated).
pub fn tags(headers: &HeaderMap) -> Vec<String> {
    comma_items(headers, CACHE_TAG)
        .take(256)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> http::request::Parts {
        http::Request::get("http://shop.test/p")
            .header("host", "shop.test")
            .body(())
            .expect("request")
            .into_parts()
            .0
    }

    fn response(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
        let mut builder = http::Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("response").into_parts().0
    }

    fn verdict(status: u16, headers: &[(&str, &str)]) -> Verdict {
        judge(
            &request(),
            &response(status, headers),
            StaleDefaults::default(),
            SystemTime::now(),
        )
    }

    fn stored(status: u16, headers: &[(&str, &str)]) -> Lifetimes {
        match verdict(status, headers) {
            Verdict::Store(lifetimes) => lifetimes,
            Verdict::Pass(why) => panic!("not stored: {why}"),
        }
    }

    #[test]
    fn shared_cache_rules() {
        assert_eq!(
            stored(200, &[("cache-control", "max-age=60")])
                .fresh
                .as_secs(),
            60
        );
        assert_eq!(
            stored(200, &[("cache-control", "max-age=60, s-maxage=600")])
                .fresh
                .as_secs(),
            600
        );
        for (headers, why) in [
            (
                &[("cache-control", "private, max-age=60")][..],
                "not storable",
            ),
            (
                &[("cache-control", "no-store, max-age=60")][..],
                "not storable",
            ),
            (
                &[("cache-control", "max-age=60"), ("set-cookie", "a=1")][..],
                "set-cookie",
            ),
            (
                &[("cache-control", "max-age=60"), ("vary", "accept, *")][..],
                "vary: *",
            ),
            (&[][..], "no explicit freshness"),
            (&[("cache-control", "public")][..], "no explicit freshness"),
            (&[("cache-control", "max-age=0")][..], "already stale"),
        ] {
            match verdict(200, headers) {
                Verdict::Pass(reason) => assert!(reason.starts_with(why), "{headers:?}: {reason}"),
                Verdict::Store(_) => panic!("{headers:?} was stored"),
            }
        }
        assert_eq!(
            verdict(206, &[("cache-control", "max-age=60")]),
            Verdict::Pass("partial content")
        );
    }

    #[test]
    fn cdn_directives_win_over_cache_control() {
        let both = [
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=30"),
        ];
        assert_eq!(stored(200, &both).fresh.as_secs(), 30);
        let all = [
            ("cache-control", "max-age=5"),
            ("cdn-cache-control", "max-age=30"),
            ("surrogate-control", "max-age=300"),
        ];
        assert_eq!(stored(200, &all).fresh.as_secs(), 300);
        assert!(matches!(
            verdict(
                200,
                &[
                    ("cache-control", "max-age=5"),
                    ("surrogate-control", "no-store")
                ]
            ),
            Verdict::Pass(_)
        ));
    }

    #[test]
    fn stale_windows_come_from_the_response_or_the_defaults() {
        let lifetimes = stored(
            200,
            &[(
                "cache-control",
                "max-age=1, stale-while-revalidate=30, stale-if-error=600",
            )],
        );
        assert_eq!(lifetimes.stale_while_revalidate.as_secs(), 30);
        assert_eq!(lifetimes.stale_if_error.as_secs(), 600);
        let defaults = StaleDefaults {
            while_revalidate: Duration::from_secs(7),
            if_error: Duration::from_secs(9),
        };
        let Verdict::Store(lifetimes) = judge(
            &request(),
            &response(200, &[("cache-control", "max-age=1")]),
            defaults,
            SystemTime::now(),
        ) else {
            panic!("stored")
        };
        assert_eq!(lifetimes.stale_while_revalidate.as_secs(), 7);
        assert_eq!(lifetimes.stale_if_error.as_secs(), 9);
        let strict = stored(
            200,
            &[(
                "cache-control",
                "max-age=1, must-revalidate, stale-if-error=60",
            )],
        );
        assert_eq!(strict.stale_if_error, Duration::ZERO);
    }

    #[test]
    fn tags_are_read_from_cache_tag() {
        let lifetimes = stored(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cache-tag", "product-1, listing,"),
            ],
        );
        assert_eq!(lifetimes.tags, ["product-1", "listing"]);
    }
}
