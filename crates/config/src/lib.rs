//! outpost's node configuration.
//!
//! The TOML is first read into serde "raw" structs that keep each value's span, then
//! validated into [`Config`]: once a [`TenantConfig`] exists its routes parse, its limits are
//! in range, its sizes are bytes and its durations are [`Duration`](std::time::Duration)s. Every semantic problem
//! is collected, so `outpost check` can report them all at once, each with file, line,
//! tenant and key.
//!
//! Each section's types sit beside their validation, one file each: `node.rs`,
//! `server.rs` (with `operations.rs` for TLS, admin and connection limits), `tenant.rs`,
//! `limits.rs`, `stores.rs`, `secrets.rs`, `outbound.rs`, `route.rs`. This file holds the
//! entry points and the locating of structural errors.
//!
//! ```
//! let config = outpost_config::Config::parse(
//!     r#"
//!     [[tenant]]
//!     name = "shop"
//!     component = "shop.wasm"
//!     routes = ["shop.example.com", "/shop"]
//!     limits = { memory = "64MiB", timeout = "250ms" }
//!     "#,
//!     std::path::Path::new("node.toml"),
//! )
//! .unwrap();
//! assert_eq!(config.tenants[0].limits.memory, 64 << 20);
//! ```

mod assets;
mod cache;
mod error;
mod fleet;
mod limits;
mod node;
mod objects;
mod operations;
mod outbound;
mod raw;
mod route;
mod secrets;
mod server;
mod stores;
mod tenant;
mod units;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use assets::{AssetsConfig, NotFoundHandling, PathRule, WorkerFirst};
pub use cache::{
    CacheConfig, DEFAULT_CACHE_MAX_OBJECT, DEFAULT_CACHE_MAX_SIZE, DEFAULT_CACHE_MEMORY,
    DEFAULT_LOCK_TIMEOUT,
};
pub use error::{ConfigError, ConfigErrors, Location};
pub use fleet::{DEFAULT_FLEET_NAME, DEFAULT_FLEET_REPLICAS, FleetConfig};
pub use limits::{
    DEFAULT_BODY_BYTES, DEFAULT_CONCURRENCY, DEFAULT_FUEL, DEFAULT_LIVE_OBJECTS,
    DEFAULT_MEMORY_BYTES, DEFAULT_SQL_SIZE_BYTES, DEFAULT_SUBREQUESTS, DEFAULT_TIMEOUT,
    DEFAULT_WEBSOCKETS, Limits, MAX_CONCURRENCY, MAX_LIVE_OBJECTS, MAX_MEMORY_BYTES,
    MAX_SUBREQUESTS, MAX_TIMEOUT, MAX_WEBSOCKETS, MIN_MEMORY_BYTES, MIN_SQL_SIZE_BYTES,
};
pub use node::{
    CompileLimits, DEFAULT_DATA_DIR, DEFAULT_MAX_INSTANCES, DEFAULT_NODE_ID, NodeConfig,
};
pub use objects::{
    DEFAULT_MAX_MESSAGE, DEFAULT_MAX_SOCKETS, DEFAULT_OBJECT_IDLE, MAX_MESSAGE_BYTES,
    MAX_SOCKETS_PER_OBJECT, ObjectClass,
};
pub use operations::{
    AdminConfig, CertificateFiles, ConnectionLimits, DEFAULT_ADMIN_LISTEN, DEFAULT_ADMIN_TOKEN_ENV,
    DEFAULT_TLS_LISTEN, TlsListener,
};
pub use outbound::Origin;
pub use route::{HostPattern, Route};
pub use secrets::Secret;
pub use server::{DEFAULT_LISTEN, ServerConfig};
pub use stores::{
    BlobLocation, BlobStore, DEFAULT_GLOBAL_CACHE_TTL, DEFAULT_S3_ACCESS_KEY_ENV,
    DEFAULT_S3_SECRET_KEY_ENV, KvBackendKind, S3Store, Stores,
};
pub use tenant::TenantConfig;
pub use units::{format_size, parse_duration, parse_size};

use raw::{LenientConfig, RawConfig};
use toml::Spanned;

