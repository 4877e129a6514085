//! Global KV: bindings whose authoritative copy is the fleet's JetStream KV bucket
//! `<fleet>-kv`, read through each node's own cache.
//!
//! A key of tenant `t`'s binding `B` is the bucket key `t.B.<hex of the key>` (hex keeps
//! byte order, so listings sort as on sled, and any bytes make a valid NATS token); its
//! metadata and expiry travel in message headers, so a listing reads headers only. The
//! bucket stays a plain KV bucket: `nats kv` tools can read it.
//!
//! Consistency (docs/fleet.md has the contract and the measured bounds):
//! - A write is acknowledged once the hub's stream has stored it (on a quorum of its
//!   replicas); with `sync_interval: always` on the hub, also on disk.
//! - Reads are served from the node's cache while the entry is younger than the
//!   binding's `cache_ttl`; every node watches the bucket and drops a cached key as soon
//!   as another node writes it, so a change usually shows in milliseconds, and at worst
//!   after `cache_ttl` when the watch is down. A node reads its own writes.
//! - `increment` and `compare_and_swap` are decided by the hub (JetStream's
//!   expected-last-subject-sequence), never by a cache: atomic across the fleet.
//! - While the hub is unreachable, cached values are served however old they are,
//!   uncached keys and every write fail with a clear error; nothing is queued.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use outpost_bindings::kv::{
    GlobalKvBackend, KvError, KvStore, Listed, Stored, Swap, WriteOptions, list_start, page,
};

use crate::hub::{FleetError, Hub};
use crate::kv_cache::Cached;

/// Message headers beside the value.
const OPERATION: &str = "KV-Operation";
const EXPIRES_AT: &str = "Outpost-Expires-At";
const METADATA: &str = "Outpost-Metadata";
const EXPECTED_LAST: &str = "Nats-Expected-Last-Subject-Sequence";
const MSG_ID: &str = "Nats-Msg-Id";

/// How long an increment or swap goes on retrying after losing races to other nodes.
const CONTENDED_FOR: Duration = Duration::from_secs(10);
/// Stripes of the per-key locks that queue this node's own increments of one key, so
/// they race other nodes, not each other.
const LOCK_STRIPES: usize = 64;
/// The watch's record of recent writes is pruned past this many keys, to those seen
/// within [`RECENT_FOR`] (a read racing a write takes milliseconds, not that long).
const MAX_RECENT: usize = 10_000;
const RECENT_FOR: Duration = Duration::from_secs(30);

/// The fleet's global KV on this node: the hub's bucket, the local cache, the watch.
pub struct GlobalKv {
    hub: Hub,
    bucket: String,
    stream: tokio::sync::OnceCell<Stream>,
    cache: sled::Tree,
    /// Keep the database open as long as the tree is used.
    _db: sled::Db,
    /// The newest revision the watch saw of each key written since it started: a read
    /// that fetched an older one does not cache it.
    recent: Mutex<HashMap<Vec<u8>, (u64, std::time::Instant)>>,
    watching: AtomicBool,
    locks: Vec<tokio::sync::Mutex<()>>,
}

impl GlobalKv {
    /// The global KV of `hub`'s fleet, caching under `data_dir/fleet/kv-cache`. Starts
    /// the watch that keeps the cache current.
    pub fn open(hub: &Hub, data_dir: &Path) -> Result<Arc<GlobalKv>, FleetError> {
        let path = data_dir.join("fleet").join("kv-cache");
        let cache_error = |source| FleetError::Cache {
            path: path.display().to_string(),
            source,
        };
        let db = sled::Config::new()
            .path(&path)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(cache_error)?;
        let cache = db.open_tree("global").map_err(cache_error)?;
        let global = Arc::new(GlobalKv {
            hub: hub.clone(),
            bucket: hub.bucket("kv"),
            stream: tokio::sync::OnceCell::new(),
            cache,
            _db: db,
            recent: Mutex::new(HashMap::new()),
            watching: AtomicBool::new(false),
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        });
        tokio::spawn(watch(Arc::downgrade(&global)));
        Ok(global)
    }

    /// Whether the watch that keeps the cache current is running.
    pub fn is_watching(&self) -> bool {
        self.watching.load(Ordering::SeqCst)
    }

