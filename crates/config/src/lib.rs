//! outpost's node configuration.
//!
//! The TOML is first read into serde "raw" structs that keep each value's span, then
//! validated into [`Config`]: once a [`TenantConfig`] exists its routes parse, its limits are
//! in range, its sizes are bytes and its durations are [`Duration`]s. Every semantic problem
//! is collected, so `outpost check` can report them all at once, each with file, line,
//! tenant and key.
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

mod error;
mod operations;
mod outbound;
mod raw;
mod route;
mod secrets;
mod stores;
mod units;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, ConfigErrors, Location};
pub use operations::{
    AdminConfig, CertificateFiles, ConnectionLimits, DEFAULT_ADMIN_LISTEN, DEFAULT_ADMIN_TOKEN_ENV,
    DEFAULT_TLS_LISTEN, TlsListener,
};
pub use outbound::Origin;
pub use route::{HostPattern, Route};
pub use secrets::Secret;
pub use stores::{
    BlobLocation, BlobStore, DEFAULT_S3_ACCESS_KEY_ENV, DEFAULT_S3_SECRET_KEY_ENV, KvBackendKind,
    S3Store, Stores,
};
pub use units::{format_size, parse_duration, parse_size};

use raw::{LenientConfig, RawConfig, RawLimits, RawTenant, SizeValue};
use toml::Spanned;

/// Address the public listener binds when `[server] listen` is not set.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Node id when `[node] id` is not set.
pub const DEFAULT_NODE_ID: &str = "outpost";
/// Data directory (relative to the config file) when `[node] data_dir` is not set.
pub const DEFAULT_DATA_DIR: &str = "data";
/// How many instances may be live on the node at once, across all tenants.
pub const DEFAULT_MAX_INSTANCES: u32 = 1000;

/// Fuel per request when a tenant sets none: roughly a second of busy guest CPU.
pub const DEFAULT_FUEL: u64 = 1_000_000_000;
/// Linear memory per instance when a tenant sets none (Workers' isolate limit).
pub const DEFAULT_MEMORY_BYTES: u64 = 128 << 20;
/// Wall-clock budget per request when a tenant sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests a tenant may have in flight when it sets none.
pub const DEFAULT_CONCURRENCY: u32 = 64;
/// Request body size when a tenant sets none (Workers' free-plan limit).
pub const DEFAULT_BODY_BYTES: u64 = 100 << 20;
/// Size cap of each SQLite database when a tenant sets none.
pub const DEFAULT_SQL_SIZE_BYTES: u64 = 1 << 30;
/// The smallest SQLite size cap (a few pages).
pub const MIN_SQL_SIZE_BYTES: u64 = 64 << 10;

/// The smallest memory cap that can hold a Rust guest's stack and heap.
pub const MIN_MEMORY_BYTES: u64 = 1 << 20;
/// The largest memory a 32-bit wasm instance can address.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;
/// Upper bound on a request's wall-clock budget.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Upper bound on a tenant's concurrency.
pub const MAX_CONCURRENCY: u32 = 100_000;

