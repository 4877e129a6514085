//! Key-value stores: Workers KV's model plus atomic increments and compare-and-swap.
//!
//! The host calls check the limits and the binding; the storage itself sits behind the
//! small [`KvStore`] trait, implemented on sled by [`SledKv`].

mod sled_kv;

use std::sync::Arc;

use futures::future::BoxFuture;
use wasmtime::component::Resource;

pub use sled_kv::SledKv;

use crate::generated::outpost::edge::kv::{
    CasOutcome, Entry, Host, HostStore, KeyInfo, ListOptions, ListResult, PutOptions,
};
use crate::{BindingsView, GuestError, now_ms};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest metadata, in bytes.
pub const MAX_METADATA_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;
/// Most keys one `list` returns.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// What a store failed with.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The arguments are wrong; the text says which.
    #[error("{0}")]
    Invalid(String),
    /// The storage failed.
    #[error("{0}")]
    Storage(String),
}

/// A stored value and what is kept beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The value.
    pub value: Vec<u8>,
    /// Caller's metadata.
    pub metadata: Option<Vec<u8>>,
    /// Expiry in milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// Changes on every write.
    pub version: u64,
}

/// One key of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key.
    pub key: Vec<u8>,
    /// Expiry in milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// Caller's metadata.
    pub metadata: Option<Vec<u8>>,
}

/// What a write stores besides the value.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Caller's metadata.
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