    /// The bucket's stream, created on first use (the hub may not have been up at start).
    async fn stream(&self) -> Result<&Stream, KvError> {
        self.stream
            .get_or_try_init(|| async {
                self.hub
                    .kv_bucket("kv", "outpost global KV", 1)
                    .await
                    .map(|store| store.stream)
                    .map_err(KvError::Unavailable)
            })
            .await
    }

    fn unreachable() -> KvError {
        KvError::Unavailable(
            "the fleet's hub is unreachable; the write was not made (retry later)".into(),
        )
    }

    /// The key's last message, read from the stream's leader (never a lagging replica):
    /// what increments and swaps decide on.
    async fn latest(&self, subject: &str) -> Result<(u64, Option<Stored>), KvError> {
        let stream = self.stream().await?;
        let started = tokio::time::Instant::now();
        loop {
            match stream.get_last_raw_message_by_subject(subject).await {
                Ok(message) => {
                    return Ok(decode(message.sequence, &message.headers, message.payload));
                }
                Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
                    return Ok((0, None));
                }
                // A read is safe to repeat while the hub is slow (a leader election).
                Err(e) if started.elapsed() < CONTENDED_FOR && self.hub.is_connected() => {
                    tracing::debug!(error = %e, "global KV read failed; reading again");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    return Err(KvError::Unavailable(format!(
                        "cannot read from the fleet's hub: {e}"
                    )));
                }
            }
        }
    }

    /// Publishes to `subject`; with `expected`, only if the key's last message is that
    /// one (0: the key has none). `Ok(None)`: another write came first.
    async fn publish(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
        expected: Option<u64>,
    ) -> Result<Option<u64>, KvError> {
        if !self.hub.is_connected() {
            return Err(Self::unreachable());
        }
        self.stream().await?;
        let mut headers = headers;
        if let Some(expected) = expected {
            headers.insert(EXPECTED_LAST, expected.to_string().as_str());
        }
        let max = self.hub.client.server_info().max_payload;
        if payload.len() > max {
            return Err(KvError::Invalid(format!(
                "a global KV value is at most the hub's max_payload ({max} bytes); this one is {}",
                payload.len()
            )));
        }
        // The write's own id: if its ack is lost, the key's last message tells whether
        // it landed. A write that may have been stored is never sent again: the hub
        // checks a repeat's condition before its id, so a repeated increment could count
        // twice. Only one the hub refused outright is.
        let id = format!("{:032x}", rand::random::<u128>());
        headers.insert(MSG_ID, id.as_str());
        let started = tokio::time::Instant::now();
        loop {
            let outcome = match self
                .hub
                .jetstream
                .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                .await
            {
                Ok(sent) => sent.await,
                Err(e) => Err(e),
            };
            return match outcome {
                Ok(ack) => Ok(Some(ack.sequence)),
                Err(e) if lost_the_race(&e) => Ok(None),
                Err(e) if matches!(e.kind(), PublishErrorKind::MaxPayloadExceeded) => Err(
                    KvError::Invalid(format!("the fleet's hub refused the value: {e}")),
                ),
                // Nothing was stored (no stream leader yet, a leader election): safe to
                // send again while the hub settles.
                Err(e)
                    if refused_before_storing(&e)
                        && started.elapsed() < CONTENDED_FOR
                        && self.hub.is_connected() =>
                {
                    tracing::debug!(error = %e, "the hub did not take a global KV write; sending it again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => {
                    if let Ok(Some(sequence)) = self.landed(&subject, &id).await {
                        return Ok(Some(sequence));
                    }
                    Err(KvError::Unavailable(format!(
                        "the fleet's hub did not acknowledge the write, so it may or may not have been made: {e}"
                    )))
                }
            };
        }
    }

    /// The sequence of the key's last message if it is the write with `id`.
    async fn landed(&self, subject: &str, id: &str) -> Result<Option<u64>, KvError> {
        let stream = self.stream().await?;
        let message = stream
            .get_last_raw_message_by_subject(subject)
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        Ok(message
            .headers
            .get(MSG_ID)
            .is_some_and(|found| found.as_str() == id)
            .then_some(message.sequence))
    }

    /// Records what the hub said about `cache_key`, unless the cache knows newer.
    fn remember(&self, cache_key: &[u8], revision: u64, value: Option<Stored>) {
        let newer_seen = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(cache_key)
            .is_some_and(|(seen, _)| *seen > revision);
        if newer_seen {
            return;
        }
        let entry = Cached {
            revision,
            cached_at_ms: now_ms(),
            value,
        };
        let encoded = entry.encode();
        let _ = self
            .cache
            .fetch_and_update(cache_key, |old| match old.and_then(Cached::decode) {
                Some(old) if old.revision > revision => old.encode().into(),
                _ => Some(encoded.clone()),
            });
    }

    /// A write to `cache_key` at `revision` seen by the watch: an older cached copy is
    /// dropped, and the revision is remembered so that a read which fetched the key
    /// just before this write does not cache what it fetched.
    fn invalidate(&self, cache_key: &[u8], revision: u64) {
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() >= MAX_RECENT {
                recent.retain(|_, (_, at)| at.elapsed() < RECENT_FOR);
                if recent.len() >= MAX_RECENT {
                    recent.clear();
                }
            }
            let now = std::time::Instant::now();
            let seen = recent.entry(cache_key.to_vec()).or_insert((0, now));
            *seen = (seen.0.max(revision), now);
        }
        let older = self
            .cache
            .get(cache_key)
            .ok()
            .flatten()
            .and_then(|bytes| Cached::decode(&bytes))
            .is_some_and(|cached| cached.revision < revision);
        if older {
            let _ = self.cache.remove(cache_key);
        }
    }

    fn lock_for(&self, subject: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        subject.hash(&mut hasher);
        &self.locks[(hasher.finish() as usize) % LOCK_STRIPES]
    }
}

