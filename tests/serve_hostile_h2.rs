//! Hostile HTTP/2 (cleartext, prior knowledge), frame by frame over a raw connection:
//! rapid reset (CVE-2023-44487), CONTINUATION floods, SETTINGS and PING floods, more
//! streams than allowed, a send window held at zero (on one connection or on many).
//! Each costs the attacker its connection or its streams (or nothing grows), and another
//! client is served meanwhile.

mod support;

use std::time::Duration;

use support::{Node, proc_status_bytes, tenant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;

#[path = "../benches/load/src/h2frames.rs"]
#[allow(dead_code)]
mod h2frames;
use h2frames::*;

/// The next frame's type, flags and payload; `None` once the connection ends.
async fn read_frame(read: &mut (impl AsyncReadExt + Unpin)) -> Option<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    read.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    read.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], payload))
}

/// What the node sent on a connection, read until it closed it.
#[derive(Debug, Default)]
struct Seen {
    goaway: Option<u32>,
    responses: usize,
    /// Responses that were a head alone (END_STREAM on HEADERS).
    heads_alone: usize,
    resets: Vec<u32>,
    pongs: usize,
    data_bytes: usize,
}

/// Reads frames until the node closes the connection (or `within` passes).
async fn read_frames(read: OwnedReadHalf, within: Duration) -> (Seen, bool) {
    read_frames_until(read, within, |_| false).await
}

/// Reads frames until the node closes the connection, `done` says so, or `within`
/// passes; answers whether it ended before `within`.
async fn read_frames_until(
    mut read: OwnedReadHalf,
    within: Duration,
    done: impl Fn(&Seen) -> bool,
) -> (Seen, bool) {
    let mut seen = Seen::default();
    let closed = tokio::time::timeout(within, async {
        while let Some((kind, flags, payload)) = read_frame(&mut read).await {
            let len = payload.len();
            let code = |at: usize| {
                payload
                    .get(at..at + 4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            };
            match kind {
                HEADERS => {
                    seen.responses += 1;
                    seen.heads_alone += usize::from(flags & END_STREAM != 0);
                }
                RST_STREAM => seen.resets.extend(code(0)),
                GOAWAY => seen.goaway = code(4),
                PING if flags & 0x1 != 0 => seen.pongs += 1,
                DATA => seen.data_bytes += len,
                _ => {}
            }
            if done(&seen) {
                return;
            }
        }
    })
    .await
    .is_ok();
    (seen, closed)
}

/// An HTTP/2 connection to `node`, preface and empty SETTINGS sent.
async fn connect(node: &Node, settings: &[u8]) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(node.addr)
        .await
        .expect("connect");
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, settings));
    stream.write_all(&hello).await.expect("preface");
    stream
}

/// Opens `count` streams for `path` on a connection whose window is shut, and reads
/// until `done` (or 30 s); the connection's write half stays open with the result.
async fn stall(
    node: &Node,
    count: u32,
    host: &str,
    path: &str,
    done: impl Fn(&Seen) -> bool + Send + Sync + 'static,
) -> (Seen, tokio::net::tcp::OwnedWriteHalf) {
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: the node may send no DATA on any stream.
    let stream = connect(node, &ZERO_WINDOW).await;
    let (read, mut write) = stream.into_split();
    let reader = tokio::spawn(read_frames_until(read, Duration::from_secs(30), done));
    write
        .write_all(&requests(count, host, path))
        .await
        .expect("streams");
    let (seen, _) = reader.await.expect("reader");
    (seen, write)
}

async fn hello_node() -> Node {
    Node::start(&tenant("hello", "hello", &["hello.test"], "")).await
}

