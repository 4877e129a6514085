//! A tenant's storage bindings: `kv`, `sql` and `blob`, the names its guest opens stores by.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::ConfigError;
use crate::error::Location;

/// Environment variable read for an S3 access key id when a store names none.
pub const DEFAULT_S3_ACCESS_KEY_ENV: &str = "AWS_ACCESS_KEY_ID";
/// Environment variable read for an S3 secret key when a store names none.
pub const DEFAULT_S3_SECRET_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";

/// The stores a tenant's guest may open, by binding name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stores {
    /// `kv = ["SESSIONS"]` (on sled) or `kv = { SESSIONS = "sled", CACHE = "memory" }`.
    pub kv: BTreeMap<String, KvBackendKind>,
    /// `sql = ["DB"]`: one SQLite file each.
    pub sql: Vec<String>,
    /// `blob = { ASSETS = "…" }`: object stores.
    pub blob: BTreeMap<String, BlobStore>,
}

/// How long a node trusts its cached copy of a global KV value when nothing said it
/// changed (Workers KV's `cacheTtl` default).
pub const DEFAULT_GLOBAL_CACHE_TTL: Duration = Duration::from_secs(60);

/// Which backend holds a KV binding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KvBackendKind {
    /// The node's sled database under `data_dir/kv`: durable, the default.
    #[default]
    Sled,
    /// Process memory, capped per binding and gone at restart: caches and scratch state.
    Memory,
    /// The fleet's JetStream KV, shared by every node, read through a local cache
    /// trusted for `cache_ttl` (updated sooner by the hub's watch). Needs `[fleet]`.
    Global {
        /// The longest a cached value is served without asking the hub.
        cache_ttl: Duration,
    },
}

impl KvBackendKind {
    /// Every backend, by the name the config uses.
    pub const ALL: [(&'static str, KvBackendKind); 3] = [
        ("sled", KvBackendKind::Sled),
        ("memory", KvBackendKind::Memory),
        (
            "global",
            KvBackendKind::Global {
                cache_ttl: DEFAULT_GLOBAL_CACHE_TTL,
            },
        ),
    ];

    /// The backend a config name means.
    pub fn from_name(name: &str) -> Option<KvBackendKind> {
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, kind)| *kind)
    }
}

/// One blob binding: where its objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobStore {
    /// The backend.
    pub location: BlobLocation,
    /// Where the binding is written in the config, for errors found when it is opened.
    pub at: Location,
}

/// Where a blob binding's objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    /// A directory on the node (`file://`, and the default under `data_dir`).
    File(PathBuf),
    /// Process memory, gone at restart (`memory://`): tests and scratch space.
    Memory,
    /// An S3-compatible server (`s3://bucket/prefix`).
    S3(S3Store),
}

/// An `s3://` blob binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Store {
    /// The bucket.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`), possibly empty.
    pub prefix: String,
    /// The server's URL for S3-compatible servers (MinIO, R2, …); AWS when absent.
    pub endpoint: Option<String>,
    /// The region; `us-east-1` when absent.
    pub region: Option<String>,
    /// The environment variable holding the access key id.
    pub access_key_id_env: String,
    /// The environment variable holding the secret access key.
    pub secret_access_key_env: String,
}

/// Parses a blob URL. `base` resolves relative `file://` paths.
pub(crate) fn parse_blob_url(url: &str, base: &Path) -> Result<BlobLocation, String> {
    if let Some(path) = url.strip_prefix("file://") {
        if path.is_empty() {
            return Err("`file://` needs a directory, e.g. \"file://./data/assets\"".into());
        }
        let path = Path::new(path);
        return Ok(BlobLocation::File(if path.is_absolute() {
            path.to_path_buf()
        } else {
            base.join(path)
        }));
    }
    if url == "memory://" {
        return Ok(BlobLocation::Memory);
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("`s3://` needs a bucket, e.g. \"s3://my-bucket/prefix\"".into());
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|segment| segment.is_empty() || segment == "..")
            && !prefix.is_empty()
        {
            return Err(format!(
                "the prefix `{prefix}` has an empty or `..` segment"
            ));
        }
        return Ok(BlobLocation::S3(S3Store {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint: None,
            region: None,
            access_key_id_env: DEFAULT_S3_ACCESS_KEY_ENV.to_string(),
            secret_access_key_env: DEFAULT_S3_SECRET_KEY_ENV.to_string(),
        }));
    }
    Err(format!(
        "`{url}` is not a blob store URL; use \"file://DIR\", \"s3://BUCKET/PREFIX\" or \"memory://\""
    ))
}