/// The backend the node's stores hand global bindings to.
pub struct GlobalBackend(pub Arc<GlobalKv>);

impl GlobalKvBackend for GlobalBackend {
    fn open(
        &self,
        tenant: &str,
        binding: &str,
        cache_ttl: Duration,
    ) -> Result<Arc<dyn KvStore>, KvError> {
        Ok(Arc::new(GlobalStore {
            kv: self.0.clone(),
            subject_prefix: format!("$KV.{}.{tenant}.{binding}.", self.0.bucket),
            cache_prefix: format!("{tenant}/{binding}/").into_bytes(),
            cache_ttl,
        }))
    }
}

/// One tenant's global binding.
struct GlobalStore {
    kv: Arc<GlobalKv>,
    /// `$KV.<bucket>.<tenant>.<binding>.`
    subject_prefix: String,
    /// `<tenant>/<binding>/` in the cache tree.
    cache_prefix: Vec<u8>,
    cache_ttl: Duration,
}

impl GlobalStore {
    fn subject(&self, key: &[u8]) -> String {
        format!("{}{}", self.subject_prefix, key_token(key))
    }

    fn cache_key(&self, key: &[u8]) -> Vec<u8> {
        [self.cache_prefix.as_slice(), key].concat()
    }

    fn cached(&self, key: &[u8]) -> Option<Cached> {
        let bytes = self.kv.cache.get(self.cache_key(key)).ok()??;
        Cached::decode(&bytes)
    }

    /// Publishes a value or a deletion and remembers it, so this node reads its write.
    async fn write(
        &self,
        key: &[u8],
        value: Option<(&[u8], &WriteOptions)>,
        expected: Option<u64>,
    ) -> Result<Option<u64>, KvError> {
        let mut headers = HeaderMap::new();
        let payload = match value {
            Some((bytes, options)) => {
                if let Some(at) = options.expires_at_ms {
                    headers.insert(EXPIRES_AT, at.to_string().as_str());
                }
                if let Some(metadata) = &options.metadata {
                    headers.insert(METADATA, hex(metadata).as_str());
                }
                Bytes::copy_from_slice(bytes)
            }
            None => {
                headers.insert(OPERATION, "DEL");
                Bytes::new()
            }
        };
        let written = self
            .kv
            .publish(self.subject(key), headers, payload, expected)
            .await?;
        if let Some(revision) = written {
            let stored = value.map(|(bytes, options)| Stored {
                value: bytes.to_vec(),
                metadata: options.metadata.clone(),
                expires_at_ms: options.expires_at_ms,
                version: revision,
            });
            self.kv.remember(&self.cache_key(key), revision, stored);
        }
        Ok(written)
    }
}

