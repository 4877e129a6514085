//! [`KvBackend`] on sled: one database per node, a tree per tenant binding.
//!
//! sled has no TTLs, so each value carries its expiry, reads ignore expired values, and
//! a sweeper thread deletes them using an index tree ordered by expiry time. sled also
//! does not fsync per write; writers wait for a group-commit flusher instead, so a burst
//! of writes shares one fsync and a write is acknowledged only once it is on disk.
//!
//! sled's calls are quick in-memory operations (its I/O happens in the flusher), so they
//! run inline on the async thread; only the wait for the flush is awaited.
//!
//! Nearly 500 lines because a fifth of it is sled-specific tests (sweeping, reopening,
//! the lock), beside the shared contract tests in `kv/conformance.rs`.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

mod format;

use super::store::{
    KvBackend, KvError, KvStore, Listed, LiveValue, Stored, Swap, WriteOptions, list_start,
    next_counter, page,
};
use format::{decode_header, encode, expiry_key, live, parse_expiry_key};

/// The tree indexing expiring values: key = expiry ms (BE) ++ namespace length (u16 BE)
/// ++ namespace ++ key.
const EXPIRY_TREE: &str = "__outpost_expiry";
/// How often expired values are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// sled's page cache; the OS page cache holds the rest.
const CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// The node's sled database, opened on first use so `outpost check` and nodes without
/// sled bindings never take its lock.
pub struct SledKv {
    dir: PathBuf,
    db: OnceLock<Result<Arc<SledDb>, String>>,
}

/// The open database: its trees, the expiry index, the group-commit flusher.
struct SledDb {
    db: sled::Db,
    expiry: sled::Tree,
    flusher: Arc<Flusher>,
}

/// One binding's tree.
struct SledStore {
    db: Arc<SledDb>,
    tree: sled::Tree,
    namespace: String,
}

/// Group commit: writers ask for a flush and wait until one that started after their
/// write has finished.
struct Flusher {
    requested: Mutex<FlushRequests>,
    wake: Condvar,
    /// (the last request number whose flush finished, that flush's error if any).
    done: watch::Sender<(u64, Option<String>)>,
}

struct FlushRequests {
    next: u64,
    stop: bool,
}

impl SledKv {
    /// The database in `dir`; nothing is opened until a binding is.
    pub fn new(dir: &Path) -> SledKv {
        SledKv {
            dir: dir.to_path_buf(),
            db: OnceLock::new(),
        }
    }

    /// Opens the database now (it stays open), so a node that will need it learns at
    /// start-up that another process holds its lock.
    pub fn open_now(&self) -> Result<(), KvError> {
        self.database().map(drop)
    }

    fn database(&self) -> Result<Arc<SledDb>, KvError> {
        self.db
            .get_or_init(|| SledDb::open(&self.dir).map(Arc::new))
            .clone()
            .map_err(|reason| {
                KvError::Unavailable(format!(
                    "cannot open the KV database at {}: {reason}; check that data_dir is writable and no other outpost uses it",
                    self.dir.display()
                ))
            })
    }
}

impl KvBackend for SledKv {
    fn open(&self, tenant: &str, binding: &str) -> Result<Arc<dyn KvStore>, KvError> {
        let db = self.database()?;
        let namespace = format!("{tenant}/{binding}");
        let tree = db.db.open_tree(&namespace).map_err(storage)?;
        Ok(Arc::new(SledStore {
            db,
            tree,
            namespace,
        }))
    }
}

impl SledDb {
    /// Opens or creates the database in `dir` and starts its flusher and sweeper.
    fn open(dir: &Path) -> Result<SledDb, String> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(None)
            .open()
            .map_err(|e| e.to_string())?;
        let expiry = db.open_tree(EXPIRY_TREE).map_err(|e| e.to_string())?;
        let flusher = Arc::new(Flusher {
            requested: Mutex::new(FlushRequests {
                next: 0,
                stop: false,
            }),
            wake: Condvar::new(),
            done: watch::channel((0, None)).0,
        });
        {
            let db = db.clone();
            let flusher = flusher.clone();
            std::thread::Builder::new()
                .name("outpost-kv-flush".into())
                .spawn(move || flush_loop(&db, &flusher))
                .map_err(|e| format!("cannot start the KV flusher thread: {e}"))?;
        }
        {
            let db = db.clone();
            let expiry = expiry.clone();
            let flusher = Arc::downgrade(&flusher);
            std::thread::Builder::new()
                .name("outpost-kv-sweep".into())
                .spawn(move || {
                    // Runs while the store is open (the flusher is its liveness token).
                    while flusher.strong_count() > 0 {
                        std::thread::sleep(SWEEP_EVERY);
                        if let Err(e) = sweep(&db, &expiry, crate::now_ms()) {
                            tracing::warn!(error = %e, "sweeping expired KV keys failed");
                        }
                    }
                })
                .map_err(|e| format!("cannot start the KV sweeper thread: {e}"))?;
        }
        Ok(SledDb {
            db,
            expiry,
            flusher,
        })
    }

    fn new_version(&self) -> Result<u64, KvError> {
        // Unique and increasing across restarts; +1 keeps 0 free.
        self.db.generate_id().map(|id| id + 1).map_err(storage)
    }

    /// Resolves once every write made before the call is on disk.
    async fn durable(&self) -> Result<(), KvError> {
        let ticket = {
            let mut requested = self
                .flusher
                .requested
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            requested.next += 1;
            requested.next
        };
        self.flusher.wake.notify_one();
        let mut done = self.flusher.done.subscribe();
        let outcome = done
            .wait_for(|(flushed, _)| *flushed >= ticket)
            .await
            .map_err(|_| KvError::Unavailable("the KV database was closed".into()))?;
        match &outcome.1 {
            None => Ok(()),
            Some(error) => Err(KvError::Storage(format!("writing to disk failed: {error}"))),
        }
    }
}

