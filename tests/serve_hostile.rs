//! Hostile HTTP/1.1, sent byte for byte over a raw connection: request smuggling shapes
//! and ambiguous hosts. Each gets an error or one unambiguous reading, and the guest
//! never sees a request two parsers could read differently.

mod support;

use std::time::Duration;

use support::{Node, tenant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `raw` on a fresh connection and reads until the node closes it (or 5 s pass):
/// everything the node answered.
async fn exchange(node: &Node, raw: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(node.addr)
        .await
        .expect("connect");
    stream.write_all(raw).await.expect("send");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the node kept the connection open after: {}",
        String::from_utf8_lossy(&answer)
    );
    String::from_utf8_lossy(&answer).into_owned()
}

/// How many responses `answer` holds, and the first one's status.
fn responses(answer: &str) -> (usize, Option<u16>) {
    let count = answer.matches("HTTP/1.1 ").count();
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    (count, status)
}

async fn echo_node() -> Node {
    Node::start(&tenant("echo", "echo", &["echo.test", "other.test"], "")).await
}

#[tokio::test]
async fn content_length_beside_transfer_encoding_is_read_one_way_and_the_connection_closes() {
    let node = echo_node().await;
    // A front proxy that believed Content-Length would see "hell" and then a second
    // request; outpost follows Transfer-Encoding (RFC 9112 §6.3) and closes after the
    // response, so nothing after the chunked body is ever read as a request.
    let answer = exchange(
        &node,
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: echo.test\r\n\r\n",
    )
    .await;
    assert_eq!(responses(&answer), (1, Some(200)), "{answer}");
    assert!(answer.contains("\"body_length\":5"), "{answer}");
    assert!(!answer.contains("smuggled"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
}

#[tokio::test]
async fn conflicting_lengths_and_unknown_codings_are_refused() {
    let node = echo_node().await;
    for raw in [
        &b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 4, 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: -5\r\n\r\nhello",
    ] {
        let answer = exchange(&node, raw).await;
        let (count, status) = responses(&answer);
        assert_eq!(count, 1, "{answer}");
        assert!(
            status.is_some_and(|s| (400..500).contains(&s) || s == 501),
            "{} was answered {answer}",
            String::from_utf8_lossy(raw)
        );
        assert!(!answer.contains("body_length"), "the guest saw it: {answer}");
    }
    // The node still serves a plain request afterwards.
    assert_eq!(node.get("echo.test", "/").await.status, 200);
}

#[tokio::test]
async fn a_request_must_name_exactly_one_host() {
    let node = echo_node().await;
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: echo.test\r\nHost: other.test\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let answer = exchange(&node, raw).await;
        assert_eq!(responses(&answer), (1, Some(400)), "{answer}");
        assert!(
            !answer.contains("body_length"),
            "the guest saw it: {answer}"
        );
    }
    // The absolute form names its host in the target, which wins over Host (RFC 9112
    // §3.2.2): routed by the target.
    let answer = exchange(
        &node,
        b"GET http://echo.test/abs HTTP/1.1\r\nHost: nowhere.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(responses(&answer).1, Some(200), "{answer}");
    assert!(answer.contains("\"path\":\"/abs\""), "{answer}");
    // HTTP/1.0 has no Host requirement; without one there is simply no route.
    let answer = exchange(&node, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.0 404"), "{answer}");
}

#[tokio::test]
async fn thousands_of_headers_are_refused_and_others_are_served() {
    let node = echo_node().await;
    let mut raw = b"GET / HTTP/1.1\r\nHost: echo.test\r\n".to_vec();
    for i in 0..5000 {
        raw.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    let answer = exchange(&node, &raw).await;
    let (count, status) = responses(&answer);
    assert_eq!(count, 1, "{answer}");
    assert!(status.is_some_and(|s| s == 431 || s == 400), "{answer}");
    assert_eq!(node.get("echo.test", "/").await.status, 200);
}

#[tokio::test]
async fn a_pipelining_flood_is_answered_in_order_while_others_are_served() {
    let node = echo_node().await;
    const REQUESTS: usize = 500;
    let mut raw = Vec::new();
    for i in 0..REQUESTS {
        raw.extend_from_slice(format!("GET /p{i} HTTP/1.1\r\nHost: echo.test\r\n\r\n").as_bytes());
    }
    raw.extend_from_slice(b"GET /last HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n");
    let flood = exchange(&node, &raw);
    let other = async {
        let reply = node.get("echo.test", "/other").await;
        assert_eq!(
            reply.status, 200,
            "another client is served during the flood"
        );
    };
    let (answer, ()) = tokio::join!(flood, other);
    assert_eq!(responses(&answer).0, REQUESTS + 1);
    // In order: each path appears after the one before it.
    let mut at = 0;
    for i in 0..REQUESTS {
        let found = answer[at..]
            .find(&format!("\"path\":\"/p{i}\""))
            .unwrap_or_else(|| panic!("/p{i} missing or out of order"));
        at += found;
    }
}

#[tokio::test]
async fn a_slow_request_body_waits_on_the_node_not_in_the_tenants_only_slot() {
    // One slot: a slow body that reached the guest would hold it (slowhttptest -B).
    let node = Node::start_with_server(
        "body_timeout = \"1s\"",
        &tenant(
            "echo",
            "echo",
            &["echo.test"],
            "limits = { concurrency = 1 }",
        ),
    )
    .await;
    let mut slow = tokio::net::TcpStream::connect(node.addr)
        .await
        .expect("connect");
    slow.write_all(
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .expect("send head");
    // `100 Continue` comes when the node starts reading the body: from here on the slow
    // request is as far in as it gets.
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut byte))
            .await
            .expect("the node asked for the body");
        assert_eq!(read.expect("read"), 1, "the node closed the connection");
        answer.push(byte[0]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 100 Continue"), "{answer:?}");
    slow.write_all(b"ab").await.expect("send a little body");

    let other = node
        .call(http::Method::POST, "echo.test", "/", "a whole body")
        .await;
    assert_eq!(other.status, 200, "{}", other.body);

    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest))
        .await
        .expect("the node closes the slow connection")
        .expect("read");
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 408"), "{rest}");
    assert!(rest.contains("request body too slow"), "{rest}");
}

#[tokio::test]
async fn a_client_that_reads_none_of_a_large_response_is_cut_off_and_frees_its_tenant() {
    // One slot, streaming an 8 MiB blob to a client that reads nothing: without the send
    // timeout it is held until the tenant's 30 s timeout.
    const BLOB: usize = 8 << 20;
    let node = Node::with_big_blob("send_timeout = \"1s\"", "concurrency = 1", BLOB).await;
    let (mut stalled, mut got) = stalled_download(&node, "").await;
    node.served_within("files.test", "/files", Duration::from_secs(15))
        .await;
    // The node hung up on the stalled client partway: what it had sent is there to read,
    // then the end.
    tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut got))
        .await
        .expect("the node closed the stalled connection")
        .expect("read");
    assert!(got.len() < BLOB, "the whole blob arrived after all");
}

