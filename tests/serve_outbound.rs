//! Outbound HTTP through the real binary and `examples/router`, against real origin
//! servers started by the test: forwarding, and every way a destination is refused.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::{Node, tenant};

/// What an origin received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    headers: http::HeaderMap,
    body: Bytes,
}

/// A real HTTP origin on an ephemeral port that records every request and answers
/// `201 <name> saw <method> <path>` with an `x-origin` header.
struct Origin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Origin {
    async fn start(name: &'static str) -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            let record = record.clone();
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body.collect().await?.to_bytes();
                                let path = parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.as_str().to_string())
                                    .unwrap_or_default();
                                let answer = format!("{name} saw {} {path}", parts.method);
                                record.lock().expect("lock").push(Seen {
                                    method: parts.method.to_string(),
                                    path_and_query: path,
                                    headers: parts.headers,
                                    body,
                                });
                                Ok::<_, hyper::Error>(
                                    http::Response::builder()
                                        .status(201)
                                        .header("x-origin", name)
                                        .body(Full::new(Bytes::from(answer)))
                                        .expect("response"),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn router(routes: &str, outbound: &[String]) -> String {
    let outbound: Vec<String> = outbound.iter().map(|o| format!("{o:?}")).collect();
    tenant(
        "router",
        "router",
        &["/"],
        &format!(
            "vars = {{ ROUTES = {routes:?} }}\noutbound = [{}]",
            outbound.join(", ")
        ),
    )
}

#[tokio::test]
async fn the_router_forwards_method_path_headers_and_body_to_the_right_origin() {
    let orders = Origin::start("orders").await;
    let users = Origin::start("users").await;
    let (orders_url, users_url) = (
        format!("http://{}", orders.addr),
        format!("http://{}", users.addr),
    );
    let node = Node::start(&router(
        &format!("/api/v1/orders={orders_url} /api/v1/users={users_url}"),
        &[orders_url.clone(), users_url.clone()],
    ))
    .await;

    let reply = node
        .send(
            Method::POST,
            "shop.test",
            "/api/v1/orders/7?expand=items",
            &[
                ("x-client", "test-suite"),
                ("content-type", "application/json"),
                ("x-forwarded-for", "6.6.6.6"),
                ("traceparent", TRACEPARENT),
            ],
            Bytes::from_static(br#"{"qty":2}"#),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body, "orders saw POST /api/v1/orders/7?expand=items");
    assert_eq!(reply.header("x-origin"), Some("orders"));
    let seen = orders.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path_and_query, "/api/v1/orders/7?expand=items");
    assert_eq!(seen[0].body, Bytes::from_static(br#"{"qty":2}"#));
    assert_eq!(
        seen[0].headers.get("x-client").map(|v| v.as_bytes()),
        Some(&b"test-suite"[..])
    );
    let header = |name: &str| {
        seen[0]
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // The node is not behind a trusted proxy here, so the client's own claim is dropped.
    assert_eq!(header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(header("x-outpost-client-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(header("x-outpost-node").as_deref(), Some("test"));
    assert_eq!(
        header("traceparent").as_deref(),
        Some(TRACEPARENT),
        "a valid trace context is kept"
    );
    assert_eq!(
        seen[0].headers.get("host").map(|v| v.as_bytes()),
        Some(orders.addr.to_string().as_bytes()),
        "the origin sees its own host, not the client's"
    );

    let reply = node
        .send(
            Method::GET,
            "shop.test",
            "/api/v1/users",
            &[("traceparent", "not-a-trace")],
            Bytes::new(),
        )
        .await;
    assert_eq!(reply.body, "users saw GET /api/v1/users");
    let seen = users.seen();
    assert_eq!(seen.len(), 1);
    let minted = seen[0]
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    let minted = minted.expect("a traceparent");
    let lengths: Vec<usize> = minted.split('-').map(str::len).collect();
    assert_eq!(
        lengths,
        [2, 32, 16, 2],
        "an invalid trace context is replaced by a new one: {minted}"
    );

    let reply = node.get("shop.test", "/api/v1/ordersx").await;
    assert_eq!(reply.status, 404);
    assert_eq!(orders.seen().len(), 1, "no route, no request");
}

/// Asserts the router's request was refused and never reached `origin`.
async fn assert_refused(node: &Node, origin: &Origin, expected: &str) {
    let reply = node.get("shop.test", "/api/x").await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(reply.body.contains(expected), "{}", reply.body);
    assert!(
        origin.seen().is_empty(),
        "the origin got {:?}",
        origin.seen()
    );
}

#[tokio::test]
async fn an_unlisted_origin_is_refused() {
    let listed = Origin::start("listed").await;
    let unlisted = Origin::start("unlisted").await;
    let node = Node::start(&router(
        &format!("/api=http://{}", unlisted.addr),
        &[format!("http://{}", listed.addr)],
    ))
    .await;
    assert_refused(&node, &unlisted, "HttpRequestDenied").await;
}

#[tokio::test]
async fn loopback_is_refused_when_no_origin_is_listed() {
    let origin = Origin::start("local").await;
    let node = Node::start(&router(&format!("/api=http://{}", origin.addr), &[])).await;
    assert_refused(&node, &origin, "HttpRequestDenied").await;
}

#[tokio::test]
async fn a_listed_name_that_resolves_to_a_private_address_is_refused() {
    let origin = Origin::start("local").await;
    // `localhost` is listed by name, and resolves to 127.0.0.1: refused after DNS.
    let url = format!("http://localhost:{}", origin.addr.port());
    let node = Node::start(&router(&format!("/api={url}"), std::slice::from_ref(&url))).await;
    assert_refused(&node, &origin, "DestinationIpProhibited").await;
}
