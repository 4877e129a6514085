//! HTTP/2 frames written by hand, for attacks that a well-behaved client library will not
//! send. Shared with `tests/serve_hostile_h2.rs` (which includes this file by path).

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const CONTINUATION: u8 = 9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
/// `SETTINGS_INITIAL_WINDOW_SIZE = 0`: the peer may send no DATA until told otherwise.
pub const ZERO_WINDOW: [u8; 6] = [0x00, 0x04, 0, 0, 0, 0];

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// `GET path` for `host` in HPACK: static-table `:method GET` and `:scheme http`, then
/// `:path` and `:authority` as literals that are not indexed.
pub fn get(host: &str, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86];
    for (name_index, value) in [(4u8, path), (1u8, host)] {
        block.push(name_index);
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// `count` complete GET requests on streams 1, 3, 5, …, sent in one write.
pub fn requests(count: u32, host: &str, path: &str) -> Vec<u8> {
    (0..count)
        .flat_map(|i| {
            frame(
                HEADERS,
                END_STREAM | END_HEADERS,
                i * 2 + 1,
                &get(host, path),
            )
        })
        .collect()
}

/// The payload of one CONTINUATION frame of 16,384 bytes (the default
/// SETTINGS_MAX_FRAME_SIZE): a literal `x-junk` header that fills it.
pub fn continuation_junk() -> Vec<u8> {
    let value = 16_384 - 11;
    let mut junk = vec![0x00, 6];
    junk.extend_from_slice(b"x-junk");
    // The value's length as an HPACK integer with a 7-bit prefix (RFC 7541 §5.1).
    let rest = value - 127;
    junk.extend_from_slice(&[0x7f, (rest & 0x7f) as u8 | 0x80, (rest >> 7) as u8]);
    junk.resize(junk.len() + value, b'j');
    junk
}