/// A whole, valid node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[node]`.
    pub node: NodeConfig,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[fleet]`, if this node is one of a fleet.
    pub fleet: Option<FleetConfig>,
    /// `[[tenant]]`, in file order.
    pub tenants: Vec<TenantConfig>,
}

/// A config read as far as it could be: what validated, and every problem found.
///
/// `config` is `None` only when the file could not be read or is not well-formed TOML of
/// the right shape; otherwise it holds the tenants that validated, so that `outpost check`
/// can go on to load their components and report those problems too.
#[derive(Debug)]
pub struct CheckedConfig {
    /// The valid part.
    pub config: Option<Config>,
    /// Every problem, in file order.
    pub errors: Vec<ConfigError>,
}

impl Config {
    /// Reads and validates the config at `path`; any problem refuses the whole config.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::check_file(path).into_result()
    }

    /// Validates `source` as if read from `path`.
    pub fn parse(source: &str, path: &Path) -> Result<Config, ConfigErrors> {
        Config::check_source(source, path).into_result()
    }

    /// Reads the config at `path` and reports every problem rather than stopping at one.
    pub fn check_file(path: &Path) -> CheckedConfig {
        match std::fs::read_to_string(path) {
            Ok(source) => Config::check_source(&source, path),
            Err(error) => CheckedConfig {
                config: None,
                errors: vec![ConfigError::new(
                    Location::file_only(path),
                    format!("cannot read the config file: {error}"),
                )],
            },
        }
    }

    /// Validates `source` as if read from `path`, reporting every problem.
    pub fn check_source(source: &str, path: &Path) -> CheckedConfig {
        let raw: RawConfig = match toml::from_str(source) {
            Ok(raw) => raw,
            Err(error) => {
                return CheckedConfig {
                    config: None,
                    errors: vec![structural_error(source, path, &error)],
                };
            }
        };
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut validator = Validator {
            source,
            path,
            data_dir: base.join(DEFAULT_DATA_DIR),
            base,
            in_fleet: false,
            errors: Vec::new(),
        };
        let config = validator.config(raw);
        let mut errors = validator.errors;
        errors.sort_by_key(|e| (e.location.line, e.location.column));
        CheckedConfig {
            config: Some(config),
            errors,
        }
    }
}

impl CheckedConfig {
    fn into_result(self) -> Result<Config, ConfigErrors> {
        match self.config {
            Some(config) if self.errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors(self.errors)),
        }
    }
}

/// A TOML syntax error, unknown key or wrong type: toml stops at the first, so this is
/// one error, placed as precisely as the span allows.
fn structural_error(source: &str, path: &Path, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim().to_string();
    let Some(span) = error.span() else {
        return ConfigError::new(Location::file_only(path), message);
    };
    let mut located = ConfigError::new(Location::at_offset(path, source, span.start), message);
    if let Some(key) = key_at(source, span.clone()) {
        located = located.key(key);
    }
    if let Some(tenant) = tenant_at(source, span.start) {
        located = located.tenant(tenant);
    }
    located
}

/// The key a span names: the span itself when it covers a key, else the key before `=`.
fn key_at(source: &str, span: std::ops::Range<usize>) -> Option<String> {
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
    let spanned = source.get(span.clone())?.trim();
    if !spanned.is_empty() && spanned.chars().all(is_key_char) {
        let after = source.get(span.end..)?.trim_start();
        if after.starts_with('=') {
            return Some(spanned.to_string());
        }
    }
    let before = source.get(..span.start)?.trim_end();
    let before = before.strip_suffix('=')?.trim_end();
    // The key starts after the last character that cannot be in one (which may be more
    // than a byte long: `͗==` once panicked here, found by the config fuzz target).
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| !is_key_char(*c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let key = &before[start..];
    (!key.is_empty()).then(|| key.to_string())
}

/// The name of the `[[tenant]]` whose table contains `offset`, if the file parses that far.
fn tenant_at(source: &str, offset: usize) -> Option<String> {
    let lenient: LenientConfig = toml::from_str(source).ok()?;
    lenient
        .tenant
        .iter()
        .rfind(|tenant| tenant.span().start <= offset)
        .and_then(|tenant| tenant.get_ref().name.clone())
}

struct Validator<'a> {
    source: &'a str,
    path: &'a Path,
    base: PathBuf,
    /// The node's data directory, once `[node]` is read (default blob stores live there).
    data_dir: PathBuf,
    /// Whether the config has a `[fleet]` (global KV bindings need one).
    in_fleet: bool,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn at(&self, span: std::ops::Range<usize>) -> Location {
        Location::at_offset(self.path, self.source, span.start)
    }

    fn error<T>(&self, value: &Spanned<T>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.at(value.span()), message).key(key)
    }

    fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let node = self.node(raw.node);
        self.data_dir = node.data_dir.clone();
        let server = self.server(raw.server);
        let fleet = self.fleet(raw.fleet);
        self.in_fleet = fleet.is_some();
        let mut tenants = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut claimed: HashMap<Route, String> = HashMap::new();
        for raw_tenant in raw.tenant {
            let header_line = self.at(raw_tenant.span()).line;
            let raw_tenant = raw_tenant.into_inner();
            let name = raw_tenant.name.get_ref().clone();
            if let Some(first_line) = names.get(&name) {
                let error = self
                    .error(&raw_tenant.name, "name", format!(
                        "tenant name `{name}` is already used by the tenant on line {first_line}; names must be unique"
                    ))
                    .tenant(&name);
                self.errors.push(error);
                continue;
            }
            names.insert(name.clone(), header_line);
            if let Some(tenant) = self.tenant(raw_tenant, &mut claimed) {
                tenants.push(tenant);
            }
        }
        Config {
            path: self.path.to_path_buf(),
            node,
            server,
            fleet,
            tenants,
        }
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests;
