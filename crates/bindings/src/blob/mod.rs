//! Object storage (R2's model) on object_store: local directories, S3-compatible servers,
//! or memory. Bodies stream through `wasi:io` streams both ways, so an object can be far
//! larger than the guest's memory.
//!
//! The capability's four parts: [`BlobCtx`] (one tenant's buckets), [`BlobCtxView`],
//! [`BlobView`] and [`add_to_linker`]. `bucket.rs` does the store operations, `file.rs`
//! what a directory store adds, `s3.rs` sets up S3, `keys.rs` checks what guests name,
//! `upload.rs` streams uploads.

mod bucket;
mod file;
mod host;
mod keys;
mod s3;
mod upload;

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};

pub use bucket::{BlobBucket, BlobSetupError};
pub use upload::Upload;

use crate::meters::StoreMeters;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most custom metadata per object (names and values together), in bytes.
pub const MAX_METADATA_BYTES: usize = 2048;
/// Most entries one `list` returns.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// One tenant's blob bindings, each set up at load (so a missing S3 credential is a load
/// error, not a failing request).
pub struct BlobCtx {
    tenant: String,
    buckets: BTreeMap<String, Arc<BlobBucket>>,
    meters: StoreMeters,
}

impl BlobCtx {
    /// The buckets `tenant` declared, by binding name.
    pub fn new(
        tenant: &str,
        buckets: BTreeMap<String, Arc<BlobBucket>>,
        meters: StoreMeters,
    ) -> BlobCtx {
        BlobCtx {
            tenant: tenant.to_string(),
            buckets,
            meters,
        }
    }
}

/// What a blob host call sees.
pub struct BlobCtxView<'a> {
    /// The tenant's buckets.
    pub ctx: &'a BlobCtx,
    /// The instance's resource table (open buckets, uploads and body streams).
    pub table: &'a mut ResourceTable,
}

/// Implemented by store data that offers the `blob` interface.
pub trait BlobView: Send {
    /// The view for one host call.
    fn blob(&mut self) -> BlobCtxView<'_>;
}

struct HasBlob;

impl HasData for HasBlob {
    type Data<'a> = BlobCtxView<'a>;
}

/// Adds `outpost:edge/blob` to `linker`.
pub fn add_to_linker<T: BlobView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    crate::generated::outpost::edge::blob::add_to_linker::<T, HasBlob>(linker, T::blob)
}

/// An open binding, as the guest's `bucket` resource.
pub struct BucketHandle {
    bucket: Arc<BlobBucket>,
}
