//! [`KvBackend`] in process memory (`kv = { CACHE = "memory" }`): fast, node-local, gone
//! at restart. For caches and scratch state that may be lost; sessions and counters that
//! must survive belong on sled. Each binding holds at most [`MAX_MEMORY_STORE_BYTES`],
//! so one tenant cannot fill the node's memory.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::store::{
    KvBackend, KvError, KvStore, Listed, LiveValue, Stored, Swap, WriteOptions, list_start,
    next_counter, page,
};

/// Most bytes (keys, values and metadata) one memory binding holds; a write past it
/// fails as "full" and changes nothing.
pub const MAX_MEMORY_STORE_BYTES: u64 = 64 << 20;

/// Every memory binding of the node, kept across deploys and reloads of its tenant.
#[derive(Default)]
pub struct MemoryKv {
    stores: Mutex<HashMap<String, Arc<MemoryStore>>>,
    /// Versions are unique across the node's memory stores, as sled's are.
    versions: Arc<AtomicU64>,
}

/// One binding's keys, in order.
struct MemoryStore {
    entries: Mutex<Entries>,
    versions: Arc<AtomicU64>,
    max_bytes: u64,
}

#[derive(Default)]
struct Entries {
    map: BTreeMap<Vec<u8>, Stored>,
    bytes: u64,
}

fn size(key: &[u8], stored: &Stored) -> u64 {
    (key.len() + stored.value.len() + stored.metadata.as_ref().map_or(0, Vec::len)) as u64
}

impl Entries {
    fn get(&self, key: &[u8]) -> Option<&Stored> {
        self.map.get(key)
    }

    /// Stores `stored` at `key` unless that would pass `max_bytes`.
    fn insert(&mut self, key: &[u8], stored: Stored, max_bytes: u64) -> Result<(), KvError> {
        let old = self.map.get(key).map_or(0, |s| size(key, s));
        let new = size(key, &stored);
        let total = self.bytes - old + new;
        if total > max_bytes {
            return Err(KvError::Full(format!(
                "the memory store holds at most {max_bytes} bytes; delete keys or use sled"
            )));
        }
        self.bytes = total;
        self.map.insert(key.to_vec(), stored);
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= size(key, &old);
        }
    }
}

impl KvBackend for MemoryKv {
    fn open(&self, tenant: &str, binding: &str) -> Result<Arc<dyn KvStore>, KvError> {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        let store = stores
            .entry(format!("{tenant}/{binding}"))
            .or_insert_with(|| {
                Arc::new(MemoryStore {
                    entries: Mutex::new(Entries::default()),
                    versions: self.versions.clone(),
                    max_bytes: MAX_MEMORY_STORE_BYTES,
                })
            });
        Ok(store.clone())
    }
}

impl MemoryStore {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_version(&self) -> u64 {
        self.versions.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn stored(&self, value: &[u8], options: &WriteOptions) -> Stored {
        Stored {
            value: value.to_vec(),
            metadata: options.metadata.clone(),
            expires_at_ms: options.expires_at_ms,
            version: self.next_version(),
        }
    }
}

fn is_live(stored: &Stored, now_ms: u64) -> bool {
    stored.expires_at_ms.is_none_or(|at| at > now_ms)
}

#[async_trait]
impl KvStore for MemoryStore {
    async fn get(&self, key: &[u8], now_ms: u64) -> Result<Option<Stored>, KvError> {
        let mut entries = self.entries();
        match entries.get(key) {
            Some(stored) if is_live(stored, now_ms) => Ok(Some(stored.clone())),
            Some(_) => {
                // Expired: nothing sweeps memory, so reads drop what they find dead.
                entries.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn put(&self, key: &[u8], value: &[u8], options: &WriteOptions) -> Result<u64, KvError> {
        let stored = self.stored(value, options);
        let version = stored.version;
        self.entries().insert(key, stored, self.max_bytes)?;
        Ok(version)
    }

    async fn delete(&self, key: &[u8]) -> Result<(), KvError> {
        self.entries().remove(key);
        Ok(())
    }

    async fn list(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<(Vec<Listed>, bool), KvError> {
        let entries = self.entries();
        let live = entries
            .map
            .range((list_start(prefix, after), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(_, stored)| is_live(stored, now_ms))
            .map(|(key, stored)| {
                Ok(Listed {
                    key: key.clone(),
                    expires_at_ms: stored.expires_at_ms,
                    metadata: stored.metadata.clone(),
                })
            });
        page(live, limit)
    }

    async fn increment(
        &self,
        key: &[u8],
        delta: i64,
        expires_at_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<i64, KvError> {
        let mut entries = self.entries();
        let live = entries
            .get(key)
            .filter(|s| is_live(s, now_ms))
            .map(|s| LiveValue {
                value: &s.value,
                metadata: s.metadata.as_deref(),
                expires_at_ms: s.expires_at_ms,
            });
        let (next, options) = next_counter(key, live, delta, expires_at_ms)?;
        let stored = self.stored(next.to_string().as_bytes(), &options);
        entries.insert(key, stored, self.max_bytes)?;
        Ok(next)
    }

    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<u64>,
        value: &[u8],
        options: &WriteOptions,
        now_ms: u64,
    ) -> Result<Swap, KvError> {
        let mut entries = self.entries();
        let current = entries
            .get(key)
            .filter(|s| is_live(s, now_ms))
            .map(|s| s.version);
        if current != expected {
            return Ok(Swap::Conflict(current));
        }
        let stored = self.stored(value, options);
        let version = stored.version;
        entries.insert(key, stored, self.max_bytes)?;
        Ok(Swap::Swapped(version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::kv_store_tests!(|| async { ((), MemoryKv::default()) });

    #[tokio::test]
    async fn a_write_past_the_cap_fails_and_changes_nothing() {
        let kv = MemoryKv::default();
        let store = MemoryStore {
            entries: Mutex::new(Entries::default()),
            versions: kv.versions.clone(),
            max_bytes: 10,
        };
        let none = WriteOptions::default();
        store.put(b"a", b"12345", &none).await.expect("fits");
        assert!(matches!(
            store.put(b"b", b"123456", &none).await,
            Err(KvError::Full(_))
        ));
        assert!(store.get(b"b", 0).await.expect("get").is_none());
        // Replacing a value counts only the difference.
        store
            .put(b"a", b"123456789", &none)
            .await
            .expect("replacing fits");
        store.delete(b"a").await.expect("delete");
        store.put(b"b", b"123456", &none).await.expect("room again");
    }

    #[tokio::test]
    async fn a_reopened_binding_keeps_its_keys() {
        let kv = MemoryKv::default();
        let first = kv.open("t", "A").expect("open");
        first
            .put(b"k", b"v", &WriteOptions::default())
            .await
            .expect("put");
        drop(first);
        let again = kv.open("t", "A").expect("open");
        assert!(again.get(b"k", 0).await.expect("get").is_some());
    }
}
