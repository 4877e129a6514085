//! The config as written: serde structs that keep every value's span, so that validation
//! (in `lib.rs`) can point at the line that is wrong.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub node: Option<Spanned<RawNode>>,
    #[serde(default)]
    pub server: Option<Spanned<RawServer>>,
    #[serde(default)]
    pub fleet: Option<Spanned<RawFleet>>,
    #[serde(default)]
    pub tenant: Vec<Spanned<RawTenant>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFleet {
    pub nats: Option<Spanned<Vec<Spanned<String>>>>,
    pub name: Option<Spanned<String>>,
    pub credentials: Option<Spanned<String>>,
    pub token_env: Option<Spanned<String>>,
    pub replicas: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub id: Option<Spanned<String>>,
    pub data_dir: Option<Spanned<String>>,
    pub max_instances: Option<Spanned<u32>>,
    pub watch: Option<Spanned<bool>>,
    pub cache_memory: Option<Spanned<SizeValue>>,
    pub compile_timeout: Option<Spanned<String>>,
    pub compile_memory: Option<Spanned<SizeValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<Spanned<String>>,
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    pub geo: Option<BTreeMap<String, Spanned<String>>>,
    pub tls: Option<Spanned<RawTlsListener>>,
    pub admin: Option<Spanned<RawAdmin>>,
    pub max_connections: Option<Spanned<u32>>,
    pub header_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_header_size: Option<Spanned<SizeValue>>,
    pub body_prefetch: Option<Spanned<SizeValue>>,
    pub body_timeout: Option<Spanned<String>>,
    pub send_timeout: Option<Spanned<String>>,
    pub max_open_requests: Option<Spanned<u32>>,
    pub shutdown_grace: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTlsListener {
    pub listen: Option<Spanned<String>>,
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub listen: Option<Spanned<String>>,
    pub token_env: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    pub name: Spanned<String>,
    pub component: Spanned<String>,
    pub routes: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub vars: BTreeMap<String, Spanned<toml::Value>>,
    pub limits: Option<Spanned<RawLimits>>,
    pub reuse: Option<Spanned<bool>>,
    /// A list of names, or a table of name = backend; validated by hand (serde's
    /// untagged enums lose the spans that errors need).
    pub kv: Option<Spanned<toml::Value>>,
    pub sql: Option<Spanned<Vec<Spanned<String>>>>,
    /// Binding name → URL string or a table; validated by hand for clear messages.
    #[serde(default)]
    pub blob: BTreeMap<String, Spanned<toml::Value>>,
    pub outbound: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub secrets: BTreeMap<String, Spanned<toml::Value>>,
    pub tls: Option<Spanned<RawCertificate>>,
    /// A directory, or a table; validated by hand for clear messages.
    pub assets: Option<Spanned<toml::Value>>,
    pub cache: Option<Spanned<RawCache>>,
    #[serde(default)]
    pub durable_objects: BTreeMap<String, Spanned<crate::objects::RawObjectClass>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    pub enabled: Option<Spanned<bool>>,
    pub max_size: Option<Spanned<SizeValue>>,
    pub max_object: Option<Spanned<SizeValue>>,
    pub disk: Option<Spanned<SizeValue>>,
    pub stale_while_revalidate: Option<Spanned<String>>,
    pub stale_if_error: Option<Spanned<String>>,
    pub cross_version: Option<Spanned<bool>>,
    pub jitter: Option<Spanned<f64>>,
    pub lock_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub fuel: Option<Spanned<u64>>,
    pub cpu: Option<Spanned<String>>,
    pub memory: Option<Spanned<SizeValue>>,
    pub timeout: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<u32>>,
    pub per_client: Option<Spanned<u32>>,
    pub body: Option<Spanned<SizeValue>>,
    pub sql_size: Option<Spanned<SizeValue>>,
    pub subrequests: Option<Spanned<u32>>,
    pub subrequest_body: Option<Spanned<SizeValue>>,
    pub websockets: Option<Spanned<u32>>,
    pub live_objects: Option<Spanned<u32>>,
}

/// A size may be written `"64MiB"` or as a plain number of bytes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// Just enough of a tenant to say which tenant a structural error sits in.
#[derive(Debug, Deserialize)]
pub(crate) struct LenientConfig {
    #[serde(default)]
    pub tenant: Vec<Spanned<LenientTenant>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LenientTenant {
    pub name: Option<String>,
}
