//! Answering a request from a stored representation: `If-None-Match` /
//! `If-Modified-Since` (RFC 9110 §13) and a single `Range` (§14), shared by the cache and
//! the static files.

use std::ops::RangeInclusive;
use std::time::SystemTime;

use http::{HeaderMap, header};

/// RFC 9110 §13.2.2: `If-None-Match` decides when present (compared weakly), else
/// `If-Modified-Since`.
pub fn not_modified(
    request: &HeaderMap,
    etag: Option<&str>,
    last_modified: Option<SystemTime>,
) -> bool {
    if let Some(value) = request.get(header::IF_NONE_MATCH) {
        let (Ok(list), Some(ours)) = (value.to_str(), etag) else {
            return false;
        };
        let ours = opaque(ours);
        return list
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || opaque(tag) == ours);
    }
    let Some(modified) = last_modified else {
        return false;
    };
    request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|since| modified <= since)
}

/// The tag without its weak marker.
fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// `If-Range`: the range applies only to the representation the client already has (a
/// strong ETag match, or the exact `Last-Modified`).
pub fn if_range_holds(
    request: &HeaderMap,
    etag: Option<&str>,
    last_modified: Option<SystemTime>,
) -> bool {
    let Some(value) = request.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    if text.starts_with('"') {
        return etag == Some(text);
    }
    httpdate::parse_http_date(text).is_ok_and(|at| Some(at) == last_modified)
}

/// For a `Range` header over `len` bytes: `Some(Ok)` for one satisfiable range,
/// `Some(Err)` for an unsatisfiable one, `None` to send the whole representation (no valid
/// `Range`, or several ranges, which a whole representation answers).
pub fn byte_range(value: &str, len: u64) -> Option<Result<RangeInclusive<u64>, ()>> {
    let parsed = http_range_header::parse_range_header(value).ok()?;
    if len == 0 {
        return Some(Err(()));
    }
    match parsed.validate(len) {
        Ok(ranges) if ranges.len() == 1 => Some(Ok(ranges[0].clone())),
        Ok(_) => None,
        // A suffix longer than the representation means all of it (RFC 9110 §14.1.2).
        Err(http_range_header::RangeUnsatisfiableError::FileSuffixOutOfBounds)
            if parsed.ranges.len() == 1 =>
        {
            Some(Ok(0..=len - 1))
        }
        Err(_) => Some(Err(())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    fn modified() -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(byte_range("bytes=0-9", 100), Some(Ok(0..=9)));
        assert_eq!(byte_range("bytes=90-", 100), Some(Ok(90..=99)));
        assert_eq!(byte_range("bytes=-10", 100), Some(Ok(90..=99)));
        assert_eq!(byte_range("bytes=-500", 100), Some(Ok(0..=99)));
        assert_eq!(byte_range("bytes=95-200", 100), Some(Ok(95..=99)));
        assert_eq!(byte_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(byte_range("bytes=0-1,5-9", 100), None);
        assert_eq!(byte_range("lines=0-9", 100), None);
    }

    #[test]
    fn conditionals_prefer_the_etag() {
        let etag = Some("\"abc\"");
        let check = |pairs| not_modified(&headers(pairs), etag, modified());
        assert!(check(&[("if-none-match", "\"x\", W/\"abc\"")]));
        assert!(check(&[("if-none-match", "*")]));
        assert!(!check(&[
            ("if-none-match", "\"other\""),
            ("if-modified-since", "Wed, 15 Nov 2023 00:00:00 GMT")
        ]));
        assert!(check(&[(
            "if-modified-since",
            "Tue, 14 Nov 2023 22:13:20 GMT"
        )]));
        assert!(!check(&[(
            "if-modified-since",
            "Tue, 14 Nov 2023 22:13:19 GMT"
        )]));
        assert!(!not_modified(
            &headers(&[("if-none-match", "\"abc\"")]),
            None,
            modified()
        ));
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let etag = Some("\"abc\"");
        let holds = |pairs| if_range_holds(&headers(pairs), etag, modified());
        assert!(holds(&[("if-range", "\"abc\"")]));
        assert!(!holds(&[("if-range", "W/\"abc\"")]));
        assert!(!holds(&[("if-range", "\"old\"")]));
        assert!(holds(&[("if-range", "Tue, 14 Nov 2023 22:13:20 GMT")]));
    }
}
