//! The `outpost:edge/kv` host calls: arguments and limits checked here, then the store.

use wasmtime::component::Resource;

use super::store::{KvError, Swap, WriteOptions};
use super::{
    KvCtxView, KvHandle, MAX_KEY_BYTES, MAX_LIST_LIMIT, MAX_METADATA_BYTES, MAX_VALUE_BYTES,
};
use crate::generated::outpost::edge::kv::{
    CasOutcome, Entry, Host, HostStore, KeyInfo, ListOptions, ListResult, PutOptions,
};
use crate::{EdgeError, EdgeResult, ErrorCode, now_ms};

fn check_key(key: &str) -> EdgeResult<()> {
    if key.is_empty() {
        return Err(EdgeError::invalid("the key is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(EdgeError::limit(
            "kv.key_bytes",
            format!(
                "the key is {} bytes; keys are limited to {MAX_KEY_BYTES} bytes",
                key.len()
            ),
        ));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> EdgeResult<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(EdgeError::limit(
            "kv.value_bytes",
            format!(
                "the value is {} bytes; values are limited to {MAX_VALUE_BYTES} bytes (25 MiB)",
                value.len()
            ),
        ));
    }
    Ok(())
}

fn write_options(options: PutOptions, now_ms: u64) -> EdgeResult<WriteOptions> {
    if let Some(metadata) = &options.metadata
        && metadata.len() > MAX_METADATA_BYTES
    {
        return Err(EdgeError::limit(
            "kv.metadata_bytes",
            format!(
                "the metadata is {} bytes; metadata is limited to {MAX_METADATA_BYTES} bytes",
                metadata.len()
            ),
        ));
    }
    Ok(WriteOptions {
        metadata: options.metadata,
        expires_at_ms: expiry(options.expiration_ttl, options.expiration, now_ms)?,
    })
}

/// Turns a TTL (seconds from now) or an absolute expiry (Unix seconds) into milliseconds.
fn expiry(ttl: Option<u64>, at: Option<u64>, now_ms: u64) -> EdgeResult<Option<u64>> {
    match (ttl, at) {
        (Some(_), Some(_)) => Err(EdgeError::invalid(
            "give either expiration-ttl or expiration, not both",
        )),
        (Some(0), None) => Err(EdgeError::invalid(
            "expiration-ttl must be at least 1 second",
        )),
        (Some(ttl), None) => Ok(Some(now_ms.saturating_add(ttl.saturating_mul(1000)))),
        (None, Some(at)) => {
            let at_ms = at.saturating_mul(1000);
            if at_ms <= now_ms {
                return Err(EdgeError::invalid(format!(
                    "expiration {at} is in the past"
                )));
            }
            Ok(Some(at_ms))
        }
        (None, None) => Ok(None),
    }
}

impl From<KvError> for EdgeError {
    fn from(error: KvError) -> EdgeError {
        match error {
            KvError::Invalid(text) => EdgeError::invalid(text),
            KvError::Unavailable(text) => EdgeError::unavailable(format!("kv: {text}")),
            KvError::Full(text) => ErrorCode::Full(format!("kv: {text}")).into(),
            KvError::Storage(text) => EdgeError::store(format!("kv: {text}")),
        }
    }
}

fn secs(ms: Option<u64>) -> Option<u64> {
    ms.map(|ms| ms.div_ceil(1000))
}