/// Asks for blob-files' `/files/big` with `headers` (lines ending in CRLF), reads the
/// response's head and stops reading: the guest streaming it holds its slot.
///
/// The request that stored the blob holds the tenant's slot until its instance has
/// exited, a moment after its response; a `503 tenant busy` then means "not yet", and
/// the download is asked again (for up to 10 s).
async fn stalled_download(node: &Node, headers: &str) -> (tokio::net::TcpStream, Vec<u8>) {
    let started = std::time::Instant::now();
    loop {
        let (stalled, got) = download_head(node, headers).await;
        if got.starts_with(b"HTTP/1.1 503") && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        return (stalled, got);
    }
}

async fn download_head(node: &Node, headers: &str) -> (tokio::net::TcpStream, Vec<u8>) {
    // A small receive buffer, so the node's socket fills long before the blob is sent.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    let mut stalled = socket.connect(node.addr).await.expect("connect");
    let request = format!("GET /files/big HTTP/1.1\r\nHost: files.test\r\n{headers}\r\n");
    stalled.write_all(request.as_bytes()).await.expect("send");
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut some = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut some))
            .await
            .expect("the response's head")
            .expect("read");
        assert!(read > 0, "closed before the head");
        got.extend_from_slice(&some[..read]);
    }
    (stalled, got)
}

#[tokio::test]
async fn one_client_holds_at_most_its_share_of_a_tenants_slots() {
    // Clients told apart by the x-forwarded-for of a trusted proxy (this test).
    let node = Node::with_big_blob(
        "trusted_proxies = [\"127.0.0.1/32\"]",
        "concurrency = 4, per_client = 1",
        8 << 20,
    )
    .await;
    // The file list, asked for as `client`.
    let list_as = async |client: &str| {
        let from = [("x-forwarded-for", client)];
        let empty = bytes::Bytes::new();
        node.send(http::Method::GET, "files.test", "/files", &from, empty)
            .await
    };
    let (_stalled, _) = stalled_download(&node, "x-forwarded-for: 203.0.113.5\r\n").await;
    let again = list_as("203.0.113.5").await;
    assert_eq!(again.status, 429, "{}", again.body);
    assert!(again.headers.contains_key("retry-after"));
    let other = list_as("198.51.100.7").await;
    assert_eq!(other.status, 200, "{}", other.body);
    // One IPv6 /64 is one client.
    let (_stalled6, _) = stalled_download(&node, "x-forwarded-for: 2001:db8:1:2::1\r\n").await;
    let neighbour = list_as("2001:db8:1:2::99").await;
    assert_eq!(neighbour.status, 429, "{}", neighbour.body);
}
