//! Outbound HTTP through the real binary and `examples/router`, against real origin
//! servers started by the test: forwarding, and every way a destination is refused.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use support::origin::{Behaviour, Origin};
use support::tls::TestCa;
use support::{Node, tenant, write_config};

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
async fn a_tls_origin_is_reached_when_the_node_trusts_its_ca_and_refused_when_not() {
    let ca = TestCa::new();
    let origin = Origin::start_with(
        "secure",
        Behaviour {
            tls: Some(ca.issue(&["127.0.0.1"]).server_config()),
            ..Behaviour::default()
        },
    )
    .await;
    let config = router(&format!("/api={}", origin.url()), &[origin.url()]);

    // A private CA is trusted the way rustls-native-certs documents: SSL_CERT_FILE.
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    let (config_file, addr) = write_config(dir.path(), &config);
    let ca_file = ca_file.display().to_string();
    let node = Node::start_with_env(dir, &config_file, addr, &[("SSL_CERT_FILE", &ca_file)]).await;
    let reply = node.get("shop.test", "/api/x?y=1").await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body, "secure saw GET /api/x?y=1");
    drop(node);

    let seen_before = origin.seen().len();
    let untrusting = Node::start(&config).await;
    let reply = untrusting.get("shop.test", "/api/x").await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(reply.body.contains("TlsCertificateError"), "{}", reply.body);
    assert_eq!(
        origin.seen().len(),
        seen_before,
        "no request over an untrusted connection"
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

#[tokio::test]
async fn fragments_are_fetched_concurrently_cached_and_fall_back() {
    const DELAY: Duration = Duration::from_millis(400);
    let origin = Origin::start_with(
        "cms",
        Behaviour {
            delay: DELAY,
            failing: &["/broken"],
            ..Behaviour::default()
        },
    )
    .await;
    let url = format!("http://{}", origin.addr);
    let fragments = ["a,60", "b,60", "c,60", "d,1", "broken,60"]
        .iter()
        .map(|f| format!("{f},{url}/{}", f.split(',').next().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(" ");
    let node = Node::start(&tenant(
        "page",
        "fragments",
        &["/"],
        &format!("kv = [\"CACHE\"]\noutbound = [{url:?}]\nvars = {{ FRAGMENTS = {fragments:?} }}"),
    ))
    .await;

    let page = node.get("www.test", "/").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.header("x-fragments"),
        Some("a=origin,b=origin,c=origin,d=origin,broken=fallback"),
        "the node logged:\n{}",
        node.logs()
    );
    assert!(page.body.contains("cms saw GET /a"), "{}", page.body);
    assert!(
        page.body.contains("<!-- fragment broken unavailable -->"),
        "{}",
        page.body
    );
    // By the origin's own clock, all five requests arrived before the first could have
    // been answered: they were in flight together, not one after another.
    let seen = origin.seen();
    assert_eq!(seen.len(), 5);
    let first = seen.iter().map(|s| s.at).min().expect("arrivals");
    let last = seen.iter().map(|s| s.at).max().expect("arrivals");
    assert!(
        last - first < DELAY,
        "the fragments were fetched one after another: arrivals spread over {:?}",
        last - first
    );

    let cached = node.get("www.test", "/").await;
    assert_eq!(
        cached.header("x-fragments"),
        Some("a=cache,b=cache,c=cache,d=cache,broken=fallback")
    );
    assert_eq!(
        origin.seen().len(),
        6,
        "only the failing fragment is fetched again; the node logged:\n{}",
        node.logs()
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = node.get("www.test", "/").await;
    assert_eq!(
        later.header("x-fragments"),
        Some("a=cache,b=cache,c=cache,d=origin,broken=fallback"),
        "d's 1 s TTL has run out; the node logged:\n{}",
        node.logs()
    );
}

#[tokio::test]
async fn ab_test_assigns_by_weight_sticks_by_cookie_and_routes_to_the_variant() {
    let origin = Origin::start("app").await;
    let url = format!("http://{}", origin.addr);
    let node = Node::start(&tenant(
        "ab",
        "ab-test",
        &["/"],
        &format!(
            "outbound = [{url:?}]\nvars = {{ VARIANTS = \"control=80={url}/v1 new=20={url}/v2\" }}"
        ),
    ))
    .await;

    const CLIENTS: usize = 200;
    let mut control = 0;
    for _ in 0..CLIENTS {
        let reply = node.get("shop.test", "/checkout?step=1").await;
        assert_eq!(
            reply.status,
            201,
            "{}; the node logged:\n{}",
            reply.body,
            node.logs()
        );
        let variant = reply.header("x-ab-variant").expect("a variant").to_string();
        let cookie = reply
            .header("set-cookie")
            .expect("a new client gets a cookie");
        assert!(
            cookie.starts_with(&format!("ab_variant={variant};")),
            "{cookie}"
        );
        let base = if variant == "control" { "/v1" } else { "/v2" };
        assert_eq!(reply.body, format!("app saw GET {base}/checkout?step=1"));
        if variant == "control" {
            control += 1;
        }
    }
    // 80% expected: 160 of 200, standard deviation 5.7. The band is over 4 deviations
    // wide each way, and far from what an even split (100) would give.
    assert!(
        (130..=185).contains(&control),
        "{control} of {CLIENTS} got control; expected about 160"
    );

    for _ in 0..20 {
        let reply = node
            .send(
                Method::GET,
                "shop.test",
                "/checkout",
                &[("cookie", "theme=dark; ab_variant=new")],
                Bytes::new(),
            )
            .await;
        assert_eq!(reply.header("x-ab-variant"), Some("new"));
        assert_eq!(
            reply.header("set-cookie"),
            None,
            "a sticky client keeps its cookie"
        );
        assert_eq!(reply.body, "app saw GET /v2/checkout");
    }

    let stale = node
        .send(
            Method::GET,
            "shop.test",
            "/",
            &[("cookie", "ab_variant=retired")],
            Bytes::new(),
        )
        .await;
    assert!(
        stale.header("set-cookie").is_some(),
        "a retired variant is reassigned"
    );
}

#[tokio::test]
async fn subrequests_and_their_response_bodies_are_capped() {
    let origin = Origin::start("cms").await;
    let url = format!("http://{}", origin.addr);
    let fragments = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("{n},60,{url}/{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let page = |limits: &str, names: &[&str]| {
        tenant(
            "page",
            "fragments",
            &["/"],
            &format!(
                "kv = [\"CACHE\"]\noutbound = [{url:?}]\nlimits = {{ {limits} }}\nvars = {{ FRAGMENTS = {:?} }}",
                fragments(names)
            ),
        )
    };

    let node = Node::start(&page("subrequests = 4", &["a", "b", "c", "d", "e", "f"])).await;
    let reply = node.get("www.test", "/").await;
    let sources = reply.header("x-fragments").expect("sources").to_string();
    assert_eq!(
        sources.matches("=origin").count(),
        4,
        "{sources}; the node logged:\n{}",
        node.logs()
    );
    assert_eq!(sources.matches("=fallback").count(), 2, "{sources}");
    assert_eq!(
        origin.seen().len(),
        4,
        "the 5th and 6th were refused before leaving"
    );
    // The guest learns why, not just that its request's stream closed.
    let logs = node.logs();
    let told = logs
        .lines()
        .filter(|l| l.contains("\"guest\"") && l.contains("at most 4 subrequests"))
        .count();
    assert_eq!(told, 2, "the node logged:\n{logs}");
    drop(node);

    // "cms saw GET /a" is 14 bytes: over a 10-byte cap, the fragment falls back.
    let node = Node::start(&page("subrequest_body = \"10B\"", &["a"])).await;
    let reply = node.get("www.test", "/").await;
    assert_eq!(
        reply.header("x-fragments"),
        Some("a=fallback"),
        "{}",
        reply.body
    );
}