fn live(value: Option<Stored>, now_ms: u64) -> Option<Stored> {
    value.filter(|stored| stored.expires_at_ms.is_none_or(|at| at > now_ms))
}

#[async_trait]
impl KvStore for GlobalStore {
    async fn get(&self, key: &[u8], now_ms: u64) -> Result<Option<Stored>, KvError> {
        let cached = self.cached(key);
        let ttl_ms = u64::try_from(self.cache_ttl.as_millis()).unwrap_or(u64::MAX);
        if let Some(cached) = &cached
            && now_ms.saturating_sub(cached.cached_at_ms) < ttl_ms
        {
            return Ok(live(cached.value.clone(), now_ms));
        }
        let fetched = if self.kv.hub.is_connected() {
            self.kv.stream().await.cloned()
        } else {
            Err(Self::hub_down())
        };
        let fetched = match fetched {
            Ok(stream) => match stream.direct_get_last_for_subject(self.subject(key)).await {
                Ok(message) => Ok(decode(message.sequence, &message.headers, message.payload)),
                Err(e)
                    if matches!(
                        e.kind(),
                        async_nats::jetstream::stream::DirectGetErrorKind::NotFound
                    ) =>
                {
                    Ok((0, None))
                }
                Err(e) => Err(KvError::Unavailable(format!(
                    "cannot read from the fleet's hub: {e}"
                ))),
            },
            Err(e) => Err(e),
        };
        match fetched {
            Ok((revision, value)) => {
                self.kv
                    .remember(&self.cache_key(key), revision, value.clone());
                Ok(live(value, now_ms))
            }
            // The hub is away: the node's copy, however old, beats an error.
            Err(_) if cached.is_some() => Ok(cached.and_then(|c| live(c.value, now_ms))),
            Err(e) => Err(e),
        }
    }

    async fn put(&self, key: &[u8], value: &[u8], options: &WriteOptions) -> Result<u64, KvError> {
        self.write(key, Some((value, options)), None)
            .await?
            .ok_or_else(|| KvError::Storage("the hub refused an unconditional write".into()))
    }

    async fn delete(&self, key: &[u8]) -> Result<(), KvError> {
        self.write(key, None, None).await.map(|_| ())
    }