async fn another_client_is_served(node: &Node, host: &str) {
    let reply = node.get(host, "/").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn rapid_reset_costs_the_attacker_its_connection() {
    let node = hello_node().await;
    let stream = connect(&node, &[]).await;
    let (read, mut write) = stream.into_split();
    let reader = tokio::spawn(read_frames(read, Duration::from_secs(20)));
    // Open and cancel 20,000 streams, as fast as the socket takes them.
    let mut sent = 0;
    'flood: for batch in 0..200u32 {
        let mut bytes = Vec::new();
        for i in 0..100u32 {
            let stream_id = (batch * 100 + i) * 2 + 1;
            bytes.extend(frame(
                HEADERS,
                END_STREAM | END_HEADERS,
                stream_id,
                &get("hello.test", "/"),
            ));
            bytes.extend(frame(RST_STREAM, 0, stream_id, &8u32.to_be_bytes()));
        }
        if write.write_all(&bytes).await.is_err() {
            break 'flood;
        }
        sent += 100;
    }
    another_client_is_served(&node, "hello.test").await;
    let (seen, closed) = reader.await.expect("reader");
    assert!(
        closed,
        "the node kept a rapid-reset connection open: {seen:?}"
    );
    assert_eq!(
        seen.goaway,
        Some(ENHANCE_YOUR_CALM),
        "{seen:?} after {sent} streams"
    );
}

#[tokio::test]
async fn a_continuation_flood_is_cut_off_early() {
    let node = hello_node().await;
    let before = proc_status_bytes(node.pid(), "VmRSS");
    let stream = connect(&node, &[]).await;
    let (read, mut write) = stream.into_split();
    let reader = tokio::spawn(read_frames(read, Duration::from_secs(20)));
    let mut opening = get("hello.test", "/");
    opening.truncate(2);
    write
        .write_all(&frame(HEADERS, END_STREAM, 1, &opening))
        .await
        .expect("headers");
    // Endless header bytes: a literal `x-junk` header filling each CONTINUATION frame.
    let junk = continuation_junk();
    assert_eq!(junk.len(), 16_384);
    let flood = frame(CONTINUATION, 0, 1, &junk);
    let mut sent = 0usize;
    for _ in 0..10_000 {
        if write.write_all(&flood).await.is_err() {
            break;
        }
        sent += flood.len();
    }
    let (seen, closed) = reader.await.expect("reader");
    assert!(closed, "the node kept a CONTINUATION flood open: {seen:?}");
    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    assert!(
        sent < 16 << 20,
        "the node read {sent} bytes of one header block before stopping"
    );
    let grown = proc_status_bytes(node.pid(), "VmRSS").saturating_sub(before);
    assert!(grown < 32 << 20, "the node grew by {grown} bytes");
    another_client_is_served(&node, "hello.test").await;
}

#[tokio::test]
async fn settings_and_ping_floods_that_never_read_do_not_grow_the_node() {
    let node = hello_node().await;
    let before = proc_status_bytes(node.pid(), "VmRSS");
    let mut floods = Vec::new();
    for (kind, payload) in [(SETTINGS, &[][..]), (PING, &[7u8; 8][..])] {
        let stream = connect(&node, &[]).await;
        let (read, mut write) = stream.into_split();
        floods.push(tokio::spawn(async move {
            // Never read: every acknowledgement the node owes piles up on its side.
            let _keep = read;
            let bytes: Vec<u8> = (0..10_000)
                .flat_map(|_| frame(kind, 0, 0, payload))
                .collect();
            let mut sent = 0usize;
            for _ in 0..100 {
                match tokio::time::timeout(Duration::from_secs(2), write.write_all(&bytes)).await {
                    Ok(Ok(())) => sent += 10_000,
                    // The node stopped reading (backpressure) or closed the connection.
                    _ => break,
                }
            }
            sent
        }));
    }
    for flood in floods {
        flood.await.expect("flood");
    }
    let grown = proc_status_bytes(node.pid(), "VmRSS").saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "the node grew by {grown} bytes under the floods"
    );
    another_client_is_served(&node, "hello.test").await;
}

#[tokio::test]
async fn streams_past_the_concurrency_limit_are_refused() {
    // Slow guests hold their streams open while more are opened.
    let node = Node::start(&tenant(
        "limits",
        "limits",
        &["limits.test"],
        "limits = { concurrency = 1000 }",
    ))
    .await;
    let stream = connect(&node, &[]).await;
    let (read, mut write) = stream.into_split();
    let reader = tokio::spawn(read_frames_until(read, Duration::from_secs(30), |seen| {
        seen.responses + seen.resets.len() >= 300
    }));
    write
        .write_all(&requests(300, "limits.test", "/sleep?ms=3000"))
        .await
        .expect("streams");
    let (seen, _) = reader.await.expect("reader");
    let refused = seen
        .resets
        .iter()
        .filter(|code| **code == REFUSED_STREAM)
        .count();
    // 100 at a time per connection (SETTINGS_MAX_CONCURRENT_STREAMS); the rest refused.
    assert_eq!((seen.responses, refused), (100, 200), "{seen:?}");
    another_client_is_served(&node, "limits.test").await;
}

