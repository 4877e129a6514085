//! SQL databases (D1's model): `query`, `execute` and `batch` with typed parameters.
//!
//! The capability's four parts: [`SqlCtx`] (one tenant's bindings, each on a
//! [`SqlBackend`], with its size cap and memory limit), [`SqlCtxView`], [`SqlView`] and
//! [`add_to_linker`]. The backend is SQLite (`sqlite.rs`, with its `authorizer.rs`).

mod authorizer;
mod database;
mod host;
mod sqlite;
mod statement;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{HasData, Linker, ResourceTable};

pub use database::{
    SqlBackend, SqlDatabase, SqlError, Statement, StatementLimits, StatementResult,
    TransactionStep, Value,
};
pub use sqlite::{IDLE_CLOSE, SqliteDatabases};

use crate::meters::StoreMeters;

/// One tenant's SQL bindings.
pub struct SqlCtx {
    tenant: String,
    bindings: BTreeMap<String, Arc<dyn SqlBackend>>,
    /// Bytes each database may grow to (`limits.sql_size`).
    max_database_bytes: u64,
    /// No result is built larger than the guest could hold (`limits.memory`).
    max_result_bytes: u64,
    meters: StoreMeters,
}

impl SqlCtx {
    /// The bindings `tenant` declared, by name, with its size and memory limits.
    pub fn new(
        tenant: &str,
        bindings: BTreeMap<String, Arc<dyn SqlBackend>>,
        max_database_bytes: u64,
        max_result_bytes: u64,
        meters: StoreMeters,
    ) -> SqlCtx {
        SqlCtx {
            tenant: tenant.to_string(),
            bindings,
            max_database_bytes,
            max_result_bytes,
            meters,
        }
    }
}

/// What a SQL host call sees.
pub struct SqlCtxView<'a> {
    /// The tenant's bindings.
    pub ctx: &'a SqlCtx,
    /// The instance's resource table.
    pub table: &'a mut ResourceTable,
    /// When the current request must be done: statements are interrupted after it.
    pub deadline: Option<Instant>,
}

/// Implemented by store data that offers the `sql` interface.
pub trait SqlView: Send {
    /// The view for one host call.
    fn sql(&mut self) -> SqlCtxView<'_>;
}

struct HasSql;

impl HasData for HasSql {
    type Data<'a> = SqlCtxView<'a>;
}

/// Adds `outpost:edge/sql` to `linker`.
pub fn add_to_linker<T: SqlView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    crate::generated::outpost::edge::sql::add_to_linker::<T, HasSql>(linker, T::sql)
}

/// An open binding, as the guest's `database` resource.
pub struct SqlHandle {
    database: Arc<dyn SqlDatabase>,
}
