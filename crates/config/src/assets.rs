//! `assets`: a directory of static files the node serves for a tenant without running its
//! guest. Spelled as Workers spells it: `assets = "./public"`, or a table with
//! `directory`, `not_found_handling` and `run_worker_first`.

use std::path::PathBuf;

use toml::Spanned;

use crate::{ConfigError, Location, Validator};

/// A tenant's static files and how they sit in front of its guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetsConfig {
    /// The directory, resolved against the config file's directory.
    pub directory: PathBuf,
    /// Where `directory` is written, for errors about the directory itself.
    pub at: Location,
    /// What a navigation request for a path with no file gets.
    pub not_found: NotFoundHandling,
    /// Requests the guest answers before any file is looked at.
    pub run_worker_first: WorkerFirst,
}

/// What a browser navigation (`Sec-Fetch-Mode: navigate`, or `Accept: text/html`) for a
/// path without a file gets. Other requests for such paths go to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotFoundHandling {
    /// The guest answers (the default).
    #[default]
    None,
    /// `/index.html` with 200: a single-page application routes in the browser.
    SinglePageApplication,
    /// The nearest `404.html` up the path, with 404.
    NotFoundPage,
}

/// Which requests skip the files and go to the guest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WorkerFirst {
    /// Files first for every request (the default).
    #[default]
    Never,
    /// The guest answers every request; the files are not served.
    Always,
    /// Requests whose path matches a rule: `/api/*` (a prefix), `/exact`, and `!…` to
    /// exclude (exclusions win).
    Paths(Vec<PathRule>),
}

/// One `run_worker_first` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    /// The path, or the prefix when `prefix` is set (without the `*`).
    pub path: String,
    pub prefix: bool,
    /// `!` rules take paths out again.
    pub exclude: bool,
}

impl WorkerFirst {
    /// Whether the guest answers `path` before the files are looked at.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            WorkerFirst::Never => false,
            WorkerFirst::Always => true,
            WorkerFirst::Paths(rules) => {
                let hit = |rule: &PathRule| {
                    if rule.prefix {
                        path.starts_with(rule.path.as_str())
                    } else {
                        path == rule.path
                    }
                };
                rules.iter().any(|r| !r.exclude && hit(r))
                    && !rules.iter().any(|r| r.exclude && hit(r))
            }
        }
    }
}

impl PathRule {
    fn parse(text: &str) -> Result<PathRule, String> {
        let (exclude, pattern) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if !pattern.starts_with('/') {
            return Err(format!(
                "`{text}` is not a path pattern; write `/api/*` (a prefix), `/exact`, or `!/api/docs/*` to exclude"
            ));
        }
        let (path, prefix) = match pattern.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (pattern, false),
        };
        if path.contains('*') {
            return Err(format!(
                "`{text}`: `*` may only end a pattern, as in `/api/*`"
            ));
        }
        Ok(PathRule {
            path: path.to_string(),
            prefix,
            exclude,
        })
    }
}

impl Validator<'_> {
    /// Validates `assets`; `None` if it is absent or wrong (the errors say what).
    pub(crate) fn assets(
        &self,
        raw: Option<Spanned<toml::Value>>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<AssetsConfig> {
        let raw = raw?;
        let span = raw.span();
        let shape = "a directory (`assets = \"./public\"`) or a table with `directory`, `not_found_handling` and `run_worker_first`";
        let table = match raw.get_ref() {
            toml::Value::String(directory) => {
                return self
                    .assets_directory(&raw, directory, errors)
                    .map(|directory| AssetsConfig {
                        directory,
                        at: self.at(span),
                        not_found: NotFoundHandling::None,
                        run_worker_first: WorkerFirst::Never,
                    });
            }
            toml::Value::Table(table) => table,
            _ => {
                errors.push(self.error(&raw, "assets", shape));
                return None;
            }
        };
        let before = errors.len();
        for key in table.keys() {
            if !["directory", "not_found_handling", "run_worker_first"].contains(&key.as_str()) {
                errors.push(self.error(
                    &raw,
                    &format!("assets.{key}"),
                    format!("unknown key; {shape}"),
                ));
            }
        }
        let directory = match table.get("directory") {
            Some(toml::Value::String(directory)) => self.assets_directory(&raw, directory, errors),
            _ => {
                errors.push(self.error(
                    &raw,
                    "assets.directory",
                    "give the directory of the static files, e.g. \"./public\"",
                ));
                None
            }
        };
        let not_found = match table.get("not_found_handling").map(toml::Value::as_str) {
            None | Some(Some("none")) => NotFoundHandling::None,
            Some(Some("single-page-application")) => NotFoundHandling::SinglePageApplication,
            Some(Some("404-page")) => NotFoundHandling::NotFoundPage,
            Some(_) => {
                errors.push(self.error(
                    &raw,
                    "assets.not_found_handling",
                    "use \"none\", \"single-page-application\" or \"404-page\"",
                ));
                NotFoundHandling::None
            }
        };
        let run_worker_first = match table.get("run_worker_first") {
            None | Some(toml::Value::Boolean(false)) => WorkerFirst::Never,
            Some(toml::Value::Boolean(true)) => WorkerFirst::Always,
            Some(toml::Value::Array(items)) => {
                let mut rules = Vec::new();
                for item in items {
                    match item.as_str().map(PathRule::parse) {
                        Some(Ok(rule)) => rules.push(rule),
                        Some(Err(message)) => {
                            errors.push(self.error(&raw, "assets.run_worker_first", message))
                        }
                        None => errors.push(self.error(
                            &raw,
                            "assets.run_worker_first",
                            "list path patterns as strings, e.g. [\"/api/*\"]",
                        )),
                    }
                }
                WorkerFirst::Paths(rules)
            }
            Some(_) => {
                errors.push(self.error(
                    &raw,
                    "assets.run_worker_first",
                    "true, false, or a list of path patterns such as [\"/api/*\", \"!/api/docs/*\"]",
                ));
                WorkerFirst::Never
            }
        };
        let directory = directory?;
        (errors.len() == before).then(|| AssetsConfig {
            directory,
            at: self.at(span),
            not_found,
            run_worker_first,
        })
    }

    fn assets_directory(
        &self,
        raw: &Spanned<toml::Value>,
        directory: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<PathBuf> {
        if directory.trim().is_empty() {
            errors.push(self.error(
                raw,
                "assets",
                "give the directory of the static files, e.g. \"./public\"",
            ));
            return None;
        }
        Some(self.resolve(directory))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(patterns: &[&str]) -> WorkerFirst {
        WorkerFirst::Paths(
            patterns
                .iter()
                .map(|p| PathRule::parse(p).expect("pattern"))
                .collect(),
        )
    }

    #[test]
    fn worker_first_prefixes_exact_paths_and_exclusions() {
        let first = rules(&["/api/*", "/login", "!/api/docs/*"]);
        assert!(first.matches("/api/orders"));
        assert!(first.matches("/login"));
        assert!(!first.matches("/login/x"));
        assert!(!first.matches("/api/docs/intro"));
        assert!(!first.matches("/index.html"));
        assert!(WorkerFirst::Always.matches("/x"));
        assert!(!WorkerFirst::Never.matches("/x"));
    }

    #[test]
    fn bad_patterns_say_how_to_write_them() {
        assert!(PathRule::parse("api/*").unwrap_err().contains("/api/*"));
        assert!(PathRule::parse("/a/*/b").unwrap_err().contains("only end"));
    }
}
