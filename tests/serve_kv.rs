//! KV through the real binary and `examples/kv-counter`: every operation, its limits and
//! errors, TTL expiry and list pagination.

mod support;

use std::time::Duration;

use http::Method;
use serde_json::Value;
use support::{Node, strings, tenant};

const HOST: &str = "kv.test";

async fn counter_node() -> Node {
    Node::start(&tenant(
        "counter",
        "kv-counter",
        &[HOST],
        "kv = [\"COUNTS\"]",
    ))
    .await
}

#[tokio::test]
async fn counter_increments_and_values_round_trip() {
    let node = counter_node().await;
    for expected in 1..=3 {
        let reply = node.get(HOST, "/").await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, &*expected.to_string())
        );
    }

    let put = node
        .call(
            Method::PUT,
            HOST,
            "/put?key=greeting&metadata=%7B%22lang%22%3A%22en%22%7D",
            "hello kv",
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let got = node.get(HOST, "/get?key=greeting").await;
    assert_eq!((got.status, got.body.as_str()), (200, "hello kv"));

    let entry = node.get(HOST, "/entry?key=greeting").await.json();
    assert_eq!(entry["value"], "hello kv");
    assert_eq!(entry["metadata"], r#"{"lang":"en"}"#);
    assert_eq!(entry["expiration"], Value::Null);
    assert_eq!(entry["version"], put.json()["version"]);

    let missing = node.get(HOST, "/get?key=nobody").await;
    assert_eq!(missing.status, 404);

    let deleted = node
        .call(Method::DELETE, HOST, "/delete?key=greeting", "")
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(node.get(HOST, "/get?key=greeting").await.status, 404);
    // Deleting what is absent is not an error.
    assert_eq!(
        node.call(Method::DELETE, HOST, "/delete?key=greeting", "")
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn increment_and_compare_and_swap() {
    let node = counter_node().await;
    let add = |delta: i64| format!("/incr?key=hits&delta={delta}");
    assert_eq!(node.call(Method::POST, HOST, &add(5), "").await.body, "5");
    assert_eq!(node.call(Method::POST, HOST, &add(-2), "").await.body, "3");
    // The counter is an ordinary value too.
    assert_eq!(node.get(HOST, "/get?key=hits").await.body, "3");

    // Incrementing text that is not a number is refused, and the value is kept.
    node.call(Method::PUT, HOST, "/put?key=word", "abc").await;
    let refused = node.call(Method::POST, HOST, "/incr?key=word", "").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(node.get(HOST, "/get?key=word").await.body, "abc");

    // Create-if-absent: no version means "only if the key does not exist".
    let created = node
        .call(Method::POST, HOST, "/cas?key=lock", "owner-a")
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let version = created.json()["version"].as_u64().expect("a version");
    let lost = node
        .call(Method::POST, HOST, "/cas?key=lock", "owner-b")
        .await;
    assert_eq!(lost.status, 409, "{}", lost.body);
    assert_eq!(lost.json()["current"].as_u64(), Some(version));

    // Swapping on the current version wins once; the old version then conflicts.
    let swapped = node
        .call(
            Method::POST,
            HOST,
            &format!("/cas?key=lock&version={version}"),
            "owner-c",
        )
        .await;
    assert_eq!(swapped.status, 200, "{}", swapped.body);
    let new_version = swapped.json()["version"].as_u64().expect("a version");
    assert_ne!(new_version, version);
    let stale = node
        .call(
            Method::POST,
            HOST,
            &format!("/cas?key=lock&version={version}"),
            "owner-d",
        )
        .await;
    assert_eq!(stale.status, 409);
    assert_eq!(node.get(HOST, "/get?key=lock").await.body, "owner-c");
}

#[tokio::test]
async fn limits_are_refused_with_the_limit_named() {
    let node = counter_node().await;
    let long_key = "k".repeat(513);
    let reply = node.get(HOST, &format!("/get?key={long_key}")).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.body.contains("513 bytes") && reply.body.contains("512"),
        "{}",
        reply.body
    );
    // 512 bytes is still fine.
    let key = "k".repeat(512);
    let fine = node
        .call(Method::PUT, HOST, &format!("/put?key={key}"), "v")
        .await;
    assert_eq!(fine.status, 200, "{}", fine.body);

    let metadata = "m".repeat(1025);
    let reply = node
        .call(
            Method::PUT,
            HOST,
            &format!("/put?key=a&metadata={metadata}"),
            "v",
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.body.contains("metadata is limited to 1024 bytes"),
        "{}",
        reply.body
    );

    let value = "v".repeat(25 * 1024 * 1024 + 1);
    let reply = node.call(Method::PUT, HOST, "/put?key=big", &value).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.body.contains("values are limited to"),
        "{}",
        reply.body
    );
    assert_eq!(node.get(HOST, "/get?key=big").await.status, 404);

    let reply = node.get(HOST, "/list?limit=1001").await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("1 to 1000"), "{}", reply.body);
    let reply = node.get(HOST, "/list?cursor=not-a-cursor").await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("is not a cursor"), "{}", reply.body);
    let reply = node.call(Method::PUT, HOST, "/put?key=a&ttl=0", "v").await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("at least 1 second"), "{}", reply.body);
}

