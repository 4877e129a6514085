//! [`KvStore`] on sled: one database per node, a tree per tenant binding.
//!
//! sled has no TTLs, so each value carries its expiry, reads ignore expired values, and
//! a sweeper thread deletes them using an index tree ordered by expiry time. sled also
//! does not fsync per write; writers wait for a group-commit flusher instead, so a burst
//! of writes shares one fsync and a write is acknowledged only once it is on disk.

use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;

use super::{KvError, KvStore, Listed, Stored, Swap, WriteOptions};

/// The tree indexing expiring values: key = expiry ms (BE) ++ namespace length (u16 BE)
/// ++ namespace ++ key.
const EXPIRY_TREE: &str = "__outpost_expiry";
/// Value format byte, so the layout can change later.
const FORMAT: u8 = 1;
const HEADER: usize = 1 + 8 + 8 + 4;
const NO_METADATA: u32 = u32::MAX;
/// How often expired values are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// sled's page cache; the OS page cache holds the rest.
const CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// The node's KV database.
pub struct SledKv {
    db: sled::Db,
    expiry: sled::Tree,
    flusher: Arc<Flusher>,
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
    /// Opens or creates the database in `dir` and starts its flusher and sweeper.
    pub fn open(dir: &Path) -> Result<SledKv, String> {
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
        Ok(SledKv {
            db,
            expiry,
            flusher,
        })
    }

    fn tree(&self, ns: &str) -> Result<sled::Tree, KvError> {
        self.db.open_tree(ns).map_err(storage)
    }

    fn new_version(&self) -> Result<u64, KvError> {
        // Unique and increasing across restarts; +1 keeps 0 free.
        self.db.generate_id().map(|id| id + 1).map_err(storage)
    }

    /// Indexes an expiring value; done before the value is written, so a crash can leave
    /// an index entry without a value (harmless) but never an unindexed expiring value.
    fn index_expiry(&self, ns: &str, key: &[u8], expires_at_ms: u64) -> Result<(), KvError> {
        self.expiry
            .insert(expiry_key(expires_at_ms, ns, key), &[])
            .map(drop)
            .map_err(storage)
    }

    fn write(
        &self,
        tree: &sled::Tree,
        ns: &str,
        key: &[u8],
        expected: Option<&sled::IVec>,
        value: &[u8],
        options: &WriteOptions,
    ) -> Result<Option<u64>, KvError> {
        let version = self.new_version()?;
        if let Some(at) = options.expires_at_ms {
            self.index_expiry(ns, key, at)?;
        }
        let encoded = encode(
            version,
            options.expires_at_ms,
            options.metadata.as_deref(),
            value,
        );
        match tree
            .compare_and_swap(key, expected, Some(encoded))
            .map_err(storage)?
        {
            Ok(()) => Ok(Some(version)),
            Err(_) => Ok(None),
        }
    }
}

impl Drop for SledKv {
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

fn expiry_key(at: u64, ns: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + ns.len() + key.len());
    out.extend_from_slice(&at.to_be_bytes());
    out.extend_from_slice(&(ns.len() as u16).to_be_bytes());
    out.extend_from_slice(ns.as_bytes());
    out.extend_from_slice(key);
    out
}

fn parse_expiry_key(raw: &[u8]) -> Option<(u64, &str, &[u8])> {
    let at = u64::from_be_bytes(raw.get(..8)?.try_into().ok()?);
    let len = u16::from_be_bytes(raw.get(8..10)?.try_into().ok()?) as usize;
    let ns = std::str::from_utf8(raw.get(10..10 + len)?).ok()?;
    Some((at, ns, raw.get(10 + len..)?))
}

fn encode(
    version: u64,
    expires_at_ms: Option<u64>,
    metadata: Option<&[u8]>,
    value: &[u8],
) -> Vec<u8> {
    let meta_len = metadata.map_or(0, <[u8]>::len);
    let mut out = Vec::with_capacity(HEADER + meta_len + value.len());
    out.push(FORMAT);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&expires_at_ms.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(
        &metadata
            .map_or(NO_METADATA, |m| m.len() as u32)
            .to_be_bytes(),
    );
    out.extend_from_slice(metadata.unwrap_or_default());
    out.extend_from_slice(value);
    out
}