    async fn list(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<(Vec<Listed>, bool), KvError> {
        if !self.kv.hub.is_connected() {
            return Err(Self::hub_down());
        }
        let stream = self.kv.stream().await?;
        let listing = async {
            let consumer = stream
                .create_consumer(push::OrderedConfig {
                    deliver_subject: self.kv.hub.client.new_inbox(),
                    filter_subject: format!("{}>", self.subject_prefix),
                    headers_only: true,
                    replay_policy: ReplayPolicy::Instant,
                    deliver_policy: DeliverPolicy::LastPerSubject,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let mut keys = Vec::new();
            if consumer.cached_info().num_pending == 0 {
                return Ok(keys);
            }
            let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
            while let Some(message) = messages.next().await {
                let message = message.map_err(|e| e.to_string())?;
                let pending = message.info().map_err(|e| e.to_string())?.pending;
                let token = message
                    .subject
                    .as_str()
                    .strip_prefix(self.subject_prefix.as_str())
                    .unwrap_or_default();
                if let (Some(key), Some(headers)) = (key_from_token(token), &message.headers) {
                    let deleted = headers
                        .get(OPERATION)
                        .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
                    let expires_at_ms = header_u64(headers, EXPIRES_AT);
                    if !deleted && expires_at_ms.is_none_or(|at| at > now_ms) {
                        keys.push(Listed {
                            key,
                            expires_at_ms,
                            metadata: headers.get(METADATA).and_then(|m| unhex(m.as_str())),
                        });
                    }
                }
                if pending == 0 {
                    break;
                }
            }
            Ok::<_, String>(keys)
        };
        let mut keys = tokio::time::timeout(Duration::from_secs(10), listing)
            .await
            .map_err(|_| KvError::Unavailable("listing from the fleet's hub timed out".into()))?
            .map_err(|e| KvError::Unavailable(format!("cannot list from the fleet's hub: {e}")))?;
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        let start = list_start(prefix, after);
        let live = keys
            .into_iter()
            .filter(|listed| listed.key.starts_with(prefix))
            .filter(|listed| match &start {
                std::ops::Bound::Included(from) => listed.key >= *from,
                std::ops::Bound::Excluded(after) => listed.key > *after,
                std::ops::Bound::Unbounded => true,
            })
            .map(Ok);
        page(live, limit)
    }

    async fn increment(
        &self,
        key: &[u8],
        delta: i64,
        expires_at_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<i64, KvError> {
        let subject = self.subject(key);
        let _queued = self.kv.lock_for(&subject).lock().await;
        let mut backoff = Backoff::new();
        while backoff.wait().await {
            let (revision, current) = self.kv.latest(&subject).await?;
            let current = live(current, now_ms);
            let (next, options) = outpost_bindings::kv::next_counter(
                key,
                current.as_ref().map(|c| outpost_bindings::kv::LiveValue {
                    value: &c.value,
                    metadata: c.metadata.as_deref(),
                    expires_at_ms: c.expires_at_ms,
                }),
                delta,
                expires_at_ms,
            )?;
            let text = next.to_string();
            if self
                .write(key, Some((text.as_bytes(), &options)), Some(revision))
                .await?
                .is_some()
            {
                return Ok(next);
            }
        }
        Err(Self::contended())
    }

    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<u64>,
        value: &[u8],
        options: &WriteOptions,
        now_ms: u64,
    ) -> Result<Swap, KvError> {
        let subject = self.subject(key);
        let mut backoff = Backoff::new();
        while backoff.wait().await {
            let (revision, current) = self.kv.latest(&subject).await?;
            let version = live(current, now_ms).map(|c| c.version);
            if version != expected {
                return Ok(Swap::Conflict(version));
            }
            // A swap against an expired or deleted key's last message: that message is
            // what must still be last.
            if let Some(written) = self
                .write(key, Some((value, options)), Some(revision))
                .await?
            {
                return Ok(Swap::Swapped(written));
            }
        }
        Err(Self::contended())
    }
}

impl GlobalStore {
    fn hub_down() -> KvError {
        KvError::Unavailable(
            "the fleet's hub is unreachable and this node has no copy of the key".into(),
        )
    }

    fn contended() -> KvError {
        KvError::Unavailable(format!(
            "the key kept changing on other nodes for {CONTENDED_FOR:?} while this write was tried; retry"
        ))
    }
}

/// Paces retries after a lost race: at once the first time, then a random pause that
/// doubles up to 64 ms, so the nodes contending for a key take turns instead of the
/// fastest winning every round.
struct Backoff {
    attempt: u32,
    started: tokio::time::Instant,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            attempt: 0,
            started: tokio::time::Instant::now(),
        }
    }

    /// Waits before the next attempt; `false` once the time for attempts is over.
    async fn wait(&mut self) -> bool {
        if self.attempt > 0 {
            if self.started.elapsed() >= CONTENDED_FOR {
                return false;
            }
            let ceiling = 1u64 << self.attempt.min(6);
            let pause = rand::random_range(0..=ceiling * 1000);
            tokio::time::sleep(Duration::from_micros(pause)).await;
        }
        self.attempt += 1;
        true
    }
}

/// Keeps the cache current: every write to the bucket, from any node, drops the cached
/// copy of its key. Resumes where it stopped after the hub comes back.
async fn watch(global: std::sync::Weak<GlobalKv>) {
    let mut resume_after: Option<u64> = None;
    loop {
        let Some(kv) = global.upgrade() else { return };
        let started = async {
            let stream = kv.stream().await.map_err(|e| e.to_string())?;
            let deliver_policy = match resume_after {
                Some(seq) => DeliverPolicy::ByStartSequence {
                    start_sequence: seq + 1,
                },
                None => DeliverPolicy::New,
            };
            let consumer = stream
                .create_consumer(push::OrderedConfig {
                    deliver_subject: kv.hub.client.new_inbox(),
                    filter_subject: format!("$KV.{}.>", kv.bucket),
                    headers_only: true,
                    replay_policy: ReplayPolicy::Instant,
                    deliver_policy,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            consumer.messages().await.map_err(|e| e.to_string())
        };
        let mut messages = match started.await {
            Ok(messages) => messages,
            Err(reason) => {
                kv.watching.store(false, Ordering::SeqCst);
                tracing::debug!(%reason, "global KV watch not started; retrying");
                drop(kv);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        kv.watching.store(true, Ordering::SeqCst);
        let prefix = format!("$KV.{}.", kv.bucket);
        drop(kv);
        while let Some(message) = messages.next().await {
            let Some(kv) = global.upgrade() else { return };
            let Ok(message) = message else { break };
            let Ok(info) = message.info() else { continue };
            let sequence = info.stream_sequence;
            resume_after = Some(sequence);
            if let Some(cache_key) = message
                .subject
                .as_str()
                .strip_prefix(prefix.as_str())
                .and_then(cache_key_of)
            {
                kv.invalidate(&cache_key, sequence);
            }
        }
        if let Some(kv) = global.upgrade() {
            kv.watching.store(false, Ordering::SeqCst);
        }
        tracing::warn!(
            "the global KV watch stopped; cached values are trusted for their cache_ttl until it is back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether a publish failed because the key's last message was not the expected one
/// (the server answers 10071, or 10164 on its fast path).
fn lost_the_race(error: &async_nats::jetstream::context::PublishError) -> bool {
    use async_nats::jetstream::ErrorCode;
    if matches!(error.kind(), PublishErrorKind::WrongLastSequence) {
        return true;
    }
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<async_nats::jetstream::Error>())
        .is_some_and(|e| {
            matches!(
                e.error_code(),
                ErrorCode::STREAM_WRONG_LAST_SEQUENCE
                    | ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
            )
        })
}

/// Whether a publish failed before any stream stored it: nobody answered (no stream
/// leader), or the hub answered with an error of its own.
fn refused_before_storing(error: &async_nats::jetstream::context::PublishError) -> bool {
    matches!(error.kind(), PublishErrorKind::StreamNotFound)
        || (matches!(error.kind(), PublishErrorKind::Other)
            && std::error::Error::source(error)
                .is_some_and(|source| source.is::<async_nats::jetstream::Error>()))
}

/// `tenant.BINDING.hexkey` → `tenant/BINDING/key`.
fn cache_key_of(subject_tail: &str) -> Option<Vec<u8>> {
    let mut parts = subject_tail.splitn(3, '.');
    let (tenant, binding, token) = (parts.next()?, parts.next()?, parts.next()?);
    let key = key_from_token(token)?;
    Some([format!("{tenant}/{binding}/").as_bytes(), &key].concat())
}

/// A message as (revision, value): a deletion or purge is no value.
fn decode(sequence: u64, headers: &HeaderMap, payload: Bytes) -> (u64, Option<Stored>) {
    let deleted = headers
        .get(OPERATION)
        .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
    if deleted {
        return (sequence, None);
    }
    (
        sequence,
        Some(Stored {
            value: payload.to_vec(),
            metadata: headers.get(METADATA).and_then(|m| unhex(m.as_str())),
            expires_at_ms: header_u64(headers, EXPIRES_AT),
            version: sequence,
        }),
    )
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name).and_then(|v| v.as_str().parse().ok())
}

/// A key as one NATS subject token: its hex (`_` for the empty key).
fn key_token(key: &[u8]) -> String {
    if key.is_empty() { "_".into() } else { hex(key) }
}

fn key_from_token(token: &str) -> Option<Vec<u8>> {
    if token == "_" {
        Some(Vec::new())
    } else {
        unhex(token)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_tokens_that_keep_byte_order() {
        let keys: [&[u8]; 4] = [b"", b"a", b"a\x00", b"b/\xff.x"];
        for key in keys {
            assert_eq!(key_from_token(&key_token(key)).as_deref(), Some(key));
        }
        assert!(hex(b"a") < hex(b"a\x00") && hex(b"a\x00") < hex(b"b"));
        assert!(key_token(b"x.y*>").chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            cache_key_of("shop.SESSIONS.6162"),
            Some(b"shop/SESSIONS/ab".to_vec())
        );
    }
}