#[tokio::test]
async fn expired_keys_are_never_returned() {
    let node = counter_node().await;
    let reply = node
        .get(HOST, "/ttl?key=session:short&value=soon-gone&ttl=1")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    node.get(HOST, "/ttl?key=session:long&value=stays&ttl=3600")
        .await;

    let entry = node.get(HOST, "/entry?key=session:long").await.json();
    let expiration = entry["expiration"].as_u64().expect("an expiration");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        (now + 3590..=now + 3610).contains(&expiration),
        "{expiration} vs {now}"
    );
    let listed = node.get(HOST, "/list?prefix=session:").await.json();
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(2), "{listed}");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(node.get(HOST, "/get?key=session:short").await.status, 404);
    let listed = node.get(HOST, "/list?prefix=session:").await.json();
    let names = strings(&listed["keys"], "name");
    assert_eq!(names, ["session:long"]);
    assert_eq!(listed["keys"][0]["expiration"].as_u64(), Some(expiration));

    // An expired counter starts again from zero.
    node.call(Method::POST, HOST, "/incr?key=window&delta=7&ttl=1", "")
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        node.call(Method::POST, HOST, "/incr?key=window", "")
            .await
            .body,
        "1"
    );
}

#[tokio::test]
async fn list_pages_through_keys_in_order() {
    let node = counter_node().await;
    let mut expected = Vec::new();
    for i in 0..25 {
        let key = format!("user:{i:03}");
        let reply = node
            .call(
                Method::PUT,
                HOST,
                &format!("/put?key={key}&metadata=m{i}"),
                "x",
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        expected.push(key);
    }
    node.call(Method::PUT, HOST, "/put?key=other", "x").await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/list?prefix=user:&limit=10&cursor={c}"),
            None => "/list?prefix=user:&limit=10".to_string(),
        };
        let page = node.get(HOST, &path).await.json();
        pages += 1;
        for key in page["keys"].as_array().expect("keys") {
            let name = key["name"].as_str().expect("name").to_string();
            let index: usize = name["user:".len()..].parse().expect("index");
            assert_eq!(key["metadata"], format!("m{index}"));
            seen.push(name);
        }
        if page["list_complete"] == Value::Bool(true) {
            assert_eq!(page["cursor"], Value::Null);
            break;
        }
        cursor = Some(page["cursor"].as_str().expect("a cursor").to_string());
        assert!(pages < 10, "list never completed");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);
}

/// A binding on the memory backend: the same operations, a store of its own beside the
/// sled one of the same tenant, and nothing left after a restart.
#[tokio::test]
async fn a_memory_binding_serves_kv_and_is_gone_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let memory = support::tenant(
        "scratch",
        "kv-counter",
        &["scratch.test"],
        "kv = { COUNTS = \"memory\" }",
    );
    let durable = support::tenant(
        "durable",
        "kv-counter",
        &["durable.test"],
        "kv = [\"COUNTS\"]",
    );
    let (config, addr) = support::write_config(dir.path(), &format!("{memory}\n{durable}"));
    let node = Node::start_with(dir, &config, addr).await;
    for expected in 1..=3 {
        let reply = node.get("scratch.test", "/").await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, &*expected.to_string())
        );
    }
    assert_eq!(
        node.get("durable.test", "/").await.body,
        "1",
        "sled is another store"
    );
    let put = node
        .call(Method::PUT, "scratch.test", "/put?key=k", "v")
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let listed = node.get("scratch.test", "/list?prefix=").await.json();
    assert_eq!(strings(&listed["keys"], "name"), ["counter", "k"]);

    let dir = node.stop();
    let node = Node::start_with(dir, &config, addr).await;
    assert_eq!(node.get("scratch.test", "/get?key=k").await.status, 404);
    assert_eq!(
        node.get("scratch.test", "/").await.body,
        "1",
        "memory starts empty"
    );
    assert_eq!(
        node.get("durable.test", "/").await.body,
        "2",
        "sled kept its count"
    );
}
