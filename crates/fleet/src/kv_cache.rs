//! The node's copy of the global KV values it has read: a sled tree, so it survives a
//! restart and serves while the hub is away. Each entry is what the hub said about a
//! key at a revision (a value, or that there is none) and when this node asked.

use outpost_bindings::kv::Stored;

/// What the hub said about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cached {
    /// The hub's revision of the key (its last message's stream sequence; 0: never
    /// written).
    pub revision: u64,
    /// When this node learned it, in ms since the Unix epoch.
    pub cached_at_ms: u64,
    /// The value, or `None` for a key with no value (never written or deleted).
    pub value: Option<Stored>,
}

const NONE_U64: u64 = u64::MAX;
const NONE_U32: u32 = u32::MAX;

impl Cached {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            32 + self.value.as_ref().map_or(0, |v| {
                v.value.len() + v.metadata.as_ref().map_or(0, Vec::len)
            }),
        );
        out.extend_from_slice(&self.revision.to_be_bytes());
        out.extend_from_slice(&self.cached_at_ms.to_be_bytes());
        match &self.value {
            None => out.push(0),
            Some(stored) => {
                out.push(1);
                out.extend_from_slice(&stored.expires_at_ms.unwrap_or(NONE_U64).to_be_bytes());
                match &stored.metadata {
                    None => out.extend_from_slice(&NONE_U32.to_be_bytes()),
                    Some(metadata) => {
                        let len = u32::try_from(metadata.len()).unwrap_or(NONE_U32 - 1);
                        out.extend_from_slice(&len.to_be_bytes());
                        out.extend_from_slice(metadata);
                    }
                }
                out.extend_from_slice(&stored.value);
            }
        }
        out
    }

    /// `None` for bytes this code did not write (a cache from another version): the
    /// caller treats it as a miss.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Cached> {
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        let revision = u64_at(0)?;
        let cached_at_ms = u64_at(8)?;
        let value = match bytes.get(16)? {
            0 => None,
            1 => {
                let expires = u64_at(17)?;
                let meta_len = u32::from_be_bytes(bytes.get(25..29)?.try_into().ok()?);
                let (metadata, rest) = if meta_len == NONE_U32 {
                    (None, 29)
                } else {
                    let end = 29 + meta_len as usize;
                    (Some(bytes.get(29..end)?.to_vec()), end)
                };
                Some(Stored {
                    value: bytes.get(rest..)?.to_vec(),
                    metadata,
                    expires_at_ms: (expires != NONE_U64).then_some(expires),
                    version: revision,
                })
            }
            _ => return None,
        };
        Some(Cached {
            revision,
            cached_at_ms,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_encoding() {
        let entries = [
            Cached {
                revision: 7,
                cached_at_ms: 1_700_000_000_000,
                value: None,
            },
            Cached {
                revision: 9,
                cached_at_ms: 5,
                value: Some(Stored {
                    value: b"hello".to_vec(),
                    metadata: Some(b"{\"a\":1}".to_vec()),
                    expires_at_ms: Some(99),
                    version: 9,
                }),
            },
            Cached {
                revision: 10,
                cached_at_ms: 6,
                value: Some(Stored {
                    value: Vec::new(),
                    metadata: None,
                    expires_at_ms: None,
                    version: 10,
                }),
            },
        ];
        for entry in entries {
            assert_eq!(Cached::decode(&entry.encode()), Some(entry));
        }
        assert_eq!(Cached::decode(b"short"), None);
    }
}
