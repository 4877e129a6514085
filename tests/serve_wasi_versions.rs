//! WASI 0.3 guests run beside WASI 0.2 ones; `reuse` is opt-in and keeps per-request limits.

mod support;

use support::{Node, tenant};

#[tokio::test]
async fn a_wasi_0_3_component_serves_with_a_streamed_body() {
    let node = Node::start(&tenant("p3", "hello_p3", &["/"], "")).await;
    let reply = node.get("x.test", "/hi?x=1").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        "hello from wasi 0.3 at /hi?x=1 (request 1 of this instance)"
    );
    let logs = node.logs();
    assert!(
        logs.contains("\"world\":\"P3\""),
        "loaded as a WASI 0.3 component:\n{logs}"
    );
}

#[tokio::test]
async fn instances_are_fresh_per_request_by_default() {
    let node = Node::start(&format!(
        "{}{}",
        tenant("p3", "hello_p3", &["p3.test"], ""),
        tenant("p2", "limits", &["p2.test"], "")
    ))
    .await;
    for _ in 0..3 {
        assert!(
            node.get("p3.test", "/")
                .await
                .body
                .ends_with("(request 1 of this instance)")
        );
        assert_eq!(node.get("p2.test", "/count").await.body, "1");
    }
}

/// The instance's request number from a reply ending in "…request N of this instance…"
/// (hello-p3) or that is just the number (limits `/count`).
fn request_number(body: &str) -> u64 {
    let tail = body.split("request ").last().unwrap_or(body);
    tail.split_whitespace()
        .next()
        .unwrap_or(tail)
        .trim_end_matches(')')
        .parse()
        .unwrap_or_else(|_| panic!("no request number in {body:?}"))
}

/// Reuse is opportunistic (a request that arrives while the instance is still finishing
/// the last one gets a new instance), so ask until an instance is seen serving a second
/// request.
async fn reused_within(node: &Node, host: &str, path: &str, attempts: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    for _ in 0..attempts {
        let reply = node.get(host, path).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        seen.push(request_number(&reply.body));
        if seen.last() > Some(&1) {
            break;
        }
    }
    seen
}

#[tokio::test]
async fn reuse_serves_several_requests_from_one_instance() {
    let node = Node::start(&format!(
        "{}{}",
        tenant("p3", "hello_p3", &["p3.test"], "reuse = true"),
        tenant("p2", "limits", &["p2.test"], "reuse = true")
    ))
    .await;
    for host in ["p2.test", "p3.test"] {
        let path = if host == "p2.test" { "/count" } else { "/" };
        let seen = reused_within(&node, host, path, 20).await;
        assert!(
            seen.iter().any(|n| *n >= 2),
            "{host}: an instance served a second request: {seen:?}"
        );
    }
}

#[tokio::test]
async fn reuse_refills_fuel_for_every_request() {
    // One `/work?n=1000000` costs about 18.5M fuel (measured: 1.6M rounds just fit 30M),
    // so a 30M budget fits one request but not two. A reused instance that answers a
    // second `/work` therefore started that request with a full tank.
    let rounds = 1_000_000;
    let node = Node::start(&tenant(
        "w",
        "limits",
        &["/"],
        "limits = { fuel = 30_000_000 }\nreuse = true",
    ))
    .await;
    let seen = reused_within(&node, "x.test", &format!("/work?n={rounds}"), 20).await;
    assert!(
        seen.iter().any(|n| *n >= 2),
        "a reused instance did a second full request: {seen:?}"
    );
    // And the budget is real: ten times the work does not fit.
    let over = node
        .get("x.test", &format!("/work?n={}", rounds * 10))
        .await;
    assert_eq!(
        (over.status, over.body.as_str()),
        (503, "cpu limit exceeded")
    );
}