struct Header<'a> {
    version: u64,
    expires_at_ms: Option<u64>,
    metadata: Option<&'a [u8]>,
    value: &'a [u8],
}

impl Header<'_> {
    fn live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|at| at > now_ms)
    }
}

fn decode_header(raw: &[u8]) -> Option<Header<'_>> {
    if *raw.first()? != FORMAT {
        return None;
    }
    let version = u64::from_be_bytes(raw.get(1..9)?.try_into().ok()?);
    let expires = u64::from_be_bytes(raw.get(9..17)?.try_into().ok()?);
    let meta_len = u32::from_be_bytes(raw.get(17..21)?.try_into().ok()?);
    let (metadata, rest) = if meta_len == NO_METADATA {
        (None, raw.get(HEADER..)?)
    } else {
        let end = HEADER + meta_len as usize;
        (Some(raw.get(HEADER..end)?), raw.get(end..)?)
    };
    Some(Header {
        version,
        expires_at_ms: (expires != 0).then_some(expires),
        metadata,
        value: rest,
    })
}

fn corrupt(key: &[u8]) -> KvError {
    KvError::Storage(format!(
        "the stored value of `{}` is unreadable",
        String::from_utf8_lossy(key)
    ))
}

/// The live value's header, if any.
fn live<'a>(
    raw: Option<&'a sled::IVec>,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<Header<'a>>, KvError> {
    match raw {
        None => Ok(None),
        Some(raw) => {
            let header = decode_header(raw).ok_or_else(|| corrupt(key))?;
            Ok(header.live(now_ms).then_some(header))
        }
    }
}

impl KvStore for SledKv {
    fn get(&self, ns: &str, key: &[u8], now_ms: u64) -> Result<Option<Stored>, KvError> {
        let raw = self.tree(ns)?.get(key).map_err(storage)?;
        Ok(live(raw.as_ref(), key, now_ms)?.map(|h| Stored {
            value: h.value.to_vec(),
            metadata: h.metadata.map(<[u8]>::to_vec),
            expires_at_ms: h.expires_at_ms,
            version: h.version,
        }))
    }

    fn put(
        &self,
        ns: &str,
        key: &[u8],
        value: &[u8],
        options: &WriteOptions,
    ) -> Result<u64, KvError> {
        let tree = self.tree(ns)?;
        let version = self.new_version()?;
        if let Some(at) = options.expires_at_ms {
            self.index_expiry(ns, key, at)?;
        }
        let encoded = encode(
            version,
            options.expires_at_ms,
            options.metadata.as_deref(),
            value,
        );
        tree.insert(key, encoded).map_err(storage)?;
        Ok(version)
    }

    fn delete(&self, ns: &str, key: &[u8]) -> Result<(), KvError> {
        self.tree(ns)?.remove(key).map(drop).map_err(storage)
    }

