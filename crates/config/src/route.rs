//! Route patterns: which requests a tenant answers.
//!
//! A route is written `"host"`, `"*.host"`, `"host/path/prefix"` or `"/path/prefix"` (any
//! host). Hosts compare case-insensitively and without the port. A path prefix matches
//! whole segments: `/api` matches `/api` and `/api/orders` but not `/apiary`.

use std::fmt;

/// The host part of a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// Matches every host (a route written as just a path).
    Any,
    /// `*.example.com`: any subdomain of `example.com` (not `example.com` itself).
    /// Holds the suffix with its leading dot, `.example.com`.
    Wildcard(String),
    /// `example.com`: this host only.
    Exact(String),
}

impl HostPattern {
    /// Whether `host` (lowercase, without port) matches this pattern.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
            HostPattern::Exact(exact) => host == exact,
        }
    }
}

/// One validated route: a host pattern and a path prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// Which hosts the route covers.
    pub host: HostPattern,
    /// Always starts with `/`; `/` alone matches every path.
    pub path_prefix: String,
}

impl Route {
    /// Parses a route as written in the config.
    pub fn parse(text: &str) -> Result<Route, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(
                "a route cannot be empty; write \"host\", \"*.host\", \"host/path\" or \"/path\""
                    .into(),
            );
        }
        if text.contains("://") {
            return Err(format!(
                "route `{text}` has a scheme; write the host and path only, e.g. \"example.com/api\""
            ));
        }
        let (host, path) = match text.find('/') {
            Some(slash) => text.split_at(slash),
            None => (text, "/"),
        };
        let host = parse_host(host, text)?;
        let path_prefix = parse_path(path, text)?;
        Ok(Route { host, path_prefix })
    }

    /// Whether this route covers a request for `host` (lowercase, no port) and `path`.
    pub fn matches(&self, host: &str, path: &str) -> bool {
        self.host.matches(host) && path_has_prefix(path, &self.path_prefix)
    }
}

fn parse_host(host: &str, route: &str) -> Result<HostPattern, String> {
    if host.is_empty() {
        return Ok(HostPattern::Any);
    }
    let host = host.to_ascii_lowercase();
    if host.contains(':') {
        return Err(format!(
            "route `{route}` names a port; routes match the host without its port"
        ));
    }
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host.as_str()),
    };
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!(
            "route `{route}` has an invalid host `{host}`; use a name like \"example.com\" or \"*.example.com\""
        ));
    }
    Ok(if wildcard {
        HostPattern::Wildcard(format!(".{name}"))
    } else {
        HostPattern::Exact(name.to_string())
    })
}

fn parse_path(path: &str, route: &str) -> Result<String, String> {
    if path.contains(['?', '#', '*', ' ']) {
        return Err(format!(
            "route `{route}` has `?`, `#`, `*` or a space in its path; a route is a plain path prefix"
        ));
    }
    if path
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err(format!("route `{route}` has a `.` or `..` segment"));
    }
    // `/api/` and `/api` mean the same prefix; keep one spelling so duplicates are found.
    let trimmed = path.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

/// Whether `path` lies under `prefix`, on a segment boundary.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Any => {}
            HostPattern::Wildcard(suffix) => write!(f, "*{suffix}")?,
            HostPattern::Exact(host) => f.write_str(host)?,
        }
        if self.path_prefix != "/" || self.host == HostPattern::Any {
            f.write_str(&self.path_prefix)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_forms() {
        let exact = Route::parse("Shop.Example.com").unwrap();
        assert_eq!(exact.host, HostPattern::Exact("shop.example.com".into()));
        assert_eq!(exact.path_prefix, "/");

        let wildcard = Route::parse("*.example.com").unwrap();
        assert_eq!(wildcard.host, HostPattern::Wildcard(".example.com".into()));

        let host_path = Route::parse("example.com/api/").unwrap();
        assert_eq!(host_path.host, HostPattern::Exact("example.com".into()));
        assert_eq!(host_path.path_prefix, "/api");

        let any = Route::parse("/static").unwrap();
        assert_eq!(any.host, HostPattern::Any);
        assert_eq!(any.path_prefix, "/static");
    }

    #[test]
    fn path_prefix_matches_whole_segments_only() {
        let route = Route::parse("/api").unwrap();
        assert!(route.matches("any.host", "/api"));
        assert!(route.matches("any.host", "/api/orders"));
        assert!(!route.matches("any.host", "/apiary"));
    }

    #[test]
    fn wildcard_matches_subdomains_but_not_the_apex() {
        let route = Route::parse("*.example.com").unwrap();
        assert!(route.matches("a.example.com", "/"));
        assert!(route.matches("a.b.example.com", "/x"));
        assert!(!route.matches("example.com", "/"));
        assert!(!route.matches("badexample.com", "/"));
    }

    #[test]
    fn rejects_schemes_ports_and_bad_hosts() {
        assert!(
            Route::parse("https://example.com")
                .unwrap_err()
                .contains("scheme")
        );
        assert!(
            Route::parse("example.com:8080")
                .unwrap_err()
                .contains("port")
        );
        assert!(
            Route::parse("exa mple.com")
                .unwrap_err()
                .contains("invalid host")
        );
        assert!(
            Route::parse("example.com/a/../b")
                .unwrap_err()
                .contains("..")
        );
        assert!(Route::parse("").is_err());
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "example.com",
            "*.example.com",
            "example.com/api",
            "/static",
            "/",
        ] {
            assert_eq!(Route::parse(text).unwrap().to_string(), text);
        }
    }
}
