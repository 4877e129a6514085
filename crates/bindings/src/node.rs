//! The wiring: a node's backends, built once by the embedder, and each tenant's
//! capability contexts built from its validated config (Spin's `configure_app`: a
//! binding that cannot be set up fails the tenant's load, not a request).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use outpost_config::{KvBackendKind, TenantConfig};

use outpost_cache::{HttpCache, Settings, StaleDefaults};

use crate::blob::{BlobBucket, BlobCtx, BlobSetupError};
use crate::cache::CacheCtx;
use crate::http::OutboundClient;
use crate::kv::{GlobalBinding, GlobalKvBackend, KvBackend, KvCtx, KvError, MemoryKv, SledKv};
use crate::meters::StoreMeters;
use crate::objects::ObjectsCtx;
use crate::sql::{SqlBackend, SqlCtx, SqliteDatabases};

/// Why a tenant's bindings could not be built, or the node's stores opened.
#[derive(Debug, thiserror::Error)]
pub enum StoresError {
    /// The node's sled database would not open.
    #[error("{0}")]
    Kv(#[source] KvError),
    /// A global KV binding on a node that is not one of a fleet.
    #[error(
        "tenant `{tenant}`: KV binding `{binding}` is global, but this node has no fleet to keep it in"
    )]
    NoFleet { tenant: String, binding: String },
    /// A blob binding's store could not be set up.
    #[error("{at}: tenant `{tenant}`: blob binding `{binding}`: {source}")]
    Blob {
        /// The tenant whose config declares the binding.
        tenant: String,
        /// The binding's name.
        binding: String,
        /// Where the binding is configured.
        at: outpost_config::Location,
        /// What is wrong.
        #[source]
        source: Box<BlobSetupError>,
    },
}

/// The backends every tenant on the node shares: sled under `data_dir/kv`, process
/// memory for `"memory"` KV bindings, SQLite files under `data_dir/sql` (and, one per
/// Durable Object, under `data_dir/objects`).
pub struct NodeStores {
    sled: Arc<SledKv>,
    memory: Arc<MemoryKv>,
    sqlite: Arc<SqliteDatabases>,
    /// Durable Objects' databases, under `data_dir/objects`.
    object_databases: Arc<SqliteDatabases>,
    meters: StoreMeters,
    /// Every tenant's HTTP cache (the Cache API's and the one in front of the guest).
    http_cache: Arc<HttpCache>,
    /// The fleet's global KV, when the node is one of a fleet.
    global: std::sync::OnceLock<Arc<dyn GlobalKvBackend>>,
}

/// One tenant's capability contexts, shared by all its instances.
pub struct TenantBindings {
    /// Its KV bindings.
    pub kv: KvCtx,
    /// Its SQL bindings.
    pub sql: SqlCtx,
    /// Its blob bindings.
    pub blob: BlobCtx,
    /// Its outbound client, if it lists origins.
    pub outbound: Option<Arc<OutboundClient>>,
    pub cache: CacheCtx,
    /// Its Durable Object classes.
    pub objects: Arc<ObjectsCtx>,
}

impl NodeStores {
    /// The node's backends under `data_dir`. Nothing is opened yet: sled on first use
    /// (or [`NodeStores::open_kv_now`]), each SQLite file when a guest opens it.
    pub fn new(data_dir: &Path, cache_memory: u64) -> Arc<NodeStores> {
        let sql_dir: PathBuf = data_dir.join("sql");
        Arc::new(NodeStores {
            sled: Arc::new(SledKv::new(&data_dir.join("kv"))),
            memory: Arc::new(MemoryKv::default()),
            sqlite: SqliteDatabases::new(sql_dir),
            object_databases: SqliteDatabases::new(data_dir.join("objects")),
            meters: StoreMeters::default(),
            http_cache: HttpCache::new(cache_memory, Some(data_dir.join("cache"))),
            global: std::sync::OnceLock::new(),
        })
    }