/// Cursors are the last key returned, hex-encoded so any key survives a query string.
fn encode_cursor(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(cursor: &str) -> EdgeResult<Vec<u8>> {
    let bad = || EdgeError::invalid(format!("`{cursor}` is not a cursor from `list`"));
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

impl KvCtxView<'_> {
    fn store(&self, handle: &Resource<KvHandle>) -> EdgeResult<std::sync::Arc<dyn super::KvStore>> {
        Ok(self.table.get(handle)?.store.clone())
    }

    fn timed(&self, op: &'static str) -> crate::meters::OperationTimer {
        self.ctx.meters.time(&self.ctx.tenant, "kv", op)
    }
}

crate::error::convert_edge_errors!(KvCtxView<'_>);

impl HostStore for KvCtxView<'_> {
    async fn open(&mut self, name: String) -> EdgeResult<Resource<KvHandle>> {
        let Some(backend) = self.ctx.bindings.get(&name) else {
            return Err(crate::undeclared("kv", &name, &self.ctx.tenant));
        };
        let store = backend.open(&self.ctx.tenant, &name)?;
        Ok(self.table.push(KvHandle { store })?)
    }

    async fn get(&mut self, this: Resource<KvHandle>, key: String) -> EdgeResult<Option<Entry>> {
        let _timer = self.timed("get");
        let store = self.store(&this)?;
        check_key(&key)?;
        let found = store.get(key.as_bytes(), now_ms()).await?;
        Ok(found.map(|stored| Entry {
            value: stored.value,
            metadata: stored.metadata,
            expiration: secs(stored.expires_at_ms),
            version: stored.version,
        }))
    }

    async fn put(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
        value: Vec<u8>,
        options: PutOptions,
    ) -> EdgeResult<u64> {
        let _timer = self.timed("put");
        let store = self.store(&this)?;
        check_key(&key)?;
        check_value(&value)?;
        let options = write_options(options, now_ms())?;
        Ok(store.put(key.as_bytes(), &value, &options).await?)
    }

    async fn delete(&mut self, this: Resource<KvHandle>, key: String) -> EdgeResult<()> {
        let _timer = self.timed("delete");
        let store = self.store(&this)?;
        check_key(&key)?;
        Ok(store.delete(key.as_bytes()).await?)
    }

    async fn list(
        &mut self,
        this: Resource<KvHandle>,
        options: ListOptions,
    ) -> EdgeResult<ListResult> {
        let _timer = self.timed("list");
        let store = self.store(&this)?;
        let limit = options.limit.unwrap_or(MAX_LIST_LIMIT);
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(EdgeError::invalid(format!(
                "limit {limit} is out of range; list returns 1 to {MAX_LIST_LIMIT} keys"
            )));
        }
        let after = options.cursor.as_deref().map(decode_cursor).transpose()?;
        let prefix = options.prefix.unwrap_or_default();
        let (keys, complete) = store
            .list(
                prefix.as_bytes(),
                after.as_deref(),
                limit as usize,
                now_ms(),
            )
            .await?;
        let cursor = match (complete, keys.last()) {
            (false, Some(last)) => Some(encode_cursor(&last.key)),
            _ => None,
        };
        Ok(ListResult {
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
        })
    }

    async fn increment(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
        delta: i64,
        expiration_ttl: Option<u64>,
    ) -> EdgeResult<i64> {
        let _timer = self.timed("increment");
        let store = self.store(&this)?;
        let now = now_ms();
        check_key(&key)?;
        let expires = expiry(expiration_ttl, None, now)?;
        Ok(store.increment(key.as_bytes(), delta, expires, now).await?)
    }

    async fn compare_and_swap(
        &mut self,
        this: Resource<KvHandle>,
        key: String,
        version: Option<u64>,
        value: Vec<u8>,
        options: PutOptions,
    ) -> EdgeResult<CasOutcome> {
        let _timer = self.timed("compare_and_swap");
        let store = self.store(&this)?;
        let now = now_ms();
        check_key(&key)?;
        check_value(&value)?;
        let options = write_options(options, now)?;
        Ok(
            match store
                .compare_and_swap(key.as_bytes(), version, &value, &options, now)
                .await?
            {
                Swap::Swapped(new) => CasOutcome::Swapped(new),
                Swap::Conflict(current) => CasOutcome::Conflict(current),
            },
        )
    }

    async fn drop(&mut self, this: Resource<KvHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl Host for KvCtxView<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: EdgeResult<impl std::fmt::Debug>) -> ErrorCode {
        result
            .expect_err("must fail")
            .code()
            .cloned()
            .expect("an error code, not a trap")
    }

    #[test]
    fn cursors_round_trip_any_key() {
        for key in [&b"user:1"[..], b"", &[0, 255, b'/', b'?']] {
            assert_eq!(decode_cursor(&encode_cursor(key)).expect("decodes"), key);
        }
    }

    #[test]
    fn a_cursor_not_from_list_is_an_invalid_argument() {
        for bad in ["abc", "zz", "0g"] {
            assert!(
                matches!(code(decode_cursor(bad)), ErrorCode::InvalidArgument(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn expiry_takes_a_ttl_or_a_future_time_not_both() {
        assert_eq!(expiry(Some(60), None, 1_000).expect("ttl"), Some(61_000));
        assert_eq!(expiry(None, Some(10), 1_000).expect("at"), Some(10_000));
        assert_eq!(expiry(None, None, 1_000).expect("none"), None);
        for (ttl, at) in [(Some(1), Some(10)), (Some(0), None), (None, Some(1))] {
            assert!(matches!(
                code(expiry(ttl, at, 1_000)),
                ErrorCode::InvalidArgument(_)
            ));
        }
    }

    #[test]
    fn oversized_keys_values_and_metadata_name_their_limit() {
        let limit = |error: ErrorCode| match error {
            ErrorCode::LimitExceeded(hit) => hit.limit,
            other => panic!("expected limit-exceeded, got {other:?}"),
        };
        assert_eq!(
            limit(code(check_key(&"k".repeat(MAX_KEY_BYTES + 1)))),
            "kv.key_bytes"
        );
        assert_eq!(
            limit(code(check_value(&vec![0; MAX_VALUE_BYTES + 1]))),
            "kv.value_bytes"
        );
        let options = PutOptions {
            expiration_ttl: None,
            expiration: None,
            metadata: Some(vec![0; MAX_METADATA_BYTES + 1]),
        };
        assert_eq!(limit(code(write_options(options, 0))), "kv.metadata_bytes");
        assert!(matches!(code(check_key("")), ErrorCode::InvalidArgument(_)));
        check_key(&"k".repeat(MAX_KEY_BYTES)).expect("a key at the limit is fine");
    }
}
