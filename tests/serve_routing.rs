//! Routing, request ids, vars and plain wasi:http components through the real binary.

mod support;

use support::{Node, tenant};

async fn three_tenants() -> Node {
    Node::start(&format!(
        "{}{}{}{}",
        tenant("hello", "hello", &["hello.test", "/"], ""),
        tenant(
            "echo",
            "echo",
            &["echo.test", "/echo"],
            "vars = { GREETING = \"hi from config\" }"
        ),
        tenant("wild", "echo", &["*.wild.test"], ""),
        tenant("plain", "plain-wasi", &["example.test/plain"], ""),
    ))
    .await
}

#[tokio::test]
async fn host_routes_pick_the_tenant() {
    let node = three_tenants().await;
    let hello = node.get("hello.test", "/anything").await;
    assert_eq!(
        (hello.status, hello.body.as_str()),
        (200, "hello from outpost")
    );

    let echo = node.get("echo.test", "/x").await;
    assert_eq!(echo.status, 200);
    let json: serde_json::Value = serde_json::from_str(&echo.body).unwrap();
    assert_eq!(json["path"], "/x");

    let wild = node.get("api.wild.test", "/w").await;
    let json: serde_json::Value = serde_json::from_str(&wild.body).unwrap();
    assert_eq!(json["path"], "/w");
}

#[tokio::test]
async fn path_routes_keep_the_full_path_and_query() {
    let node = three_tenants().await;
    let reply = node
        .get("unknown.test", "/echo/orders/7?expand=items")
        .await;
    assert_eq!(reply.status, 200);
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        json["path"], "/echo/orders/7",
        "routes must not strip their prefix"
    );
    assert_eq!(json["query"], "expand=items");
    assert_eq!(json["method"], "GET");
    assert_eq!(
        json["greeting"], "hi from config",
        "vars reach the guest as env vars"
    );

    // `/echo` is a whole segment: `/echoes` falls through to the catch-all tenant.
    let other = node.get("unknown.test", "/echoes").await;
    assert_eq!(other.body, "hello from outpost");
}

#[tokio::test]
async fn no_route_is_404_naming_no_internals() {
    let node = Node::start(&tenant("only", "hello", &["only.test"], "")).await;
    let reply = node.get("elsewhere.test", "/").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body, "no route");
    assert!(reply.header("x-request-id").is_some());
}

#[tokio::test]
async fn request_id_is_kept_or_minted_and_reaches_guest_and_logs() {
    let node = three_tenants().await;
    let sent = node
        .send(
            http::Method::GET,
            "echo.test",
            "/",
            &[("x-request-id", "client-id-42")],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(sent.header("x-request-id"), Some("client-id-42"));
    let json: serde_json::Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(json["headers"]["x-request-id"], "client-id-42");

    let minted = node.get("echo.test", "/").await;
    let id = minted.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert!(
        node.logs().contains(&id),
        "the access log names the request id"
    );
}

#[tokio::test]
async fn post_body_reaches_the_guest() {
    let node = three_tenants().await;
    let reply = node
        .send(
            http::Method::POST,
            "echo.test",
            "/",
            &[],
            bytes::Bytes::from(vec![7u8; 100_000]),
        )
        .await;
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(json["body_length"], 100_000);
    assert_eq!(json["method"], "POST");
}

#[tokio::test]
async fn a_plain_wasi_http_component_runs_unchanged() {
    let node = three_tenants().await;
    let reply = node.get("example.test", "/plain/x").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "plain wasi:http component at /plain/x\n");
}

#[tokio::test]
async fn bodies_stream_through_a_guest_with_a_small_memory_cap() {
    let node = Node::start(&tenant(
        "echo",
        "echo",
        &["/"],
        "limits = { memory = \"16MiB\" }",
    ))
    .await;
    let upload: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();

    let counted = node
        .send(
            http::Method::POST,
            "x.test",
            "/",
            &[],
            bytes::Bytes::from(upload.clone()),
        )
        .await;
    assert_eq!(counted.status, 200, "{}", counted.body);
    let json: serde_json::Value = serde_json::from_str(&counted.body).unwrap();
    assert_eq!(
        json["body_length"],
        64 << 20,
        "64 MiB counted chunk by chunk under a 16 MiB cap"
    );

    let mirrored = node
        .send_raw(
            http::Method::POST,
            "x.test",
            "/?mirror",
            bytes::Bytes::from(upload.clone()),
        )
        .await;
    assert_eq!(mirrored.len(), upload.len());
    assert!(mirrored == upload, "64 MiB streamed back byte for byte");
}