    /// Gives global KV bindings their backend (once, before tenants load).
    pub fn set_global_kv(&self, backend: Arc<dyn GlobalKvBackend>) {
        let _ = self.global.set(backend);
    }

    /// Every tenant's HTTP cache.
    pub fn http_cache(&self) -> &Arc<HttpCache> {
        &self.http_cache
    }

    /// Sizes the tenants' caches for `config` (before its tenants are built, so each
    /// gets its cache): tenants with an unchanged cache keep their entries.
    pub fn configure_cache(&self, config: &outpost_config::Config) {
        let wanted: Vec<(String, Settings)> = config
            .tenants
            .iter()
            .filter(|tenant| tenant.cache.declared)
            .map(|tenant| {
                let cache = &tenant.cache;
                let settings = Settings {
                    capacity: cache.max_size,
                    max_object: cache.max_object,
                    stale: StaleDefaults {
                        while_revalidate: cache.stale_while_revalidate,
                        if_error: cache.stale_if_error,
                    },
                    jitter: cache.jitter,
                    lock_timeout: cache.lock_timeout,
                    cross_version: cache.cross_version,
                    disk: cache.disk,
                };
                (tenant.name.clone(), settings)
            })
            .collect();
        self.http_cache.configure(&wanted);
    }

    /// Opens the sled database now, so a node whose tenants use it learns at start-up
    /// that another process holds its lock.
    pub fn open_kv_now(&self) -> Result<(), StoresError> {
        self.sled.open_now().map_err(StoresError::Kv)
    }

    /// The store-operation histograms, for the node's metrics.
    pub fn meters(&self) -> &StoreMeters {
        &self.meters
    }

    fn kv_backend(&self, kind: KvBackendKind) -> Option<Arc<dyn KvBackend>> {
        Some(match kind {
            KvBackendKind::Sled => self.sled.clone(),
            KvBackendKind::Memory => self.memory.clone(),
            KvBackendKind::Global { cache_ttl } => Arc::new(GlobalBinding {
                backend: self.global.get()?.clone(),
                cache_ttl,
            }),
        })
    }

    /// Builds a tenant's bindings from its config. Blob stores are set up here, so a
    /// missing S3 credential is a load error rather than a failing request.
    pub fn tenant(&self, config: &TenantConfig) -> Result<TenantBindings, StoresError> {
        let tenant = config.name.as_str();
        let stores = &config.stores;
        let mut kv = BTreeMap::new();
        for (name, kind) in &stores.kv {
            let backend = self.kv_backend(*kind).ok_or_else(|| StoresError::NoFleet {
                tenant: tenant.to_string(),
                binding: name.clone(),
            })?;
            kv.insert(name.clone(), backend);
        }
        let sqlite: Arc<dyn SqlBackend> = self.sqlite.clone();
        let sql = stores
            .sql
            .iter()
            .map(|name| (name.clone(), sqlite.clone()))
            .collect();
        let mut buckets = BTreeMap::new();
        for (binding, store) in &stores.blob {
            let bucket = BlobBucket::open(&store.location).map_err(|source| StoresError::Blob {
                tenant: tenant.to_string(),
                binding: binding.clone(),
                at: store.at.clone(),
                source: Box::new(source),
            })?;
            buckets.insert(binding.clone(), Arc::new(bucket));
        }
        Ok(TenantBindings {
            kv: KvCtx::new(tenant, kv, self.meters.clone()),
            sql: SqlCtx::new(
                tenant,
                sql,
                config.limits.sql_size,
                config.limits.memory,
                self.meters.clone(),
            ),
            blob: BlobCtx::new(tenant, buckets, self.meters.clone()),
            outbound: (!config.outbound.is_empty())
                .then(|| OutboundClient::new(config.outbound.clone(), &config.limits)),
            cache: CacheCtx::new(tenant, self.http_cache.tenant(tenant)),
            objects: Arc::new(ObjectsCtx::new(
                config,
                self.object_databases.clone(),
                self.meters.clone(),
            )),
        })
    }
}
