//! How global KV and deploys sit on the hub: a key as a NATS subject token (hex keeps
//! byte order; any bytes make a valid token), a value's metadata and expiry in message
//! headers, and hex for hashes and metadata.

use async_nats::HeaderMap;
use bytes::Bytes;
use outpost_bindings::kv::Stored;

/// Message headers beside the value.
pub(crate) const OPERATION: &str = "KV-Operation";
pub(crate) const EXPIRES_AT: &str = "Outpost-Expires-At";
pub(crate) const METADATA: &str = "Outpost-Metadata";
pub(crate) const EXPECTED_LAST: &str = "Nats-Expected-Last-Subject-Sequence";
pub(crate) const MSG_ID: &str = "Nats-Msg-Id";

/// `tenant.BINDING.hexkey` → `tenant/BINDING/key`.
pub(crate) fn cache_key_of(subject_tail: &str) -> Option<Vec<u8>> {
    let mut parts = subject_tail.splitn(3, '.');
    let (tenant, binding, token) = (parts.next()?, parts.next()?, parts.next()?);
    let key = key_from_token(token)?;
    Some([format!("{tenant}/{binding}/").as_bytes(), &key].concat())
}

/// A message as (revision, value): a deletion or purge is no value.
pub(crate) fn decode(sequence: u64, headers: &HeaderMap, payload: Bytes) -> (u64, Option<Stored>) {
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

pub(crate) fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name).and_then(|v| v.as_str().parse().ok())
}

/// A key as one NATS subject token: its hex (`_` for the empty key).
pub(crate) fn key_token(key: &[u8]) -> String {
    if key.is_empty() { "_".into() } else { hex(key) }
}

pub(crate) fn key_from_token(token: &str) -> Option<Vec<u8>> {
    if token == "_" {
        Some(Vec::new())
    } else {
        unhex(token)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
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
