//! One tenant's global binding: the `KvStore` the guest's calls reach, reading through
//! the node's cache and writing through the hub.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use outpost_bindings::kv::{
    GlobalKvBackend, KvError, KvStore, Listed, Stored, Swap, WriteOptions, list_start, page,
};

use super::{CONTENDED_FOR, GlobalKv};
use crate::kv_cache::Cached;
use crate::wire::{
    EXPIRES_AT, METADATA, OPERATION, decode, header_u64, hex, key_from_token, key_token, unhex,
};

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
