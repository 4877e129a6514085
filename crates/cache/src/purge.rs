//! What a purge removes: URLs, path prefixes, `Cache-Tag`s, or everything of a tenant.
//! Entries of every deployed version go, so a purge never leaves an old copy behind.

use crate::entry::Entry;

/// A purge of one tenant's cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    Everything,
    /// Exact URLs: `https://host/path?query`, or `/path?query` for every host.
    Urls(Vec<Target>),
    /// Path prefixes: `https://host/blog/`, or `/blog/` for every host.
    Prefixes(Vec<Target>),
    Tags(Vec<String>),
}

/// A URL or a prefix, with its host when one was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: Option<String>,
    pub path: String,
}

impl Purge {
    pub fn parse_urls(urls: &[String]) -> Result<Purge, String> {
        urls.iter()
            .map(|url| Target::parse(url))
            .collect::<Result<_, _>>()
            .map(Purge::Urls)
    }

    pub fn parse_prefixes(prefixes: &[String]) -> Result<Purge, String> {
        prefixes
            .iter()
            .map(|url| Target::parse(url))
            .collect::<Result<_, _>>()
            .map(Purge::Prefixes)
    }

    pub fn parse_tags(tags: &[String]) -> Purge {
        Purge::Tags(tags.iter().map(|t| t.trim().to_string()).collect())
    }

    /// Whether `entry` goes.
    pub fn covers(&self, entry: &Entry) -> bool {
        self.covers_fields(&entry.host, &entry.path, &entry.tags)
    }

    /// Whether an entry for `host` and `path` with `tags` goes.
    pub fn covers_fields(&self, host: &str, path: &str, tags: &[String]) -> bool {
        match self {
            Purge::Everything => true,
            Purge::Urls(targets) => targets
                .iter()
                .any(|t| t.host_matches(host) && path == t.path),
            Purge::Prefixes(targets) => targets
                .iter()
                .any(|t| t.host_matches(host) && path.starts_with(&t.path)),
            Purge::Tags(wanted) => tags.iter().any(|tag| wanted.contains(tag)),
        }
    }
}

impl Target {
    fn parse(text: &str) -> Result<Target, String> {
        if text.starts_with('/') {
            return Ok(Target {
                host: None,
                path: text.to_string(),
            });
        }
        let uri: http::Uri = text
            .parse()
            .map_err(|e| format!("`{text}` is not a URL or a path starting with `/`: {e}"))?;
        if uri.scheme().is_none() {
            return Err(format!(
                "`{text}` is not a URL or a path; write https://host/path or /path"
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("`{text}` has no host; write https://host/path or /path"))?;
        Ok(Target {
            host: Some(host.to_ascii_lowercase()),
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
        })
    }

    fn host_matches(&self, host: &str) -> bool {
        self.host.as_deref().is_none_or(|h| h == host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_parse() {
        assert_eq!(
            Target::parse("https://Shop.test/a?b=1").expect("url"),
            Target {
                host: Some("shop.test".into()),
                path: "/a?b=1".into()
            }
        );
        assert_eq!(Target::parse("/a").expect("path").host, None);
        assert!(Target::parse("shop").is_err());
    }
}
