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

mod store;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use bytes::Bytes;
use futures::StreamExt;
use outpost_bindings::kv::{KvError, Stored};

use crate::hub::{FleetError, Hub};
use crate::kv_cache::Cached;
use crate::status::now_ms;
use crate::wire::{EXPECTED_LAST, MSG_ID, cache_key_of, decode};

pub use store::GlobalBackend;

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