/// A whole, valid node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[node]`.
    pub node: NodeConfig,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[[tenant]]`, in file order.
    pub tenants: Vec<TenantConfig>,
}

/// `[node]`: this node's identity and storage.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Names the node in logs and (later) in headers.
    pub id: String,
    /// Where compiled components and tenants' data live; relative paths in the config are
    /// resolved against the config file's directory.
    pub data_dir: PathBuf,
    /// Total live instances the pooling allocator reserves room for.
    pub max_instances: u32,
    /// Reload when the config file changes (as on SIGHUP).
    pub watch: bool,
}

/// `[server]`: the public listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the plain HTTP listener (HTTP/1.1 and cleartext HTTP/2).
    pub listen: SocketAddr,
    /// Peers whose `x-forwarded-for` is believed (load balancers in front of the node).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Client networks and their ISO country codes (`geo`), for `x-outpost-country`.
    pub geo: Vec<(ipnet::IpNet, String)>,
    /// The HTTPS listener, if any.
    pub tls: Option<TlsListener>,
    /// The admin API, if any.
    pub admin: Option<AdminConfig>,
    /// Limits on client connections, on both listeners.
    pub connections: ConnectionLimits,
}

/// One tenant: a component, the routes it answers, and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// Unique on the node; lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// The `wasi:http` component, resolved against the config file's directory.
    pub component: PathBuf,
    /// Where `component` is written, for errors about the component itself.
    pub component_at: Location,
    /// At least one route.
    pub routes: Vec<Route>,
    /// Plain variables, given to the guest as environment variables.
    pub vars: BTreeMap<String, String>,
    /// Per-request limits.
    pub limits: Limits,
    /// Reuse an instance for several requests (sequentially) instead of a fresh one each.
    pub reuse: bool,
    /// The stores its guest may open.
    pub stores: Stores,
    /// The origins its guest may call (`outbound`); none by default.
    pub outbound: Vec<Origin>,
    /// Values the guest reads like vars, from the node's environment or files.
    pub secrets: BTreeMap<String, Secret>,
    /// Its own certificate for its host routes on the TLS listener (`tls`), chosen by SNI.
    pub tls: Option<CertificateFiles>,
}

/// Per-request limits of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (deterministic units of guest work) per request.
    pub fuel: u64,
    /// CPU time per request, measured on the thread's CPU clock while the guest runs.
    pub cpu: Option<Duration>,
    /// Linear memory (and table) bytes per instance.
    pub memory: u64,
    /// Wall-clock time per request, including streaming the body and work after the
    /// response.
    pub timeout: Duration,
    /// Requests in flight at once; more get 503 with `Retry-After`.
    pub concurrency: u32,
    /// Request body bytes; more get 413.
    pub body: u64,
    /// Bytes each of the tenant's SQLite databases may grow to.
    pub sql_size: u64,
    /// Outbound requests one request may make.
    pub subrequests: u32,
    /// Bytes of one outbound response's body a guest may read.
    pub subrequest_body: u64,
}

/// Outbound requests per request when a tenant sets none (Workers' free-plan figure).
pub const DEFAULT_SUBREQUESTS: u32 = 50;
/// Upper bound on `limits.subrequests`.
pub const MAX_SUBREQUESTS: u32 = 10_000;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            fuel: DEFAULT_FUEL,
            cpu: None,
            memory: DEFAULT_MEMORY_BYTES,
            timeout: DEFAULT_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            body: DEFAULT_BODY_BYTES,
            sql_size: DEFAULT_SQL_SIZE_BYTES,
            subrequests: DEFAULT_SUBREQUESTS,
            subrequest_body: DEFAULT_BODY_BYTES,
        }
    }
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
        let after = source[span.end..].trim_start();
        if after.starts_with('=') {
            return Some(spanned.to_string());
        }
    }
    let before = source[..span.start].trim_end();
    let before = before.strip_suffix('=')?.trim_end();
    let start = before.rfind(|c: char| !is_key_char(c)).map_or(0, |i| i + 1);
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
            tenants,
        }
    }

    fn node(&mut self, raw: Option<Spanned<raw::RawNode>>) -> NodeConfig {
        let mut node = NodeConfig {
            id: DEFAULT_NODE_ID.to_string(),
            data_dir: self.resolve(DEFAULT_DATA_DIR),
            max_instances: DEFAULT_MAX_INSTANCES,
            watch: false,
        };
        let Some(raw) = raw.map(Spanned::into_inner) else {
            return node;
        };
        node.watch = raw.watch.is_some_and(Spanned::into_inner);
        if let Some(id) = raw.id {
            if is_name(id.get_ref()) {
                node.id = id.into_inner();
            } else {
                let error = self.error(
                    &id,
                    "node.id",
                    "use lowercase letters, digits, `-` and `_` (at most 63)",
                );
                self.errors.push(error);
            }
        }
        if let Some(dir) = raw.data_dir {
            if dir.get_ref().trim().is_empty() {
                let error = self.error(&dir, "node.data_dir", "cannot be empty");
                self.errors.push(error);
            } else {
                node.data_dir = self.resolve(dir.get_ref());
            }
        }
        if let Some(max) = raw.max_instances {
            if (1..=100_000).contains(max.get_ref()) {
                node.max_instances = *max.get_ref();
            } else {
                let error = self.error(&max, "node.max_instances", "must be between 1 and 100000");
                self.errors.push(error);
            }
        }
        node
    }

    fn server(&mut self, raw: Option<Spanned<raw::RawServer>>) -> ServerConfig {
        let default = DEFAULT_LISTEN
            .parse()
            .expect("DEFAULT_LISTEN is a socket address");
        let mut server = ServerConfig {
            listen: default,
            trusted_proxies: Vec::new(),
            geo: Vec::new(),
            tls: None,
            admin: None,
            connections: ConnectionLimits::default(),
        };
        let Some(mut raw) = raw.map(Spanned::into_inner) else {
            return server;
        };
        server.connections = self.connection_limits(&mut raw);
        server.tls = raw.tls.take().and_then(|tls| self.tls_listener(tls));
        server.admin = raw.admin.take().and_then(|admin| self.admin(admin));
        for proxy in raw.trusted_proxies.unwrap_or_default() {
            let text = proxy.get_ref();
            let parsed = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => server.trusted_proxies.push(net),
                Err(_) => {
                    let error = self.error(&proxy, "server.trusted_proxies", format!(
                        "`{text}` is not an address or network; write it like \"10.0.0.1\" or \"10.0.0.0/8\""
                    ));
                    self.errors.push(error);
                }
            }
        }
        for (network, country) in raw.geo.unwrap_or_default() {
            let net = network
                .parse::<ipnet::IpNet>()
                .or_else(|_| network.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            let code = country.get_ref();
            match net {
                Err(_) => {
                    let error = self.error(&country, "server.geo", format!(
                        "`{network}` is not an address or network; write it like \"203.0.113.0/24\""
                    ));
                    self.errors.push(error);
                }
                Ok(_) if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) => {
                    let error = self.error(
                        &country,
                        "server.geo",
                        format!("`{code}` is not a two-letter ISO country code like \"DE\""),
                    );
                    self.errors.push(error);
                }
                Ok(net) => server.geo.push((net, code.clone())),
            }
        }
        // The most specific network wins.
        server
            .geo
            .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        if let Some(listen) = raw.listen {
            match listen.get_ref().parse() {
                Ok(addr) => server.listen = addr,
                Err(_) => {
                    let error = self.error(&listen, "server.listen", format!(
                        "`{}` is not a socket address; write it like \"0.0.0.0:8080\" or \"[::]:8080\"",
                        listen.get_ref()
                    ));
                    self.errors.push(error);
                }
            }
        }
        server
    }

    /// Validates one tenant; `None` if anything about it is wrong (the errors say what).
    fn tenant(
        &mut self,
        raw: RawTenant,
        claimed: &mut HashMap<Route, String>,
    ) -> Option<TenantConfig> {
        let before = self.errors.len();
        let name = raw.name.get_ref().clone();
        let mut errors = Vec::new();
        if !is_name(&name) {
            errors.push(self.error(&raw.name, "name", "use lowercase letters, digits, `-` and `_`, starting with a letter or digit (at most 63)"));
        }
        if raw.component.get_ref().trim().is_empty() {
            errors.push(self.error(
                &raw.component,
                "component",
                "give the path of the tenant's .wasm component",
            ));
        }
        let component = self.resolve(raw.component.get_ref());
        let component_at = self.at(raw.component.span());

        let mut routes = Vec::new();
        if raw.routes.get_ref().is_empty() {
            errors.push(self.error(
                &raw.routes,
                "routes",
                "a tenant needs at least one route, e.g. [\"example.com\"] or [\"/app\"]",
            ));
        }
        for text in raw.routes.get_ref() {
            match Route::parse(text.get_ref()) {
                Ok(route) => {
                    if routes.contains(&route) {
                        errors.push(self.error(
                            text,
                            "routes",
                            format!("route `{route}` is listed twice"),
                        ));
                    } else if let Some(owner) = claimed.get(&route).filter(|owner| **owner != name)
                    {
                        errors.push(self.error(text, "routes", format!(
                            "route `{route}` is already claimed by tenant `{owner}`; each route belongs to one tenant"
                        )));
                    } else {
                        claimed.insert(route.clone(), name.clone());
                        routes.push(route);
                    }
                }
                Err(message) => errors.push(self.error(text, "routes", message)),
            }
        }

        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in raw.vars {
            let text = match value.get_ref() {
                toml::Value::String(s) => Some(s.clone()),
                toml::Value::Integer(i) => Some(i.to_string()),
                toml::Value::Float(f) => Some(f.to_string()),
                toml::Value::Boolean(b) => Some(b.to_string()),
                _ => None,
            };
            let var_key = format!("vars.{key}");
            if !is_env_name(&key) {
                errors.push(self.error(
                    &value,
                    &var_key,
                    "a variable name is letters, digits and `_`, not starting with a digit",
                ));
            }
            match text {
                Some(text) => {
                    vars.insert(key, text);
                }
                None => errors.push(self.error(
                    &value,
                    &var_key,
                    "a variable is a string, number or boolean",
                )),
            }
        }

        let limits = match raw.limits {
            Some(limits) => self.limits(limits.into_inner(), &mut errors),
            None => Limits::default(),
        };
        let reuse = raw.reuse.is_some_and(Spanned::into_inner);
        let stores = Stores {
            kv: self.kv_bindings(raw.kv, &mut errors),
            sql: self.binding_names(raw.sql, "sql", &mut errors),
            blob: self.blob_stores(&name, raw.blob, &mut errors),
        };
        let secrets = self.secrets(raw.secrets, &vars, &mut errors);
        let tls = raw.tls.map(|tls| self.certificate(tls));
        let mut outbound: Vec<Origin> = Vec::new();
        for origin in raw.outbound.map(Spanned::into_inner).unwrap_or_default() {
            match Origin::parse(origin.get_ref()) {
                Ok(parsed) if outbound.contains(&parsed) => errors.push(self.error(
                    &origin,
                    "outbound",
                    format!("`{}` is listed twice", origin.get_ref()),
                )),
                Ok(parsed) => outbound.push(parsed),
                Err(message) => errors.push(self.error(&origin, "outbound", message)),
            }
        }

        for error in errors {
            self.errors.push(error.tenant(&name));
        }
        (self.errors.len() == before).then_some(TenantConfig {
            name,
            component,
            component_at,
            routes,
            vars,
            limits,
            reuse,
            stores,
            outbound,
            secrets,
            tls,
        })
    }

    /// `secrets = { NAME = { env = "VAR" } | { file = "path" } }`, read now. An error
    /// names the variable or file, never a value.
    fn secrets(
        &self,
        raw: BTreeMap<String, Spanned<toml::Value>>,
        vars: &BTreeMap<String, String>,
        errors: &mut Vec<ConfigError>,
    ) -> BTreeMap<String, Secret> {
        let mut secrets = BTreeMap::new();
        for (name, value) in raw {
            let key = format!("secrets.{name}");
            if !is_env_name(&name) {
                errors.push(self.error(
                    &value,
                    &key,
                    "a secret's name is letters, digits and `_`, not starting with a digit",
                ));
                continue;
            }
            if vars.contains_key(&name) {
                errors.push(self.error(
                    &value,
                    &key,
                    format!("`{name}` is also a var; a name is a var or a secret"),
                ));
                continue;
            }
            let table = value.get_ref().as_table();
            let source = table.filter(|t| t.len() == 1).and_then(|t| t.iter().next());
            let read = match source {
                Some((kind, toml::Value::String(var))) if kind == "env" => std::env::var(var)
                    .map_err(|_| format!("environment variable `{var}` is not set; set it in outpost's environment")),
                Some((kind, toml::Value::String(file))) if kind == "file" => {
                    let path = self.resolve(file);
                    std::fs::read_to_string(&path)
                        .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))
                }
                _ => Err("a secret is { env = \"VAR\" } or { file = \"path\" }".into()),
            };
            match read {
                Ok(text) => {
                    secrets.insert(name, Secret::new(text));
                }
                Err(message) => errors.push(self.error(&value, &key, message)),
            }
        }
        secrets
    }

    /// `kv = [...]` (on sled) or `kv = { NAME = "backend" }`.
    fn kv_bindings(
        &self,
        raw: Option<Spanned<toml::Value>>,
        errors: &mut Vec<ConfigError>,
    ) -> BTreeMap<String, KvBackendKind> {
        let Some(raw) = raw else {
            return BTreeMap::new();
        };
        let span = raw.span();
        let shape = "a list of binding names, or a table of binding name = backend (\"sled\" or \"memory\")";
        match raw.get_ref() {
            toml::Value::Array(items) => {
                let mut names = Vec::new();
                for item in items {
                    match item {
                        toml::Value::String(name) => {
                            names.push(Spanned::new(span.clone(), name.clone()))
                        }
                        _ => {
                            errors.push(self.error(&raw, "kv", shape));
                            return BTreeMap::new();
                        }
                    }
                }
                self.binding_names(Some(Spanned::new(span, names)), "kv", errors)
                    .into_iter()
                    .map(|name| (name, KvBackendKind::default()))
                    .collect()
            }
            toml::Value::Table(table) => {
                let mut bindings = BTreeMap::new();
                for (name, backend) in table {
                    let key = format!("kv.{name}");
                    if !stores::is_binding_name(name) {
                        errors.push(self.error(&raw, &key, stores::not_a_binding_name(name)));
                        continue;
                    }
                    match backend.as_str().and_then(KvBackendKind::from_name) {
                        Some(kind) => {
                            bindings.insert(name.clone(), kind);
                        }
                        None => {
                            let known: Vec<String> = KvBackendKind::ALL
                                .iter()
                                .map(|(name, _)| format!("\"{name}\""))
                                .collect();
                            errors.push(self.error(
                                &raw,
                                &key,
                                format!(
                                        "`{}` is not a KV backend; use {}",
                                        backend
                                            .as_str()
                                            .map_or_else(|| backend.to_string(), str::to_string),
                                        known.join(" or ")
                                    ),
                            ));
                        }
                    }
                }
                bindings
            }
            _ => {
                errors.push(self.error(&raw, "kv", shape));
                BTreeMap::new()
            }
        }
    }

    /// `kv = [...]` or `sql = [...]`: unique identifiers.
    fn binding_names(
        &self,
        raw: Option<Spanned<Vec<Spanned<String>>>>,
        key: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Vec<String> {
        let mut names = Vec::new();
        for name in raw.map(Spanned::into_inner).unwrap_or_default() {
            if !stores::is_binding_name(name.get_ref()) {
                errors.push(self.error(&name, key, stores::not_a_binding_name(name.get_ref())));
            } else if names.contains(name.get_ref()) {
                errors.push(self.error(
                    &name,
                    key,
                    format!("binding `{}` is listed twice", name.get_ref()),
                ));
            } else {
                names.push(name.into_inner());
            }
        }
        names
    }

    /// `blob = { NAME = "url" | { url = …, endpoint = …, … } }`.
    fn blob_stores(
        &self,
        tenant: &str,
        raw: BTreeMap<String, Spanned<toml::Value>>,
        errors: &mut Vec<ConfigError>,
    ) -> BTreeMap<String, BlobStore> {
        let mut stores = BTreeMap::new();
        for (name, value) in raw {
            let key = format!("blob.{name}");
            if !stores::is_binding_name(&name) {
                errors.push(self.error(&value, &key, stores::not_a_binding_name(&name)));
                continue;
            }
            let at = self.at(value.span());
            let default =
                || BlobLocation::File(self.data_dir.join("blobs").join(tenant).join(&name));
            let location = match value.get_ref() {
                toml::Value::String(url) => stores::parse_blob_url(url, &self.base),
                toml::Value::Table(table) => self.blob_table(table, default),
                _ => Err("a blob binding is a URL string or a table like { url = \"s3://bucket\", endpoint = \"http://…\" }".into()),
            };
            match location {
                Ok(location) => {
                    stores.insert(name, BlobStore { location, at });
                }
                Err(message) => errors.push(self.error(&value, &key, message)),
            }
        }
        stores
    }

    fn blob_table(
        &self,
        table: &toml::Table,
        default: impl FnOnce() -> BlobLocation,
    ) -> Result<BlobLocation, String> {
        const KEYS: [&str; 5] = [
            "url",
            "endpoint",
            "region",
            "access_key_id_env",
            "secret_access_key_env",
        ];
        if let Some(unknown) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!(
                "unknown key `{unknown}`; a blob binding may set {}",
                KEYS.join(", ")
            ));
        }
        let text = |key: &str| -> Result<Option<String>, String> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(format!("`{key}` must be a non-empty string")),
            }
        };
        let mut location = match text("url")? {
            Some(url) => stores::parse_blob_url(&url, &self.base)?,
            None => default(),
        };
        let s3_keys = [
            "endpoint",
            "region",
            "access_key_id_env",
            "secret_access_key_env",
        ];
        match &mut location {
            BlobLocation::S3(s3) => {
                s3.endpoint = text("endpoint")?;
                s3.region = text("region")?;
                if let Some(var) = text("access_key_id_env")? {
                    s3.access_key_id_env = var;
                }
                if let Some(var) = text("secret_access_key_env")? {
                    s3.secret_access_key_env = var;
                }
                if let Some(endpoint) = &s3.endpoint
                    && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
                {
                    return Err(format!(
                        "endpoint `{endpoint}` must be an http:// or https:// URL"
                    ));
                }
            }
            _ => {
                if let Some(key) = s3_keys.iter().find(|k| table.contains_key(**k)) {
                    return Err(format!("`{key}` applies only to s3:// stores"));
                }
            }
        }
        Ok(location)
    }

    fn limits(&self, raw: RawLimits, errors: &mut Vec<ConfigError>) -> Limits {
        let mut limits = Limits::default();
        if let Some(fuel) = raw.fuel {
            if *fuel.get_ref() == 0 {
                errors.push(self.error(&fuel, "limits.fuel", "must be above 0"));
            } else {
                limits.fuel = fuel.into_inner();
            }
        }
        if let Some(memory) = raw.memory {
            match size(memory.get_ref()) {
                Ok(bytes) if (MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&bytes) => {
                    limits.memory = bytes;
                }
                Ok(bytes) => errors.push(self.error(
                    &memory,
                    "limits.memory",
                    format!(
                        "{} is out of range; use between 1MiB and 4GiB",
                        format_size(bytes)
                    ),
                )),
                Err(message) => errors.push(self.error(&memory, "limits.memory", message)),
            }
        }
        if let Some(sql_size) = raw.sql_size {
            match size(sql_size.get_ref()) {
                Ok(bytes) if bytes >= MIN_SQL_SIZE_BYTES => limits.sql_size = bytes,
                Ok(_) => {
                    errors.push(self.error(&sql_size, "limits.sql_size", "must be at least 64KiB"))
                }
                Err(message) => errors.push(self.error(&sql_size, "limits.sql_size", message)),
            }
        }
        if let Some(body) = raw.body {
            match size(body.get_ref()) {
                Ok(bytes) => limits.body = bytes,
                Err(message) => errors.push(self.error(&body, "limits.body", message)),
            }
        }
        if let Some(timeout) = raw.timeout {
            match parse_duration(timeout.get_ref()) {
                Ok(d) if !d.is_zero() && d <= MAX_TIMEOUT => limits.timeout = d,
                Ok(_) => errors.push(self.error(
                    &timeout,
                    "limits.timeout",
                    "must be above 0 and at most 1h",
                )),
                Err(message) => errors.push(self.error(&timeout, "limits.timeout", message)),
            }
        }
        if let Some(cpu) = raw.cpu {
            match parse_duration(cpu.get_ref()) {
                Ok(d) if !d.is_zero() => limits.cpu = Some(d),
                Ok(_) => errors.push(self.error(&cpu, "limits.cpu", "must be above 0")),
                Err(message) => errors.push(self.error(&cpu, "limits.cpu", message)),
            }
        }
        if let Some(subrequests) = raw.subrequests {
            if (1..=MAX_SUBREQUESTS).contains(subrequests.get_ref()) {
                limits.subrequests = subrequests.into_inner();
            } else {
                errors.push(self.error(
                    &subrequests,
                    "limits.subrequests",
                    format!("must be between 1 and {MAX_SUBREQUESTS}"),
                ));
            }
        }
        if let Some(bytes) = raw.subrequest_body {
            match size(bytes.get_ref()) {
                Ok(value) => limits.subrequest_body = value,
                Err(message) => errors.push(self.error(&bytes, "limits.subrequest_body", message)),
            }
        }
        if let Some(concurrency) = raw.concurrency {
            if (1..=MAX_CONCURRENCY).contains(concurrency.get_ref()) {
                limits.concurrency = concurrency.into_inner();
            } else {
                errors.push(self.error(
                    &concurrency,
                    "limits.concurrency",
                    format!("must be between 1 and {MAX_CONCURRENCY}"),
                ));
            }
        }
        limits
    }
}

fn size(value: &SizeValue) -> Result<u64, String> {
    match value {
        SizeValue::Bytes(bytes) => Ok(*bytes),
        SizeValue::Text(text) => parse_size(text),
    }
}

/// Tenant and node names end up in paths and metric labels: keep them plain.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests;
