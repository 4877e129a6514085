//! How values sit in sled: a header (format byte, version, expiry, metadata length),
//! the metadata, then the value; and the expiry index's keys.

use super::KvError;

/// Value format byte, so the layout can change later.
const FORMAT: u8 = 1;
const HEADER: usize = 1 + 8 + 8 + 4;
const NO_METADATA: u32 = u32::MAX;

pub(super) fn expiry_key(at: u64, ns: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + ns.len() + key.len());
    out.extend_from_slice(&at.to_be_bytes());
    out.extend_from_slice(&(ns.len() as u16).to_be_bytes());
    out.extend_from_slice(ns.as_bytes());
    out.extend_from_slice(key);
    out
}

pub(super) fn parse_expiry_key(raw: &[u8]) -> Option<(u64, &str, &[u8])> {
    let at = u64::from_be_bytes(raw.get(..8)?.try_into().ok()?);
    let len = u16::from_be_bytes(raw.get(8..10)?.try_into().ok()?) as usize;
    let ns = std::str::from_utf8(raw.get(10..10 + len)?).ok()?;
    Some((at, ns, raw.get(10 + len..)?))
}

pub(super) fn encode(
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

pub(super) struct Header<'a> {
    pub(super) version: u64,
    pub(super) expires_at_ms: Option<u64>,
    pub(super) metadata: Option<&'a [u8]>,
    pub(super) value: &'a [u8],
}

impl Header<'_> {
    fn live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|at| at > now_ms)
    }
}

pub(super) fn decode_header(raw: &[u8]) -> Option<Header<'_>> {
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
pub(super) fn live<'a>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_decode_as_encoded_with_and_without_metadata() {
        for metadata in [None, Some(&b""[..]), Some(&b"{\"a\":1}"[..])] {
            let raw = encode(7, Some(1_000), metadata, b"value");
            let header = decode_header(&raw).expect("decodes");
            assert_eq!(header.version, 7);
            assert_eq!(header.expires_at_ms, Some(1_000));
            assert_eq!(header.metadata, metadata);
            assert_eq!(header.value, b"value");
        }
        let raw = encode(1, None, None, b"");
        let never = decode_header(&raw).expect("decodes");
        assert_eq!(never.expires_at_ms, None);
    }

    #[test]
    fn truncated_or_foreign_values_do_not_decode() {
        let raw = encode(7, None, Some(b"meta"), b"v");
        assert!(
            decode_header(&raw[..HEADER + 2]).is_none(),
            "metadata cut short"
        );
        assert!(decode_header(&raw[..5]).is_none(), "header cut short");
        let mut foreign = raw.clone();
        foreign[0] = FORMAT + 1;
        assert!(decode_header(&foreign).is_none(), "unknown format");
    }

    #[test]
    fn expiry_keys_sort_by_time_and_parse_back() {
        let early = expiry_key(5, "t/A", b"k");
        let late = expiry_key(500, "t/A", b"a");
        assert!(early < late);
        assert_eq!(parse_expiry_key(&late), Some((500, "t/A", &b"a"[..])));
    }
}