/// Which current value a write may replace.
enum Replace<'a> {
    /// Whatever is there.
    Any,
    /// Only this raw value (`None`: only an absent key), as last read.
    IfStill(Option<&'a sled::IVec>),
}

impl SledStore {
    /// Writes `value` with a new version unless `replace` says the key changed; `None`
    /// if it did. Not yet durable.
    fn write(
        &self,
        key: &[u8],
        replace: Replace<'_>,
        value: &[u8],
        options: &WriteOptions,
    ) -> Result<Option<u64>, KvError> {
        let version = self.db.new_version()?;
        if let Some(at) = options.expires_at_ms {
            // Indexed before the value is written, so a crash can leave an index entry
            // without a value (harmless) but never an unindexed expiring value.
            self.db
                .expiry
                .insert(expiry_key(at, &self.namespace, key), &[])
                .map_err(storage)?;
        }
        let encoded = encode(
            version,
            options.expires_at_ms,
            options.metadata.as_deref(),
            value,
        );
        match replace {
            Replace::Any => {
                self.tree.insert(key, encoded).map_err(storage)?;
                Ok(Some(version))
            }
            Replace::IfStill(expected) => match self
                .tree
                .compare_and_swap(key, expected, Some(encoded))
                .map_err(storage)?
            {
                Ok(()) => Ok(Some(version)),
                Err(_) => Ok(None),
            },
        }
    }
}

impl Drop for SledDb {
    fn drop(&mut self) {
        let mut requested = self
            .flusher
            .requested
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        requested.stop = true;
        self.flusher.wake.notify_all();
    }
}