    fn list(
        &self,
        ns: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<(Vec<Listed>, bool), KvError> {
        let tree = self.tree(ns)?;
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let mut keys = Vec::new();
        for entry in tree.range((start, Bound::Unbounded)) {
            let (key, raw) = entry.map_err(storage)?;
            if !key.starts_with(prefix) {
                break;
            }
            let Some(header) = live(Some(&raw), &key, now_ms)? else {
                continue;
            };
            if keys.len() == limit {
                // One more live key exists: the listing goes on.
                return Ok((keys, false));
            }
            keys.push(Listed {
                key: key.to_vec(),
                expires_at_ms: header.expires_at_ms,
                metadata: header.metadata.map(<[u8]>::to_vec),
            });
        }
        Ok((keys, true))
    }

    fn increment(
        &self,
        ns: &str,
        key: &[u8],
        delta: i64,
        expires_at_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<i64, KvError> {
        let tree = self.tree(ns)?;
        loop {
            let raw = tree.get(key).map_err(storage)?;
            let (current, metadata, expires) = match live(raw.as_ref(), key, now_ms)? {
                Some(h) => {
                    let text = std::str::from_utf8(h.value).ok();
                    let number =
                        text.and_then(|t| t.trim().parse::<i64>().ok())
                            .ok_or_else(|| {
                                KvError::Invalid(format!(
                                    "cannot increment `{}`: its value is not a decimal integer",
                                    String::from_utf8_lossy(key)
                                ))
                            })?;
                    (number, h.metadata.map(<[u8]>::to_vec), h.expires_at_ms)
                }
                None => (0, None, expires_at_ms),
            };
            let next = current.checked_add(delta).ok_or_else(|| {
                KvError::Invalid(format!(
                    "incrementing `{}` by {delta} overflows a 64-bit integer",
                    String::from_utf8_lossy(key)
                ))
            })?;
            let text = next.to_string();
            if self
                .write(
                    &tree,
                    ns,
                    key,
                    raw.as_ref(),
                    text.as_bytes(),
                    &WriteOptions {
                        metadata: metadata.clone(),
                        expires_at_ms: expires,
                    },
                )?
                .is_some()
            {
                return Ok(next);
            }
        }
    }

    fn compare_and_swap(
        &self,
        ns: &str,
        key: &[u8],
        expected: Option<u64>,
        value: &[u8],
        options: &WriteOptions,
        now_ms: u64,
    ) -> Result<Swap, KvError> {
        let tree = self.tree(ns)?;
        loop {
            let raw = tree.get(key).map_err(storage)?;
            let current = live(raw.as_ref(), key, now_ms)?.map(|h| h.version);
            if current != expected {
                return Ok(Swap::Conflict(current));
            }
            if let Some(version) = self.write(&tree, ns, key, raw.as_ref(), value, options)? {
                return Ok(Swap::Swapped(version));
            }
            // The raw value changed underneath (perhaps only an expired one swept): recheck.
        }
    }

    fn durable(&self) -> BoxFuture<'static, Result<(), KvError>> {
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
        async move {
            let outcome = done
                .wait_for(|(flushed, _)| *flushed >= ticket)
                .await
                .map_err(|_| KvError::Storage("the KV database was closed".into()))?;
            match &outcome.1 {
                None => Ok(()),
                Some(error) => Err(KvError::Storage(format!("writing to disk failed: {error}"))),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, SledKv) {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = SledKv::open(dir.path()).expect("open sled");
        (dir, kv)
    }

    #[test]
    fn values_round_trip_with_metadata_and_versions() {
        let (_dir, kv) = open();
        let options = WriteOptions {
            metadata: Some(b"{\"a\":1}".to_vec()),
            expires_at_ms: None,
        };
        let v1 = kv.put("t/A", b"k", b"one", &options).expect("put");
        let v2 = kv
            .put("t/A", b"k", b"two", &WriteOptions::default())
            .expect("put");
        assert!(v2 > v1);
        let got = kv.get("t/A", b"k", 0).expect("get").expect("present");
        assert_eq!(got.value, b"two");
        assert_eq!(got.metadata, None);
        assert_eq!(got.version, v2);
        assert_eq!(
            kv.get("t/B", b"k", 0).expect("get"),
            None,
            "namespaces are separate"
        );
    }

    #[test]
    fn expired_values_are_invisible_and_swept() {
        let (_dir, kv) = open();
        let at = 10_000;
        let options = WriteOptions {
            metadata: None,
            expires_at_ms: Some(at),
        };
        kv.put("t/A", b"gone", b"x", &options).expect("put");
        kv.put("t/A", b"kept", b"y", &WriteOptions::default())
            .expect("put");
        assert!(kv.get("t/A", b"gone", at - 1).expect("get").is_some());
        assert!(kv.get("t/A", b"gone", at).expect("get").is_none());
        let (keys, complete) = kv.list("t/A", b"", None, 10, at).expect("list");
        assert!(complete);
        assert_eq!(
            keys.iter().map(|k| k.key.as_slice()).collect::<Vec<_>>(),
            [b"kept"]
        );
        sweep(&kv.db, &kv.expiry, at).expect("sweep");
        assert!(
            kv.tree("t/A")
                .expect("tree")
                .get(b"gone")
                .expect("raw")
                .is_none()
        );
        assert!(kv.expiry.is_empty());
    }

    #[test]
    fn sweeping_spares_a_key_rewritten_without_expiry() {
        let (_dir, kv) = open();
        let expiring = WriteOptions {
            metadata: None,
            expires_at_ms: Some(5),
        };
        kv.put("t/A", b"k", b"old", &expiring).expect("put");
        kv.put("t/A", b"k", b"new", &WriteOptions::default())
            .expect("put");
        sweep(&kv.db, &kv.expiry, 100).expect("sweep");
        assert_eq!(
            kv.get("t/A", b"k", 100).expect("get").expect("kept").value,
            b"new"
        );
    }

    #[test]
    fn list_pages_in_key_order() {
        let (_dir, kv) = open();
        for i in 0..25 {
            let key = format!("user:{i:02}");
            kv.put("t/A", key.as_bytes(), b"v", &WriteOptions::default())
                .expect("put");
        }
        kv.put("t/A", b"other", b"v", &WriteOptions::default())
            .expect("put");
        let mut seen = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let (keys, complete) = kv
                .list("t/A", b"user:", after.as_deref(), 10, 0)
                .expect("list");
            seen.extend(
                keys.iter()
                    .map(|k| String::from_utf8(k.key.clone()).expect("utf8")),
            );
            if complete {
                break;
            }
            after = keys.last().map(|k| k.key.clone());
        }
        let expected: Vec<String> = (0..25).map(|i| format!("user:{i:02}")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn increment_counts_and_keeps_the_first_expiry() {
        let (_dir, kv) = open();
        assert_eq!(
            kv.increment("t/A", b"n", 5, Some(1_000), 0).expect("incr"),
            5
        );
        assert_eq!(
            kv.increment("t/A", b"n", -2, Some(9_000), 10)
                .expect("incr"),
            3
        );
        let got = kv.get("t/A", b"n", 10).expect("get").expect("present");
        assert_eq!(got.expires_at_ms, Some(1_000));
        // After expiry the counter starts again.
        assert_eq!(kv.increment("t/A", b"n", 1, None, 1_000).expect("incr"), 1);
        kv.put("t/A", b"s", b"text", &WriteOptions::default())
            .expect("put");
        assert!(matches!(
            kv.increment("t/A", b"s", 1, None, 0),
            Err(KvError::Invalid(_))
        ));
    }

    #[test]
    fn compare_and_swap_checks_the_version() {
        let (_dir, kv) = open();
        let none = WriteOptions::default();
        let Swap::Swapped(v1) = kv
            .compare_and_swap("t/A", b"k", None, b"a", &none, 0)
            .expect("cas")
        else {
            panic!("creating an absent key must swap");
        };
        assert_eq!(
            kv.compare_and_swap("t/A", b"k", None, b"b", &none, 0)
                .expect("cas"),
            Swap::Conflict(Some(v1))
        );
        assert!(matches!(
            kv.compare_and_swap("t/A", b"k", Some(v1), b"c", &none, 0)
                .expect("cas"),
            Swap::Swapped(_)
        ));
        assert_eq!(
            kv.get("t/A", b"k", 0).expect("get").expect("present").value,
            b"c"
        );
    }

    #[tokio::test]
    async fn writes_become_durable_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let kv = SledKv::open(dir.path()).expect("open");
            kv.put("t/A", b"k", b"v", &WriteOptions::default())
                .expect("put");
            kv.durable().await.expect("durable");
        }
        // sled releases its lock when the last handle (flusher/sweeper threads) goes.
        let kv = loop {
            match SledKv::open(dir.path()) {
                Ok(kv) => break kv,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        assert_eq!(
            kv.get("t/A", b"k", 0).expect("get").expect("present").value,
            b"v"
        );
    }
}
