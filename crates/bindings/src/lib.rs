//! outpost's host bindings: the `outpost:edge` WIT package (`wit/edge.wit`) and outbound
//! HTTP, one folder per capability.
//!
//! Every capability has the same four parts, as wasmtime's WASI crates do: a `…Ctx` with
//! one tenant's state (built from validated config), a short-lived `…CtxView<'a>` that a
//! host call borrows, a `…View` trait the store data implements to hand the view out,
//! and one `add_to_linker`. Storage sits behind small async backend traits, one file per
//! backend: [`kv::KvBackend`] (sled, memory), [`sql::SqlBackend`] (SQLite); blobs use
//! object_store's own trait (directories, S3, memory).
//!
//! [`NodeStores`] is the wiring: the embedder builds it once per node and asks it for each
//! tenant's [`TenantBindings`]. A guest reaches only the bindings its tenant declares,
//! each namespaced by tenant, so a name it did not declare is an error, never another
//! tenant's data.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = outpost_config::Config::load(std::path::Path::new("node.toml"))?;
//! let stores = outpost_bindings::NodeStores::new(&config.node.data_dir, config.node.cache_memory);
//! stores.configure_cache(&config);
//! for tenant in &config.tenants {
//!     let bindings = stores.tenant(tenant)?; // a KvCtx, SqlCtx, BlobCtx and outbound client
//!     # drop(bindings);
//! }
//! # Ok(())
//! # }
//! ```

pub mod blob;
pub mod cache;
mod error;
pub mod http;
pub mod kv;
mod meters;
mod node;
pub mod objects;
pub mod sql;

pub use error::{EdgeError, EdgeResult};
pub use generated::outpost::edge::types::{Error as ErrorCode, LimitExceeded};
pub use meters::StoreMeters;
pub use node::{NodeStores, StoresError, TenantBindings};

/// The generated bindings for `wit/edge.wit`.
pub mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "outpost:edge/imports",
        imports: { default: async | trappable },
        trappable_error_type: {
            "outpost:edge/types.error" => crate::EdgeError,
        },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "outpost:edge/kv.store": crate::kv::KvHandle,
            "outpost:edge/sql.database": crate::sql::SqlHandle,
            "outpost:edge/blob.bucket": crate::blob::BucketHandle,
            "outpost:edge/blob.upload": crate::blob::Upload,
            "outpost:edge/durable-object.namespace": crate::objects::NamespaceHandle,
        },
    });
}

/// Adds every `outpost:edge` interface to `linker`.
pub fn add_to_linker<T>(linker: &mut wasmtime::component::Linker<T>) -> wasmtime::Result<()>
where
    T: kv::KvView
        + sql::SqlView
        + blob::BlobView
        + cache::CacheView
        + objects::ObjectsView
        + 'static,
{
    kv::add_to_linker(linker)?;
    sql::add_to_linker(linker)?;
    blob::add_to_linker(linker)?;
    cache::add_to_linker(linker)?;
    objects::add_to_linker(linker)?;
    Ok(())
}

/// The error for a binding the tenant did not declare, with the config line to add.
fn undeclared(kind: &str, name: &str, tenant: &str) -> EdgeError {
    let example = match kind {
        "blob" => format!("blob = {{ {name} = {{}} }}"),
        _ => format!("{kind} = [\"{name}\"]"),
    };
    ErrorCode::NoSuchBinding(format!(
        "{kind} binding `{name}` is not declared for tenant `{tenant}`; add {example} to its config"
    ))
    .into()
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
