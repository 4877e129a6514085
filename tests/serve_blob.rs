//! Blobs through the real binary and `examples/blob-files`, against a file store, a memory
//! store and a real S3-protocol server (`s3s-fs`), including a 100 MiB object streamed up
//! and down through a guest whose memory is capped at 16 MiB.

mod support;

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::{Node, Reply, S3Server, strings, tenant, write_config};
use tokio::io::AsyncWriteExt;

const HOST: &str = "files.test";

/// A node serving blob-files with its `FILES` binding on `store` (a TOML value), plus the
/// S3 server when the store is one.
struct Setup {
    node: Node,
    _s3: Option<S3Server>,
}

async fn start(store: &str, memory: &str) -> Setup {
    let s3 = if store == "s3" {
        Some(S3Server::start("outpost-test").await)
    } else {
        None
    };
    let binding = match &s3 {
        Some(server) => format!(
            "{{ url = \"s3://outpost-test/tenant-a\", endpoint = \"{}\" }}",
            server.endpoint
        ),
        None => store.to_string(),
    };
    let extra = format!("blob = {{ FILES = {binding} }}\nlimits = {{ memory = \"{memory}\" }}");
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, addr) = write_config(dir.path(), &tenant("files", "blob-files", &[HOST], &extra));
    let env = s3.as_ref().map(S3Server::credentials).unwrap_or_default();
    let env: Vec<(&str, &str)> = env.iter().copied().filter(|(k, _)| !k.is_empty()).collect();
    let node = Node::start_with_env(dir, &config, addr, &env).await;
    Setup { node, _s3: s3 }
}

async fn call(
    node: &Node,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    node.send(method, HOST, path, headers, Bytes::from(body.to_string()))
        .await
}

async fn operations_work(store: &str) {
    let setup = start(store, "64MiB").await;
    let node = &setup.node;
    let body = "0123456789abcdefghij";
    let put = call(
        node,
        Method::PUT,
        "/files/docs/a.txt",
        &[("content-type", "text/plain"), ("x-meta-owner", "ann")],
        body,
    )
    .await;
    assert_eq!(put.status, 201, "{store}: {}", put.body);
    let info = put.json();
    assert_eq!(info["size"], 20);
    assert!(info["etag"].is_string(), "{info}");
    assert!(
        info["uploaded"]
            .as_u64()
            .is_some_and(|t| t > 1_700_000_000_000),
        "{info}"
    );

    let head = call(node, Method::HEAD, "/files/docs/a.txt", &[], "").await;
    assert_eq!(head.status, 200, "{store}");
    assert_eq!(head.header("content-length"), Some("20"));
    assert_eq!(head.header("content-type"), Some("text/plain"), "{store}");
    assert_eq!(head.header("x-meta-owner"), Some("ann"), "{store}");
    let uploaded = info["uploaded"].as_u64().expect("uploaded") / 1000;
    let modified = head.header("last-modified").expect("last-modified");
    let modified = httpdate::parse_http_date(modified).expect("an HTTP date");
    let modified = modified
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert_eq!(
        modified, uploaded,
        "{store}: last-modified is the upload time"
    );
    let etag = head.header("etag").expect("etag").to_string();
    assert_eq!(
        etag.trim_matches('"'),
        info["etag"].as_str().expect("etag").trim_matches('"')
    );

    let whole = node.get(HOST, "/files/docs/a.txt").await;
    assert_eq!((whole.status, whole.body.as_str()), (200, body));
    for (range, status, expected, content_range) in [
        ("bytes=2-5", 206, "2345", "bytes 2-5/20"),
        ("bytes=15-", 206, "fghij", "bytes 15-19/20"),
        ("bytes=-3", 206, "hij", "bytes 17-19/20"),
        ("bytes=18-100", 206, "ij", "bytes 18-19/20"),
        ("bytes=20-", 416, "", "bytes */20"),
    ] {
        let reply = call(
            node,
            Method::GET,
            "/files/docs/a.txt",
            &[("range", range)],
            "",
        )
        .await;
        assert_eq!(reply.status, status, "{store} {range}: {}", reply.body);
        assert_eq!(
            reply.header("content-range"),
            Some(content_range),
            "{store} {range}"
        );
        if status == 206 {
            assert_eq!(reply.body, expected, "{store} {range}");
        }
    }

    // Overwrite, then delete.
    call(node, Method::PUT, "/files/docs/a.txt", &[], "new").await;
    assert_eq!(node.get(HOST, "/files/docs/a.txt").await.body, "new");
    let deleted = call(node, Method::DELETE, "/files/docs/a.txt", &[], "").await;
    assert_eq!(deleted.status, 204);
    assert_eq!(node.get(HOST, "/files/docs/a.txt").await.status, 404);
    assert_eq!(
        call(node, Method::HEAD, "/files/docs/a.txt", &[], "")
            .await
            .status,
        404
    );

    // Keys that could escape or are malformed are refused before any store sees them.
    for bad in [
        "/files/a/../b",
        "/files/..",
        "/files//lead",
        "/files/a//b",
        "/files/a/",
    ] {
        let reply = call(node, Method::PUT, bad, &[], "x").await;
        assert_eq!(reply.status, 400, "{store} {bad}: {}", reply.body);
        assert!(
            reply.body.contains("the key"),
            "{store} {bad}: {}",
            reply.body
        );
    }
}

