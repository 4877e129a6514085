//! outpost's host bindings: the `outpost:edge` WIT package (`wit/edge.wit`) implemented on
//! sled (KV), SQLite (SQL) and object_store (blobs).
//!
//! A node opens one [`NodeStores`]; each tenant gets a [`TenantBindings`] naming the stores
//! its config declares. A guest can only reach stores through its tenant's bindings, so a
//! binding name it did not declare is an error, never another tenant's data.

mod blob;
mod kv;
mod sql;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use outpost_config::Stores;
use wasmtime::component::{HasData, Linker, ResourceTable};

pub use blob::BlobBinding;
pub use kv::{KvStore, SledKv};
pub use sql::SqlDatabases;

/// The generated bindings for `wit/edge.wit`.
pub mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "outpost:edge/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "outpost:edge/kv.store": crate::kv::KvHandle,
            "outpost:edge/sql.database": crate::sql::SqlHandle,
            "outpost:edge/blob.bucket": crate::blob::BucketHandle,
            "outpost:edge/blob.upload": crate::blob::Upload,
        },
    });
}

use generated::outpost::edge::types::Error as GuestError;

/// Why the node's stores could not be opened or a tenant's bindings built.
#[derive(Debug, thiserror::Error)]
pub enum StoresError {
    /// The node's KV database would not open.
    #[error(
        "cannot open the KV database at {path}: {reason}; check that data_dir is writable and no other outpost uses it"
    )]
    Kv {
        /// Its directory.
        path: PathBuf,
        /// sled's reason.
        reason: String,
    },
    /// A blob binding's store could not be set up.
    #[error("{at}: tenant `{tenant}`: blob binding `{binding}`: {reason}")]
    Blob {
        /// The tenant.
        tenant: String,
        /// The binding.
        binding: String,
        /// Where the binding is configured.
        at: outpost_config::Location,
        /// What is wrong.
        reason: String,
    },
}

/// The stores every tenant on the node shares: the KV database and the SQLite files.
pub struct NodeStores {
    meters: StoreMeters,
    kv_dir: PathBuf,
    /// Opened on first use, so `outpost check` and KV-less nodes never lock it.
    kv: OnceLock<Result<Arc<dyn KvStore>, String>>,
    sql: Arc<SqlDatabases>,
}

impl NodeStores {
    /// The node's stores under `data_dir`: sled at `kv/`, SQLite files under `sql/`.
    /// Nothing is opened yet.
    pub fn new(data_dir: &Path) -> Arc<NodeStores> {
        Arc::new(NodeStores {
            meters: StoreMeters::default(),
            kv_dir: data_dir.join("kv"),
            kv: OnceLock::new(),
            sql: SqlDatabases::new(data_dir.join("sql")),
        })
    }

    /// The KV database, opening it the first time.
    pub fn kv(&self) -> Result<Arc<dyn KvStore>, StoresError> {
        self.kv
            .get_or_init(|| SledKv::open(&self.kv_dir).map(|kv| Arc::new(kv) as Arc<dyn KvStore>))
            .clone()
            .map_err(|reason| StoresError::Kv {
                path: self.kv_dir.clone(),
                reason,
            })
    }

    /// Adds the storage operation histogram to the node's metrics.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "storage_operation_seconds",
            "Host-side time of tenants' store operations, by tenant, store (kv, sql, blob) and operation; a blob get is timed to its first byte, a blob put from finish() to durable",
            self.meters.ops.clone(),
        );
    }

    /// The SQLite databases (for tests and metrics: how many are open).
    pub fn sql(&self) -> &Arc<SqlDatabases> {
        &self.sql
    }

    /// Builds a tenant's bindings from its config. Blob stores are set up here, so a
    /// missing S3 credential is a load error rather than a failing request.
    pub fn tenant(
        self: &Arc<Self>,
        tenant: &str,
        stores: &Stores,
        memory_limit: u64,
        sql_size: u64,
    ) -> Result<Arc<TenantBindings>, StoresError> {
        let mut blob = Vec::new();
        for (binding, store) in &stores.blob {
            let bucket = BlobBinding::new(&store.location).map_err(|reason| StoresError::Blob {
                tenant: tenant.to_string(),
                binding: binding.clone(),
                at: store.at.clone(),
                reason,
            })?;
            blob.push((binding.clone(), Arc::new(bucket)));
        }
        Ok(Arc::new(TenantBindings {
            tenant: tenant.to_string(),
            node: self.clone(),
            kv: stores.kv.clone(),
            sql: stores.sql.clone(),
            sql_size,
            blob,
            memory_limit,
        }))
    }
}