fn flush_loop(db: &sled::Db, flusher: &Flusher) {
    let mut flushed = 0;
    loop {
        let target = {
            let mut requested = flusher.requested.lock().unwrap_or_else(|e| e.into_inner());
            while requested.next == flushed && !requested.stop {
                requested = flusher
                    .wake
                    .wait(requested)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if requested.stop && requested.next == flushed {
                return;
            }
            requested.next
        };
        let error = db.flush().err().map(|e| e.to_string());
        if let Some(error) = &error {
            tracing::error!(%error, "flushing the KV database failed");
        }
        flushed = target;
        flusher.done.send_replace((flushed, error));
    }
}

/// Deletes values whose expiry has passed, as the index lists them.
fn sweep(db: &sled::Db, expiry: &sled::Tree, now_ms: u64) -> Result<(), sled::Error> {
    let end = (now_ms + 1).to_be_bytes();
    for entry in expiry.range(..&end[..]) {
        let (index_key, _) = entry?;
        if let Some((at, ns, key)) = parse_expiry_key(&index_key) {
            let tree = db.open_tree(ns)?;
            if let Some(raw) = tree.get(key)?
                && decode_header(&raw).is_some_and(|h| h.expires_at_ms == Some(at))
            {
                // Only if unchanged since read: a concurrent rewrite keeps its value.
                let _ = tree.compare_and_swap(key, Some(raw), None as Option<&[u8]>)?;
            }
        }
        expiry.remove(index_key)?;
    }
    Ok(())
}

fn storage(error: sled::Error) -> KvError {
    KvError::Storage(error.to_string())
}

#[async_trait]
impl KvStore for SledStore {
    async fn get(&self, key: &[u8], now_ms: u64) -> Result<Option<Stored>, KvError> {
        let raw = self.tree.get(key).map_err(storage)?;
        Ok(live(raw.as_ref(), key, now_ms)?.map(|h| Stored {
            value: h.value.to_vec(),
            metadata: h.metadata.map(<[u8]>::to_vec),
            expires_at_ms: h.expires_at_ms,
            version: h.version,
        }))
    }

    async fn put(&self, key: &[u8], value: &[u8], options: &WriteOptions) -> Result<u64, KvError> {
        let version = self.write(key, Replace::Any, value, options)?;
        self.db.durable().await?;
        Ok(version.unwrap_or_default())
    }

    async fn delete(&self, key: &[u8]) -> Result<(), KvError> {
        self.tree.remove(key).map_err(storage)?;
        self.db.durable().await
    }

    async fn list(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<(Vec<Listed>, bool), KvError> {
        let live = self
            .tree
            .range((list_start(prefix, after), Bound::Unbounded))
            .map(|entry| entry.map_err(storage))
            // Keys are in order: the first one outside the prefix ends the listing.
            .take_while(|entry| !matches!(entry, Ok((key, _)) if !key.starts_with(prefix)))
            .map(|entry| {
                let (key, raw) = entry?;
                let header = live(Some(&raw), &key, now_ms)?;
                Ok(header.map(|header| Listed {
                    key: key.to_vec(),
                    expires_at_ms: header.expires_at_ms,
                    metadata: header.metadata.map(<[u8]>::to_vec),
                }))
            })
            .filter_map(Result::transpose);
        page(live, limit)
    }

    async fn increment(
        &self,
        key: &[u8],
        delta: i64,
        expires_at_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<i64, KvError> {
        loop {
            let raw = self.tree.get(key).map_err(storage)?;
            let current = live(raw.as_ref(), key, now_ms)?.map(|h| LiveValue {
                value: h.value,
                metadata: h.metadata,
                expires_at_ms: h.expires_at_ms,
            });
            let (next, options) = next_counter(key, current, delta, expires_at_ms)?;
            let text = next.to_string();
            if self
                .write(
                    key,
                    Replace::IfStill(raw.as_ref()),
                    text.as_bytes(),
                    &options,
                )?
                .is_some()
            {
                self.db.durable().await?;
                return Ok(next);
            }
        }
    }

    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<u64>,
        value: &[u8],
        options: &WriteOptions,
        now_ms: u64,
    ) -> Result<Swap, KvError> {
        loop {
            let raw = self.tree.get(key).map_err(storage)?;
            let current = live(raw.as_ref(), key, now_ms)?.map(|h| h.version);
            if current != expected {
                return Ok(Swap::Conflict(current));
            }
            if let Some(version) =
                self.write(key, Replace::IfStill(raw.as_ref()), value, options)?
            {
                self.db.durable().await?;
                return Ok(Swap::Swapped(version));
            }
            // The raw value changed underneath (perhaps only an expired one swept): recheck.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, SledKv) {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = SledKv::new(dir.path());
        kv.open_now().expect("open sled");
        (dir, kv)
    }

    crate::kv_store_tests!(|| async { open() });

    #[tokio::test]
    async fn expired_values_are_swept_from_disk_and_index() {
        let (_dir, kv) = open();
        let store = kv.open("t", "A").expect("open");
        let at = crate::now_ms() - 10;
        let options = WriteOptions {
            metadata: None,
            expires_at_ms: Some(at),
        };
        store.put(b"gone", b"x", &options).await.expect("put");
        let db = kv.database().expect("db");
        sweep(&db.db, &db.expiry, at).expect("sweep");
        let tree = db.db.open_tree("t/A").expect("tree");
        assert!(tree.get(b"gone").expect("raw").is_none());
        assert!(db.expiry.is_empty());
    }

    #[tokio::test]
    async fn sweeping_spares_a_key_rewritten_without_expiry() {
        let (_dir, kv) = open();
        let store = kv.open("t", "A").expect("open");
        let expiring = WriteOptions {
            metadata: None,
            expires_at_ms: Some(5),
        };
        store.put(b"k", b"old", &expiring).await.expect("put");
        store
            .put(b"k", b"new", &WriteOptions::default())
            .await
            .expect("put");
        let db = kv.database().expect("db");
        sweep(&db.db, &db.expiry, 100).expect("sweep");
        let kept = store.get(b"k", 100).await.expect("get").expect("kept");
        assert_eq!(kept.value, b"new");
    }

    #[tokio::test]
    async fn writes_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let kv = SledKv::new(dir.path());
            let store = kv.open("t", "A").expect("open");
            store
                .put(b"k", b"v", &WriteOptions::default())
                .await
                .expect("put");
        }
        // sled releases its lock when the last handle (flusher/sweeper threads) goes.
        let store = loop {
            match SledKv::new(dir.path()).open("t", "A") {
                Ok(store) => break store,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let got = store.get(b"k", 0).await.expect("get").expect("present");
        assert_eq!(got.value, b"v");
    }

    #[test]
    fn a_locked_database_is_unavailable_naming_its_directory() {
        let (dir, _held) = open();
        let second = SledKv::new(dir.path());
        match second.open("t", "A") {
            Err(KvError::Unavailable(reason)) => {
                assert!(
                    reason.contains(&dir.path().display().to_string()),
                    "{reason}"
                )
            }
            Err(other) => panic!("expected unavailable, got {other}"),
            Ok(_) => panic!("a second open of a locked database must fail"),
        }
    }
}