/// A node's key-value storage, namespaced by `"tenant/BINDING"`.
///
/// Operations take `now_ms` so expiry is decided by one clock reading per call. Writes
/// are visible at once but durable only after [`KvStore::durable`] resolves.
pub trait KvStore: Send + Sync {
    /// The live value of `key`.
    fn get(&self, ns: &str, key: &[u8], now_ms: u64) -> Result<Option<Stored>, KvError>;
    /// Writes `key`; returns its new version.
    fn put(
        &self,
        ns: &str,
        key: &[u8],
        value: &[u8],
        options: &WriteOptions,
    ) -> Result<u64, KvError>;
    /// Removes `key` (absent is fine).
    fn delete(&self, ns: &str, key: &[u8]) -> Result<(), KvError>;
    /// Up to `limit` live keys starting with `prefix`, after `after`, in order; and
    /// whether the listing is complete.
    fn list(
        &self,
        ns: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<(Vec<Listed>, bool), KvError>;
    /// Adds `delta` to the decimal integer at `key` (absent or expired: 0); a new key
    /// gets `expires_at_ms`.
    fn increment(
        &self,
        ns: &str,
        key: &[u8],
        delta: i64,
        expires_at_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<i64, KvError>;
    /// Writes `key` only if its live version is `expected` (`None`: only if absent).
    fn compare_and_swap(
        &self,
        ns: &str,
        key: &[u8],
        expected: Option<u64>,
        value: &[u8],
        options: &WriteOptions,
        now_ms: u64,
    ) -> Result<Swap, KvError>;
    /// Resolves once every write made before the call is on disk.
    fn durable(&self) -> BoxFuture<'static, Result<(), KvError>>;
}

/// An open KV binding, as the guest's `store` resource.
pub struct KvHandle {
    store: Arc<dyn KvStore>,
    namespace: String,
}

fn check_key(key: &str) -> Result<(), GuestError> {
    if key.is_empty() {
        return Err(GuestError::InvalidArgument("the key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(GuestError::InvalidArgument(format!(
            "the key is {} bytes; keys are limited to {MAX_KEY_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

fn write_options(options: PutOptions, now_ms: u64) -> Result<WriteOptions, GuestError> {
    if let Some(metadata) = &options.metadata
        && metadata.len() > MAX_METADATA_BYTES
    {
        return Err(GuestError::InvalidArgument(format!(
            "the metadata is {} bytes; metadata is limited to {MAX_METADATA_BYTES} bytes",
            metadata.len()
        )));
    }
    Ok(WriteOptions {
        metadata: options.metadata,
        expires_at_ms: expiry(options.expiration_ttl, options.expiration, now_ms)?,
    })
}

/// Turns a TTL (seconds from now) or an absolute expiry (Unix seconds) into milliseconds.
fn expiry(ttl: Option<u64>, at: Option<u64>, now_ms: u64) -> Result<Option<u64>, GuestError> {
    match (ttl, at) {
        (Some(_), Some(_)) => Err(GuestError::InvalidArgument(
            "give either expiration-ttl or expiration, not both".into(),
        )),
        (Some(0), None) => Err(GuestError::InvalidArgument(
            "expiration-ttl must be at least 1 second".into(),
        )),
        (Some(ttl), None) => Ok(Some(now_ms.saturating_add(ttl.saturating_mul(1000)))),
        (None, Some(at)) => {
            let at_ms = at.saturating_mul(1000);
            if at_ms <= now_ms {
                return Err(GuestError::InvalidArgument(format!(
                    "expiration {at} is in the past"
                )));
            }
            Ok(Some(at_ms))
        }
        (None, None) => Ok(None),
    }
}

fn check_value(value: &[u8]) -> Result<(), GuestError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(GuestError::InvalidArgument(format!(
            "the value is {} bytes; values are limited to {MAX_VALUE_BYTES} bytes (25 MiB)",
            value.len()
        )));
    }
    Ok(())
}

fn to_guest(error: KvError) -> GuestError {
    match error {
        KvError::Invalid(text) => GuestError::InvalidArgument(text),
        KvError::Storage(text) => GuestError::Store(format!("kv: {text}")),
    }
}

fn secs(ms: Option<u64>) -> Option<u64> {
    ms.map(|ms| ms.div_ceil(1000))
}

/// Cursors are the last key returned, hex-encoded so any key survives a query string.
fn encode_cursor(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(cursor: &str) -> Result<Vec<u8>, GuestError> {
    let bad = || GuestError::InvalidArgument(format!("`{cursor}` is not a cursor from `list`"));
    if !cursor.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..cursor.len())
        .step_by(2)
        .map(|i| {
            cursor
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

impl BindingsView<'_> {
    fn kv(&self, handle: &Resource<KvHandle>) -> wasmtime::Result<(Arc<dyn KvStore>, String)> {
        let handle = self.table.get(handle)?;
        Ok((handle.store.clone(), handle.namespace.clone()))
    }
}

/// Waits for a write to reach disk before acknowledging it to the guest.
async fn durable(store: &Arc<dyn KvStore>) -> Result<(), GuestError> {
    store.durable().await.map_err(to_guest)
}

type GuestResult<T> = wasmtime::Result<Result<T, GuestError>>;

impl HostStore for BindingsView<'_> {
    async fn open(&mut self, name: String) -> GuestResult<Resource<KvHandle>> {
        let bindings = self.bindings;
        if !bindings.kv.contains(&name) {
            return Ok(Err(bindings.undeclared("kv", &name)));
        }
        let store = match bindings.node.kv() {
            Ok(store) => store,
            Err(e) => return Ok(Err(GuestError::Store(e.to_string()))),
        };
        let handle = KvHandle {
            store,
            namespace: format!("{}/{name}", bindings.tenant),
        };
        Ok(Ok(self.table.push(handle)?))
    }

    async fn get(&mut self, this: Resource<KvHandle>, key: String) -> GuestResult<Option<Entry>> {
        let _timer = self.timed("kv", "get");
        let (store, ns) = self.kv(&this)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(store
            .get(&ns, key.as_bytes(), now_ms())
            .map(|found| {
                found.map(|stored| Entry {
                    value: stored.value,
                    metadata: stored.metadata,
                    expiration: secs(stored.expires_at_ms),
                    version: stored.version,
                })
            })
            .map_err(to_guest))
    }

    async fn put(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
        value: Vec<u8>,
        options: PutOptions,
    ) -> GuestResult<u64> {
        let _timer = self.timed("kv", "put");
        let (store, ns) = self.kv(&this)?;
        let options = match check_key(&key)
            .and_then(|()| check_value(&value))
            .and_then(|()| write_options(options, now_ms()))
        {
            Ok(options) => options,
            Err(e) => return Ok(Err(e)),
        };
        let version = match store.put(&ns, key.as_bytes(), &value, &options) {
            Ok(version) => version,
            Err(e) => return Ok(Err(to_guest(e))),
        };
        Ok(durable(&store).await.map(|()| version))
    }

    async fn delete(&mut self, this: Resource<KvHandle>, key: String) -> GuestResult<()> {
        let _timer = self.timed("kv", "delete");
        let (store, ns) = self.kv(&this)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if let Err(e) = store.delete(&ns, key.as_bytes()) {
            return Ok(Err(to_guest(e)));
        }
        Ok(durable(&store).await)
    }

    async fn list(
        &mut self,
        this: Resource<KvHandle>,
        options: ListOptions,
    ) -> GuestResult<ListResult> {
        let _timer = self.timed("kv", "list");
        let (store, ns) = self.kv(&this)?;
        let limit = options.limit.unwrap_or(MAX_LIST_LIMIT);
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Ok(Err(GuestError::InvalidArgument(format!(
                "limit {limit} is out of range; list returns 1 to {MAX_LIST_LIMIT} keys"
            ))));
        }
        let after = match options.cursor.as_deref().map(decode_cursor).transpose() {
            Ok(after) => after,
            Err(e) => return Ok(Err(e)),
        };
        let prefix = options.prefix.unwrap_or_default();
        let (keys, complete) = match store.list(
            &ns,
            prefix.as_bytes(),
            after.as_deref(),
            limit as usize,
            now_ms(),
        ) {
            Ok(found) => found,
            Err(e) => return Ok(Err(to_guest(e))),
        };
        let cursor = match (complete, keys.last()) {
            (false, Some(last)) => Some(encode_cursor(&last.key)),
            _ => None,
        };
        Ok(Ok(ListResult {
            keys: keys
                .into_iter()
                .map(|listed| KeyInfo {
                    name: String::from_utf8_lossy(&listed.key).into_owned(),
                    expiration: secs(listed.expires_at_ms),
                    metadata: listed.metadata,
                })
                .collect(),
            list_complete: complete,
            cursor,
        }))
    }

    async fn increment(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
        delta: i64,
        expiration_ttl: Option<u64>,
    ) -> GuestResult<i64> {
        let _timer = self.timed("kv", "increment");
        let (store, ns) = self.kv(&this)?;
        let now = now_ms();
        let expires = match check_key(&key).and_then(|()| expiry(expiration_ttl, None, now)) {
            Ok(expires) => expires,
            Err(e) => return Ok(Err(e)),
        };
        let value = match store.increment(&ns, key.as_bytes(), delta, expires, now) {
            Ok(value) => value,
            Err(e) => return Ok(Err(to_guest(e))),
        };
        Ok(durable(&store).await.map(|()| value))
    }

    async fn compare_and_swap(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
        version: Option<u64>,
        value: Vec<u8>,
        options: PutOptions,
    ) -> GuestResult<CasOutcome> {
        let _timer = self.timed("kv", "compare_and_swap");
        let (store, ns) = self.kv(&this)?;
        let now = now_ms();
        let options = match check_key(&key)
            .and_then(|()| check_value(&value))
            .and_then(|()| write_options(options, now))
        {
            Ok(options) => options,
            Err(e) => return Ok(Err(e)),
        };
        match store.compare_and_swap(&ns, key.as_bytes(), version, &value, &options, now) {
            Ok(Swap::Swapped(new)) => Ok(durable(&store).await.map(|()| CasOutcome::Swapped(new))),
            Ok(Swap::Conflict(current)) => Ok(Ok(CasOutcome::Conflict(current))),
            Err(e) => Ok(Err(to_guest(e))),
        }
    }

    async fn drop(&mut self, this: Resource<KvHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl Host for BindingsView<'_> {}