/// The stores one tenant declared, by binding name.
pub struct TenantBindings {
    tenant: String,
    node: Arc<NodeStores>,
    kv: Vec<String>,
    sql: Vec<String>,
    sql_size: u64,
    blob: Vec<(String, Arc<BlobBinding>)>,
    /// The tenant's memory cap: no single result is built larger than the guest could hold.
    memory_limit: u64,
}

impl TenantBindings {
    /// The tenant's name.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    fn undeclared(&self, kind: &str, name: &str) -> GuestError {
        let example = match kind {
            "blob" => format!("blob = {{ {name} = {{}} }}"),
            _ => format!("{kind} = [\"{name}\"]"),
        };
        GuestError::NoSuchBinding(format!(
            "{kind} binding `{name}` is not declared for tenant `{}`; add {example} to its config",
            self.tenant
        ))
    }
}

/// What a store's host calls see of the instance: the tenant's bindings, the resource
/// table, and the current request's deadline.
pub struct BindingsView<'a> {
    /// The tenant's bindings.
    pub bindings: &'a Arc<TenantBindings>,
    /// The instance's resource table.
    pub table: &'a mut ResourceTable,
    /// When the current request must be done (SQL statements are interrupted after it).
    pub deadline: Option<Instant>,
}

struct HasBindings;

impl generated::outpost::edge::types::Host for BindingsView<'_> {}

impl HasData for HasBindings {
    type Data<'a> = BindingsView<'a>;
}

/// Adds the `outpost:edge` interfaces to `linker`; `view` finds the bindings in a store.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> BindingsView<'_>,
) -> wasmtime::Result<()> {
    generated::outpost::edge::types::add_to_linker::<T, HasBindings>(linker, view)?;
    generated::outpost::edge::kv::add_to_linker::<T, HasBindings>(linker, view)?;
    generated::outpost::edge::sql::add_to_linker::<T, HasBindings>(linker, view)?;
    generated::outpost::edge::blob::add_to_linker::<T, HasBindings>(linker, view)?;
    Ok(())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct OperationLabels {
    tenant: String,
    store: &'static str,
    op: &'static str,
}

/// Seconds, 5 µs to about 10 s.
fn operation_buckets() -> prometheus_client::metrics::histogram::Histogram {
    prometheus_client::metrics::histogram::Histogram::new(
        prometheus_client::metrics::histogram::exponential_buckets(0.000_005, 2.0, 22),
    )
}

type OperationHistograms = prometheus_client::metrics::family::Family<
    OperationLabels,
    prometheus_client::metrics::histogram::Histogram,
    fn() -> prometheus_client::metrics::histogram::Histogram,
>;

struct StoreMeters {
    ops: OperationHistograms,
}

impl Default for StoreMeters {
    fn default() -> StoreMeters {
        StoreMeters {
            ops: OperationHistograms::new_with_constructor(operation_buckets),
        }
    }
}

/// Observes an operation's duration when dropped, however the operation ends.
struct OperationTimer {
    histogram: prometheus_client::metrics::histogram::Histogram,
    started: Instant,
}

impl Drop for OperationTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

impl BindingsView<'_> {
    /// Times one store operation of this tenant.
    fn timed(&self, store: &'static str, op: &'static str) -> OperationTimer {
        let labels = OperationLabels {
            tenant: self.bindings.tenant.clone(),
            store,
            op,
        };
        OperationTimer {
            histogram: self.bindings.node.meters.ops.get_or_create_owned(&labels),
            started: Instant::now(),
        }
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
