//! Key-value storage: Workers KV's operations plus `increment` and `compare_and_swap`.

use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::store_error;
use super::wit::outpost::edge::kv as host;
use crate::{Error, Result};

/// A KV namespace (`env.kv("NAME")`).
#[derive(Clone)]
pub struct Kv {
    name: Rc<str>,
    store: Rc<host::Store>,
}

/// A value with what was stored beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: Vec<u8>,
    /// Metadata stored with it.
    pub metadata: Option<Vec<u8>>,
    /// When it expires, in seconds since the Unix epoch.
    pub expiration: Option<u64>,
    /// Changes on every write; give it to [`Kv::compare_and_swap`].
    pub version: u64,
}

impl Entry {
    /// The value as UTF-8 text.
    pub fn text(&self) -> Result<String> {
        String::from_utf8(self.value.clone())
            .map_err(|_| Error::internal("the KV value is not UTF-8 text"))
    }

    /// The metadata parsed as JSON.
    pub fn metadata_json<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.metadata
            .as_deref()
            .map(serde_json::from_slice)
            .transpose()
            .map_err(Error::from)
    }
}

/// Options of a write: expiry and metadata.
#[derive(Debug, Clone, Default)]
pub struct Put {
    ttl: Option<u64>,
    expiration: Option<u64>,
    metadata: Option<Vec<u8>>,
}

impl Put {
    /// Expire `seconds` from now.
    pub fn ttl(mut self, seconds: u64) -> Put {
        self.ttl = Some(seconds);
        self
    }

    /// Expire at `unix_seconds`.
    pub fn expiration(mut self, unix_seconds: u64) -> Put {
        self.expiration = Some(unix_seconds);
        self
    }

    /// Store these bytes as metadata (at most 1 KiB).
    pub fn metadata(mut self, metadata: impl Into<Vec<u8>>) -> Put {
        self.metadata = Some(metadata.into());
        self
    }

    /// Store `value` as JSON metadata.
    pub fn metadata_json<T: Serialize>(self, value: &T) -> Result<Put> {
        Ok(self.metadata(serde_json::to_vec(value)?))
    }

    fn into_host(self) -> host::PutOptions {
        host::PutOptions {
            expiration_ttl: self.ttl,
            expiration: self.expiration,
            metadata: self.metadata,
        }
    }
}

/// Options of a listing.
#[derive(Debug, Clone, Default)]
pub struct List {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// The previous page's cursor.
    pub cursor: Option<String>,
    /// At most this many keys (1 to 1000, default 1000).
    pub limit: Option<u32>,
}

/// One key of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Key {
    /// The key.
    pub name: String,
    /// When it expires, in seconds since the Unix epoch.
    pub expiration: Option<u64>,
    /// Its metadata, if any.
    #[serde(skip)]
    pub metadata: Option<Vec<u8>>,
}

/// A page of keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// In key order.
    pub keys: Vec<Key>,
    /// No more keys after these.
    pub list_complete: bool,
    /// Pass as [`List::cursor`] for the next page.
    pub cursor: Option<String>,
}

/// What [`Kv::compare_and_swap`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// Written; the new version.
    Swapped(u64),
    /// Not written: the key's current version (`None` if absent).
    Conflict(Option<u64>),
}

impl Kv {
    pub(crate) fn open(name: &str) -> Result<Kv> {
        let store = host::Store::open(name)
            .map_err(|e| store_error(format_args!("opening kv `{name}`"), e))?;
        Ok(Kv {
            name: name.into(),
            store: Rc::new(store),
        })
    }

    fn fail(&self, op: &str, key: &str) -> impl FnOnce(super::HostError) -> Error {
        let what = format!("kv `{}` {op} `{key}`", self.name);
        move |e| store_error(format_args!("{what}"), e)
    }

    /// The value of `key`, if present.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_entry(key).await?.map(|entry| entry.value))
    }

    /// The value of `key` as UTF-8 text.
    pub async fn get_text(&self, key: &str) -> Result<Option<String>> {
        self.get_entry(key).await?.map(|e| e.text()).transpose()
    }

    /// The value of `key` parsed as JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key).await? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The value of `key` with its metadata, expiry and version.
    pub async fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        let found = self.store.get(key).map_err(self.fail("get", key))?;
        Ok(found.map(|e| Entry {
            value: e.value,
            metadata: e.metadata,
            expiration: e.expiration,
            version: e.version,
        }))
    }

    /// Writes `value` at `key`; returns once it is durable. Returns the new version.
    pub async fn put(&self, key: &str, value: impl AsRef<[u8]>) -> Result<u64> {
        self.put_with(key, value, Put::default()).await
    }

    /// Writes `value` at `key` with an expiry and/or metadata.
    pub async fn put_with(&self, key: &str, value: impl AsRef<[u8]>, options: Put) -> Result<u64> {
        self.store
            .put(key, value.as_ref(), &options.into_host())
            .map_err(self.fail("put", key))
    }

    /// Writes `value` as JSON.
    pub async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<u64> {
        self.put(key, serde_json::to_vec(value)?).await
    }

    /// Removes `key` (absent is fine).
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.store.delete(key).map_err(self.fail("delete", key))
    }

    /// A page of keys in order.
    pub async fn list(&self, options: List) -> Result<Listing> {
        let prefix = options.prefix.clone().unwrap_or_default();
        let found = self
            .store
            .list(&host::ListOptions {
                prefix: options.prefix,
                cursor: options.cursor,
                limit: options.limit,
            })
            .map_err(self.fail("list", &prefix))?;
        Ok(Listing {
            keys: found
                .keys
                .into_iter()
                .map(|k| Key {
                    name: k.name,
                    expiration: k.expiration,
                    metadata: k.metadata,
                })
                .collect(),
            list_complete: found.list_complete,
            cursor: found.cursor,
        })
    }

    /// Atomically adds `delta` to the integer at `key` (absent: 0) and returns the sum.
    /// `ttl` (seconds) applies only when the key is created, which makes fixed windows.
    pub async fn increment(&self, key: &str, delta: i64, ttl: Option<u64>) -> Result<i64> {
        self.store
            .increment(key, delta, ttl)
            .map_err(self.fail("increment", key))
    }

    /// Writes `value` only if `key`'s version is still `version` (`None`: only if absent).
    pub async fn compare_and_swap(
        &self,
        key: &str,
        version: Option<u64>,
        value: impl AsRef<[u8]>,
        options: Put,
    ) -> Result<Swap> {
        let outcome = self
            .store
            .compare_and_swap(key, version, value.as_ref(), &options.into_host())
            .map_err(self.fail("compare-and-swap", key))?;
        Ok(match outcome {
            host::CasOutcome::Swapped(v) => Swap::Swapped(v),
            host::CasOutcome::Conflict(v) => Swap::Conflict(v),
        })
    }
}