async fn listing_pages_and_groups(store: &str) {
    let setup = start(store, "64MiB").await;
    let node = &setup.node;
    let mut keys = Vec::new();
    for i in 0..7 {
        keys.push(format!("photos/{i:02}.jpg"));
    }
    keys.push("photos/2026/x.jpg".into());
    keys.push("photos/2027/y.jpg".into());
    keys.push("readme".into());
    for key in &keys {
        let reply = call(node, Method::PUT, &format!("/files/{key}"), &[], key).await;
        assert_eq!(reply.status, 201, "{store} {key}: {}", reply.body);
    }

    // Pages of 3 across cursors, in key order, under a prefix.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        assert!(page < 10, "{store}: listing never completed");
        let path = match &cursor {
            Some(c) => format!("/files?prefix=photos/&limit=3&cursor={c}"),
            None => "/files?prefix=photos/&limit=3".into(),
        };
        let listing = node.get(HOST, &path).await.json();
        for object in listing["objects"].as_array().expect("objects") {
            seen.push(object["key"].as_str().expect("key").to_string());
        }
        if listing["truncated"] == Value::Bool(false) {
            break;
        }
        cursor = Some(
            listing["cursor"]
                .as_str()
                .expect("a truncated listing has a cursor")
                .to_string(),
        );
    }
    let mut expected: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with("photos/"))
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(seen, expected, "{store}");

    // The delimiter groups "directories".
    let grouped = node
        .get(HOST, "/files?prefix=photos/&delimiter=/")
        .await
        .json();
    let direct = strings(&grouped["objects"], "key");
    assert_eq!(direct.len(), 7, "{store}: {grouped}");
    assert!(direct.iter().all(|k| !k["photos/".len()..].contains('/')));
    assert_eq!(
        grouped["prefixes"],
        serde_json::json!(["photos/2026/", "photos/2027/"]),
        "{store}"
    );

    let top = node.get(HOST, "/files?delimiter=/").await.json();
    assert_eq!(top["prefixes"], serde_json::json!(["photos/"]), "{store}");
    assert_eq!(top["objects"][0]["key"], "readme", "{store}");

    let refused = node.get(HOST, "/files?limit=1001").await;
    assert_eq!(refused.status, 400, "{store}");
}

/// 100 MiB of deterministic, incompressible-enough bytes.
fn big_object() -> Bytes {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(100 << 20);
    while out.len() < 100 << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    Bytes::from(out)
}

async fn streams_100_mib_through_16_mib(store: &str) {
    let setup = start(store, "16MiB").await;
    let node = &setup.node;
    let object = big_object();
    let (status, _, body) = node
        .send_bytes(Method::PUT, HOST, "/files/big.bin", &[], object.clone())
        .await;
    assert_eq!(status, 201, "{store}: {}", String::from_utf8_lossy(&body));
    let info: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(info["size"], 100 << 20);

    let (status, headers, body) = node
        .send_bytes(Method::GET, HOST, "/files/big.bin", &[], Bytes::new())
        .await;
    assert_eq!(status, 200, "{store}");
    assert_eq!(
        headers.get("content-length").map(|v| v.as_bytes()),
        Some(&b"104857600"[..])
    );
    assert_eq!(body.len(), object.len(), "{store}");
    assert_eq!(
        Sha256::digest(&body),
        Sha256::digest(&object),
        "{store}: the bytes differ"
    );

    // A range deep inside the object.
    let start = 77 << 20;
    let range = format!("bytes={start}-{}", start + 999);
    let (status, _, part) = node
        .send_bytes(
            Method::GET,
            HOST,
            "/files/big.bin",
            &[("range", &range)],
            Bytes::new(),
        )
        .await;
    assert_eq!(status, 206);
    assert_eq!(part, object.slice(start..start + 1000));
}

