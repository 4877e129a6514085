//! Which tenant answers a request: longest match on host, then on path prefix.
//!
//! Host specificity comes first: an exact host beats a wildcard (`*.example.com`, longer
//! suffixes first), which beats a path-only route that covers every host. Among routes
//! with the same host pattern the longest path prefix wins. Exact hosts are found by a
//! hash lookup, so a node with thousands of hostnames still matches in constant time.

use std::collections::HashMap;

use outpost_config::{HostPattern, Route};

/// Index of a tenant in the node's tenant list.
pub type TenantIndex = usize;

/// All routes of all tenants, arranged for matching.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<String, Vec<(String, TenantIndex)>>,
    /// `(suffix, path prefixes)`, longest suffix first.
    wildcard: Vec<(String, Vec<(String, TenantIndex)>)>,
    any_host: Vec<(String, TenantIndex)>,
}

impl Router {
    /// Builds a router from each tenant's routes (the config has already refused routes
    /// claimed twice).
    pub fn new<'a>(tenants: impl IntoIterator<Item = (TenantIndex, &'a [Route])>) -> Router {
        let mut router = Router::default();
        let mut wildcard: HashMap<String, Vec<(String, TenantIndex)>> = HashMap::new();
        for (tenant, routes) in tenants {
            for route in routes {
                let entry = (route.path_prefix.clone(), tenant);
                match &route.host {
                    HostPattern::Exact(host) => {
                        router.exact.entry(host.clone()).or_default().push(entry)
                    }
                    HostPattern::Wildcard(suffix) => {
                        wildcard.entry(suffix.clone()).or_default().push(entry)
                    }
                    HostPattern::Any => router.any_host.push(entry),
                }
            }
        }
        let longest_prefix_first = |list: &mut Vec<(String, TenantIndex)>| {
            list.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()))
        };
        router.exact.values_mut().for_each(longest_prefix_first);
        longest_prefix_first(&mut router.any_host);
        router.wildcard = wildcard.into_iter().collect();
        router
            .wildcard
            .iter_mut()
            .for_each(|(_, list)| longest_prefix_first(list));
        router
            .wildcard
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        router
    }

    /// The tenant for `host` (as sent: any case, maybe with a port) and `path`.
    pub fn route(&self, host: &str, path: &str) -> Option<TenantIndex> {
        let host = normalize_host(host);
        if let Some(found) = self
            .exact
            .get(host.as_str())
            .and_then(|l| first_prefix(l, path))
        {
            return Some(found);
        }
        for (suffix, list) in &self.wildcard {
            if host.len() > suffix.len()
                && host.ends_with(suffix.as_str())
                && let Some(found) = first_prefix(list, path)
            {
                return Some(found);
            }
        }
        first_prefix(&self.any_host, path)
    }
}

fn first_prefix(list: &[(String, TenantIndex)], path: &str) -> Option<TenantIndex> {
    list.iter()
        .find(|(prefix, _)| {
            prefix == "/"
                || path
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .map(|(_, tenant)| *tenant)
}

/// Lowercase, without port or trailing dot. Bracketed IPv6 literals keep their brackets.
pub(crate) fn normalize_host(host: &str) -> String {
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(tenants: &[&[&str]]) -> Router {
        let parsed: Vec<Vec<Route>> = tenants
            .iter()
            .map(|routes| routes.iter().map(|r| Route::parse(r).unwrap()).collect())
            .collect();
        Router::new(parsed.iter().enumerate().map(|(i, r)| (i, r.as_slice())))
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any_host() {
        let r = router(&[&["shop.example.com"], &["*.example.com"], &["/"]]);
        assert_eq!(r.route("shop.example.com", "/x"), Some(0));
        assert_eq!(r.route("blog.example.com", "/x"), Some(1));
        assert_eq!(r.route("other.org", "/x"), Some(2));
    }

    #[test]
    fn longest_path_prefix_wins_within_a_host() {
        let r = router(&[
            &["example.com"],
            &["example.com/api"],
            &["example.com/api/v2"],
        ]);
        assert_eq!(r.route("example.com", "/"), Some(0));
        assert_eq!(r.route("example.com", "/api/orders"), Some(1));
        assert_eq!(r.route("example.com", "/api/v2/orders"), Some(2));
        assert_eq!(r.route("example.com", "/apiary"), Some(0));
    }

    #[test]
    fn host_matching_ignores_case_port_and_trailing_dot() {
        let r = router(&[&["shop.example.com"]]);
        assert_eq!(r.route("Shop.Example.COM:8080", "/"), Some(0));
        assert_eq!(r.route("shop.example.com.", "/"), Some(0));
    }

    #[test]
    fn longer_wildcard_suffix_wins() {
        let r = router(&[&["*.example.com"], &["*.eu.example.com"]]);
        assert_eq!(r.route("a.eu.example.com", "/"), Some(1));
        assert_eq!(r.route("a.us.example.com", "/"), Some(0));
    }

    #[test]
    fn no_route_is_none() {
        let r = router(&[&["example.com/api"]]);
        assert_eq!(r.route("example.com", "/other"), None);
        assert_eq!(r.route("elsewhere.com", "/api"), None);
    }

    #[test]
    fn falls_back_from_host_without_matching_path_to_any_host_route() {
        let r = router(&[&["example.com/api"], &["/static"]]);
        assert_eq!(r.route("example.com", "/static/a.css"), Some(1));
    }
}
