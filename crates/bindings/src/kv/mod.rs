//! Key-value stores: Workers KV's model plus atomic increments and compare-and-swap.
//!
//! The capability has wasmtime's four parts: [`KvCtx`] (one tenant's declared bindings,
//! each on a [`KvBackend`]), [`KvCtxView`] (what a host call borrows), [`KvView`] (how
//! the store data hands the view out) and [`add_to_linker`]. The host calls (`host.rs`)
//! check keys, values and limits; the backends (`sled.rs`, `memory.rs`) only store.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod host;
mod memory;
mod sled;
mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};

pub use memory::{MAX_MEMORY_STORE_BYTES, MemoryKv};
pub use sled::SledKv;
pub(crate) use store::GlobalBinding;
pub use store::{
    GlobalKvBackend, KvBackend, KvError, KvStore, Listed, LiveValue, Stored, Swap, WriteOptions,
    list_start, next_counter, page,
};

use crate::meters::StoreMeters;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest metadata, in bytes.
pub const MAX_METADATA_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;
/// Most keys one `list` returns.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// One tenant's KV bindings: each declared name and the backend it lives on.
pub struct KvCtx {
    tenant: String,
    bindings: BTreeMap<String, Arc<dyn KvBackend>>,
    meters: StoreMeters,
}

impl KvCtx {
    /// The bindings `tenant` declared, by name.
    pub fn new(
        tenant: &str,
        bindings: BTreeMap<String, Arc<dyn KvBackend>>,
        meters: StoreMeters,
    ) -> KvCtx {
        KvCtx {
            tenant: tenant.to_string(),
            bindings,
            meters,
        }
    }
}

/// What a KV host call sees: the tenant's bindings and the instance's resource table.
pub struct KvCtxView<'a> {
    /// The tenant's bindings.
    pub ctx: &'a KvCtx,
    /// The instance's resource table (open stores live there).
    pub table: &'a mut ResourceTable,
}

/// Implemented by store data that offers the `kv` interface.
pub trait KvView: Send {
    /// The view for one host call.
    fn kv(&mut self) -> KvCtxView<'_>;
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvCtxView<'a>;
}

/// Adds `outpost:edge/kv` to `linker`.
pub fn add_to_linker<T: KvView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    crate::generated::outpost::edge::kv::add_to_linker::<T, HasKv>(linker, T::kv)
}

/// An open binding, as the guest's `store` resource.
pub struct KvHandle {
    store: Arc<dyn KvStore>,
}