#[tokio::test]
async fn file_store_operations() {
    operations_work("{}").await;
}

#[tokio::test]
async fn memory_store_operations() {
    operations_work("\"memory://\"").await;
}

#[tokio::test]
async fn s3_store_operations() {
    operations_work("s3").await;
}

#[tokio::test]
async fn file_store_listing() {
    listing_pages_and_groups("{}").await;
}

#[tokio::test]
async fn memory_store_listing() {
    listing_pages_and_groups("\"memory://\"").await;
}

#[tokio::test]
async fn s3_store_listing() {
    listing_pages_and_groups("s3").await;
}

#[tokio::test]
async fn file_store_streams_100_mib_through_a_16_mib_guest() {
    streams_100_mib_through_16_mib("{}").await;
}

#[tokio::test]
async fn s3_store_streams_100_mib_through_a_16_mib_guest() {
    streams_100_mib_through_16_mib("s3").await;
}

#[tokio::test]
async fn s3_objects_land_under_the_configured_prefix() {
    let setup = start("s3", "64MiB").await;
    let reply = call(&setup.node, Method::PUT, "/files/hello.txt", &[], "hi").await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let s3 = setup._s3.as_ref().expect("s3 server");
    let stored = s3.root.path().join("outpost-test/tenant-a/hello.txt");
    assert_eq!(
        std::fs::read_to_string(&stored).expect("the object on the S3 server's disk"),
        "hi"
    );
}

/// Bytes in the files under `dir`, all the way down.
fn bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => bytes_under(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tokio::test]
async fn an_upload_cut_by_sigkill_is_never_visible_and_the_rest_survive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blobs = dir.path().join("data/blobs/files/FILES");
    let extra = "blob = { FILES = {} }";
    let (config, addr) = write_config(dir.path(), &tenant("files", "blob-files", &[HOST], extra));
    let node = Node::start_with(dir, &config, addr).await;
    let whole = call(&node, Method::PUT, "/files/whole.txt", &[], "all of it").await;
    assert_eq!(whole.status, 201, "{}", whole.body);

    // Half of a 16 MiB upload, then the node dies while it is writing it.
    const LENGTH: usize = 16 << 20;
    let mut upload = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head =
        format!("PUT /files/torn.bin HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {LENGTH}\r\n\r\n");
    upload.write_all(head.as_bytes()).await.expect("head");
    let before = bytes_under(&blobs);
    upload
        .write_all(&vec![b't'; LENGTH / 2])
        .await
        .expect("half the body");
    let started = std::time::Instant::now();
    while bytes_under(&blobs) < before + (1 << 20) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the node never started writing the upload"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let dir = node.stop(); // SIGKILL
    drop(upload);

    let node = Node::start_with(dir, &config, addr).await;
    let torn = call(&node, Method::GET, "/files/torn.bin", &[], "").await;
    assert_eq!(
        torn.status,
        404,
        "a partial object is visible: {} bytes",
        torn.body.len()
    );
    let kept = call(&node, Method::GET, "/files/whole.txt", &[], "").await;
    assert_eq!((kept.status, kept.body.as_str()), (200, "all of it"));
    let listing: serde_json::Value =
        serde_json::from_str(&call(&node, Method::GET, "/files", &[], "").await.body)
            .expect("listing json");
    assert_eq!(
        strings(&listing["objects"], "key"),
        ["whole.txt"],
        "{listing}"
    );
    // The same key takes a whole upload after the crash.
    let again = call(&node, Method::PUT, "/files/torn.bin", &[], "whole now").await;
    assert_eq!(again.status, 201, "{}", again.body);
    let read = call(&node, Method::GET, "/files/torn.bin", &[], "").await;
    assert_eq!(read.body, "whole now");
}
