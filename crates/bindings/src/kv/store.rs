//! The KV backend seam: [`KvBackend`] opens one binding's [`KvStore`], the small async
//! trait every backend implements (sled, memory; a network-backed store later).
//!
//! The host layer (`host.rs`) checks arguments and limits before a call reaches a
//! backend, so a backend only stores: it never sees an oversized key or a bad cursor.

use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;

/// What a backend failed with. The host maps each variant to the guest's error code.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The operation cannot apply to the stored value (incrementing text, overflow).
    #[error("{0}")]
    Invalid(String),
    /// The backend cannot be reached or opened (a remote store down, a locked database).
    #[error("{0}")]
    Unavailable(String),
    /// The store is at its size cap; the write was not made.
    #[error("{0}")]
    Full(String),
    /// The backend failed while storing or reading.
    #[error("{0}")]
    Storage(String),
}

/// A stored value and what is kept beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The bytes the guest wrote.
    pub value: Vec<u8>,
    /// The metadata written with them.
    pub metadata: Option<Vec<u8>>,
    /// Expiry in milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// Changes on every write of the key.
    pub version: u64,
}

/// One key of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key's bytes.
    pub key: Vec<u8>,
    /// Expiry in milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// The metadata written with the value.
    pub metadata: Option<Vec<u8>>,
}

/// What a write stores besides the value.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Metadata to keep with the value.
    pub metadata: Option<Vec<u8>>,
    /// Expiry in milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
}

/// The result of a compare-and-swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// Written, with this new version.
    Swapped(u64),
    /// Not written; the key's current version.
    Conflict(Option<u64>),
}

/// One binding's key-value store.
///
/// Calls take `now_ms` so expiry is decided by one clock reading per call. A write
/// returns only once it is durable (as the backend defines it; sled: fsynced), so the
/// host can acknowledge it to the guest at once. Methods are async so a backend that
/// talks to a server does not block a tokio worker while it waits.
#[async_trait]
pub trait KvStore: Send + Sync {
    /// The live value of `key`.
    async fn get(&self, key: &[u8], now_ms: u64) -> Result<Option<Stored>, KvError>;
    /// Writes `key`; returns its new version.
    async fn put(&self, key: &[u8], value: &[u8], options: &WriteOptions) -> Result<u64, KvError>;
    /// Removes `key` (absent is fine).
    async fn delete(&self, key: &[u8]) -> Result<(), KvError>;
    /// Up to `limit` live keys starting with `prefix`, after `after`, in key order; and
    /// whether the listing is complete.
    async fn list(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<(Vec<Listed>, bool), KvError>;
    /// Adds `delta` to the decimal integer at `key` (absent or expired: 0); a new key
    /// gets `expires_at_ms`, an existing one keeps its expiry and metadata.
    async fn increment(
        &self,
        key: &[u8],
        delta: i64,
        expires_at_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<i64, KvError>;
    /// Writes `key` only if its live version is `expected` (`None`: only if absent).
    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<u64>,
        value: &[u8],
        options: &WriteOptions,
        now_ms: u64,
    ) -> Result<Swap, KvError>;
}

/// A kind of KV storage on the node (Spin's `StoreManager`): opens the store of one
/// tenant binding. Opening is cheap and may be lazy; a backend that cannot open says
/// [`KvError::Unavailable`], which the guest sees when it opens the binding.
pub trait KvBackend: Send + Sync {
    /// The store of `tenant`'s binding `binding`; two tenants never share one.
    fn open(&self, tenant: &str, binding: &str) -> Result<Arc<dyn KvStore>, KvError>;
}

/// The fleet's global KV, plugged in by the embedder when the node is one of a fleet:
/// like [`KvBackend`], but each binding says how long its cached reads may be trusted.
pub trait GlobalKvBackend: Send + Sync {
    /// The store of `tenant`'s global binding `binding`.
    fn open(
        &self,
        tenant: &str,
        binding: &str,
        cache_ttl: std::time::Duration,
    ) -> Result<Arc<dyn KvStore>, KvError>;
}

/// A global binding as a [`KvBackend`]: the global backend with the binding's cache TTL.
pub(crate) struct GlobalBinding {
    pub(crate) backend: Arc<dyn GlobalKvBackend>,
    pub(crate) cache_ttl: std::time::Duration,
}

impl KvBackend for GlobalBinding {
    fn open(&self, tenant: &str, binding: &str) -> Result<Arc<dyn KvStore>, KvError> {
        self.backend.open(tenant, binding, self.cache_ttl)
    }
}

/// Where a listing of `prefix` after the key `after` starts, in key order.
pub fn list_start(prefix: &[u8], after: Option<&[u8]>) -> Bound<Vec<u8>> {
    match after {
        Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
        _ => Bound::Included(prefix.to_vec()),
    }
}

/// The first `limit` of `live` (the live keys of a listing, in order), and whether that
/// was all of them.
pub fn page(
    live: impl Iterator<Item = Result<Listed, KvError>>,
    limit: usize,
) -> Result<(Vec<Listed>, bool), KvError> {
    let mut keys = Vec::new();
    for listed in live {
        let listed = listed?;
        if keys.len() == limit {
            // One more live key exists: the listing goes on.
            return Ok((keys, false));
        }
        keys.push(listed);
    }
    Ok((keys, true))
}

/// A key's live value as a backend read it, with what was stored beside it.
pub struct LiveValue<'a> {
    pub value: &'a [u8],
    pub metadata: Option<&'a [u8]>,
    pub expires_at_ms: Option<u64>,
}

/// What `increment` writes: the sum, and the options to write it with. `live` is the
/// key's live value and what was stored with it (absent or expired: `None`, counting
/// from 0 with the new expiry); an existing key keeps its metadata and expiry.
pub fn next_counter(
    key: &[u8],
    live: Option<LiveValue<'_>>,
    delta: i64,
    expires_at_ms: Option<u64>,
) -> Result<(i64, WriteOptions), KvError> {
    let (current, options) = match live {
        Some(LiveValue {
            value,
            metadata,
            expires_at_ms: expires,
        }) => {
            let current = std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    KvError::Invalid(format!(
                        "cannot increment `{}`: its value is not a decimal integer",
                        String::from_utf8_lossy(key)
                    ))
                })?;
            let options = WriteOptions {
                metadata: metadata.map(<[u8]>::to_vec),
                expires_at_ms: expires,
            };
            (current, options)
        }
        None => (
            0,
            WriteOptions {
                metadata: None,
                expires_at_ms,
            },
        ),
    };
    let next = current.checked_add(delta).ok_or_else(|| {
        KvError::Invalid(format!(
            "incrementing `{}` by {delta} overflows a 64-bit integer",
            String::from_utf8_lossy(key)
        ))
    })?;
    Ok((next, options))
}