/// Binding names become file names and appear in guests' code: keep them identifiers.
pub(crate) fn is_binding_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why `name` cannot be a binding's name.
pub(crate) fn not_a_binding_name(name: &str) -> String {
    format!(
        "`{name}` is not a binding name; use letters, digits and `_`, starting with a letter (at most 63), e.g. \"SESSIONS\""
    )
}

impl crate::Validator<'_> {
    /// `kv = [...]` (on sled) or `kv = { NAME = "backend" }`.
    pub(crate) fn kv_bindings(
        &self,
        raw: Option<Spanned<toml::Value>>,
        errors: &mut Vec<ConfigError>,
    ) -> BTreeMap<String, KvBackendKind> {
        let Some(raw) = raw else {
            return BTreeMap::new();
        };
        let bindings = self.kv_binding_kinds(&raw, errors);
        if !self.in_fleet {
            for (name, kind) in &bindings {
                if matches!(kind, KvBackendKind::Global { .. }) {
                    errors.push(self.error(
                        &raw,
                        &format!("kv.{name}"),
                        "a global KV binding lives in the fleet's hub; add a [fleet] section with `nats = [...]`",
                    ));
                }
            }
        }
        bindings
    }

    fn kv_binding_kinds(
        &self,
        raw: &Spanned<toml::Value>,
        errors: &mut Vec<ConfigError>,
    ) -> BTreeMap<String, KvBackendKind> {
        let raw = raw.clone();
        let span = raw.span();
        let shape = "a list of binding names, or a table of binding name = backend (\"sled\", \"memory\", \"global\" or { backend = \"global\", cache_ttl = \"30s\" })";
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
                    if !is_binding_name(name) {
                        errors.push(self.error(&raw, &key, not_a_binding_name(name)));
                        continue;
                    }
                    if let toml::Value::Table(options) = backend {
                        match self.kv_table(options) {
                            Ok(kind) => {
                                bindings.insert(name.clone(), kind);
                            }
                            Err(message) => errors.push(self.error(&raw, &key, message)),
                        }
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

    /// `NAME = { backend = "global", cache_ttl = "30s" }`.
    fn kv_table(&self, options: &toml::Table) -> Result<KvBackendKind, String> {
        if let Some(unknown) = options
            .keys()
            .find(|k| !["backend", "cache_ttl"].contains(&k.as_str()))
        {
            return Err(format!(
                "unknown key `{unknown}`; a KV binding table may set `backend` and `cache_ttl`"
            ));
        }
        let backend = match options.get("backend") {
            None => "sled",
            Some(toml::Value::String(name)) => name.as_str(),
            Some(other) => return Err(format!("`backend` must be a string, not {other}")),
        };
        let kind = KvBackendKind::from_name(backend).ok_or_else(|| {
            format!("`{backend}` is not a KV backend; use \"sled\", \"memory\" or \"global\"")
        })?;
        match (kind, options.get("cache_ttl")) {
            (KvBackendKind::Global { .. }, Some(toml::Value::String(ttl))) => {
                let cache_ttl = crate::parse_duration(ttl)?;
                if cache_ttl > Duration::from_secs(24 * 3600) {
                    return Err("`cache_ttl` is at most 24h".into());
                }
                Ok(KvBackendKind::Global { cache_ttl })
            }
            (KvBackendKind::Global { .. }, Some(other)) => Err(format!(
                "`cache_ttl` is a duration like \"30s\", not {other}"
            )),
            (_, Some(_)) => Err("`cache_ttl` applies only to `backend = \"global\"`".into()),
            (kind, None) => Ok(kind),
        }
    }

    /// `kv = [...]` or `sql = [...]`: unique identifiers.
    pub(crate) fn binding_names(
        &self,
        raw: Option<Spanned<Vec<Spanned<String>>>>,
        key: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Vec<String> {
        let mut names = Vec::new();
        for name in raw.map(Spanned::into_inner).unwrap_or_default() {
            if !is_binding_name(name.get_ref()) {
                errors.push(self.error(&name, key, not_a_binding_name(name.get_ref())));
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
    pub(crate) fn blob_stores(
        &self,
        tenant: &str,
        raw: BTreeMap<String, Spanned<toml::Value>>,
        errors: &mut Vec<ConfigError>,
    ) -> BTreeMap<String, BlobStore> {
        let mut stores = BTreeMap::new();
        for (name, value) in raw {
            let key = format!("blob.{name}");
            if !is_binding_name(&name) {
                errors.push(self.error(&value, &key, not_a_binding_name(&name)));
                continue;
            }
            let at = self.at(value.span());
            let default =
                || BlobLocation::File(self.data_dir.join("blobs").join(tenant).join(&name));
            let location = match value.get_ref() {
                toml::Value::String(url) => parse_blob_url(url, &self.base),
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
            Some(url) => parse_blob_url(&url, &self.base)?,
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
}