#[tokio::test]
async fn an_idle_connection_that_answers_pings_is_still_closed() {
    // The node's keep-alive pings must not count as activity: a client that only
    // answers them holds a connection (and its slot in max_connections) forever.
    let node = Node::start_with_server(
        "idle_timeout = \"1s\"",
        &tenant("hello", "hello", &["hello.test"], ""),
    )
    .await;
    let mut stream = connect(&node, &[]).await;
    stream
        .write_all(&frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
            &get("hello.test", "/"),
        ))
        .await
        .expect("request");
    let mut pings = 0;
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some((kind, flags, payload)) = read_frame(&mut stream).await {
            match kind {
                PING if flags & 0x1 == 0 => {
                    pings += 1;
                    let _ = stream.write_all(&frame(PING, 0x1, 0, &payload)).await;
                }
                GOAWAY => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after answering {pings} pings");
}

#[tokio::test]
async fn streams_stalled_on_a_zero_window_hold_a_bounded_buffer_each() {
    // Static files, so what grows is the node's send buffers and not guest instances.
    let (node, _site) = big_file_node("").await;
    let before = proc_status_bytes(node.pid(), "VmRSS");
    let (seen, write) = stall(&node, 100, "site.test", "/big.bin", |s| s.responses >= 100).await;
    assert_eq!((seen.responses, seen.data_bytes), (100, 0), "{seen:?}");
    // 100 × 2 MiB asked for; each stream may hold 64 KiB (and the file reader's chunk).
    let grown = proc_status_bytes(node.pid(), "VmRSS").saturating_sub(before);
    assert!(
        grown < 24 << 20,
        "100 stalled streams grew the node by {grown} bytes"
    );
    another_client_is_served(&node, "site.test").await;
    drop(write);
}

/// A site serving a 2 MiB static file at `/big.bin`, with `server` keys.
async fn big_file_node(server: &str) -> (Node, tempfile::TempDir) {
    let site = tempfile::tempdir().expect("site");
    std::fs::write(site.path().join("big.bin"), vec![b'b'; 2 << 20]).expect("big file");
    let assets = format!(
        "assets = {{ directory = {:?} }}",
        site.path().display().to_string()
    );
    let site_tenant = tenant("site", "hello", &["site.test"], &assets);
    (Node::start_with_server(server, &site_tenant).await, site)
}

#[tokio::test]
async fn streams_whose_client_takes_no_bytes_are_reset_and_free_their_tenant() {
    // All four of the tenant's slots stream a 4 MiB blob to a client whose window is
    // shut; without the send timeout they are held until the tenant's 30 s timeout.
    let node = Node::with_big_blob("send_timeout = \"1s\"", "concurrency = 4", 4 << 20).await;
    let (seen, write) = stall(&node, 4, "files.test", "/files/big", |s| {
        s.resets.len() >= 4
    })
    .await;
    assert_eq!((seen.responses, seen.data_bytes), (4, 0), "{seen:?}");
    assert_eq!(seen.resets, vec![CANCEL; 4], "{seen:?}");
    assert_eq!(seen.goaway, None, "the connection carries on: {seen:?}");
    let cut_off = |line: &str| line.contains("response cut off") && line.contains("\"files\"");
    assert!(node.wait_for_log(cut_off).await, "{}", node.logs());
    node.served_within("files.test", "/files", Duration::from_secs(10))
        .await;
    drop(write);
}

#[tokio::test]
async fn past_max_open_requests_the_connection_holding_most_is_refused() {
    let (node, _site) = big_file_node("max_open_requests = 50").await;
    let (seen, write) = stall(&node, 100, "site.test", "/big.bin", |s| s.responses >= 100).await;
    // 50 held open, waiting for a window; 50 refused with a head alone (503), which
    // needs none.
    assert_eq!((seen.responses, seen.heads_alone), (100, 50), "{seen:?}");
    // The node is at its bound, but this client holds nothing.
    another_client_is_served(&node, "site.test").await;
    drop(write);
}
