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

#[tokio::test]
async fn reuse_serves_several_requests_from_one_instance() {
    let node = Node::start(&format!(
        "{}{}",
        tenant("p3", "hello_p3", &["p3.test"], "reuse = true"),
        tenant("p2", "limits", &["p2.test"], "reuse = true")
    ))
    .await;
    let counts: Vec<String> = {
        let mut counts = Vec::new();
        for _ in 0..3 {
            counts.push(node.get("p2.test", "/count").await.body);
        }
        counts
    };
    assert_eq!(counts, ["1", "2", "3"], "one instance served all three");
    assert!(
        node.get("p3.test", "/")
            .await
            .body
            .ends_with("(request 1 of this instance)")
    );
    assert!(
        node.get("p3.test", "/")
            .await
            .body
            .ends_with("(request 2 of this instance)")
    );
}

#[tokio::test]
async fn reuse_refills_fuel_for_every_request() {
    // One `/work?n=1000000` costs about 18.5M fuel (measured: 1.6M rounds just fit 30M),
    // so a 30M budget fits one request but not two: a reused instance can serve four in a
    // row only if every request starts with a full tank.
    let rounds = 1_000_000;
    let probe = Node::start(&tenant(
        "w",
        "limits",
        &["/"],
        "limits = { fuel = 30_000_000 }",
    ))
    .await;
    let probe_reply = probe.get("x.test", &format!("/work?n={rounds}")).await;
    assert_eq!(
        probe_reply.status, 200,
        "one request fits in 30M fuel: {}",
        probe_reply.body
    );
    drop(probe);
    let tight = Node::start(&tenant(
        "w",
        "limits",
        &["/"],
        "limits = { fuel = 30_000_000 }\nreuse = true",
    ))
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            tight
                .get("x.test", &format!("/work?n={rounds}"))
                .await
                .status,
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200]);
    assert_eq!(
        tight.get("x.test", "/count").await.body,
        "5",
        "all on one instance"
    );
    // And the budget is real: ten times the work does not fit.
    let over = tight
        .get("x.test", &format!("/work?n={}", rounds * 10))
        .await;
    assert_eq!(
        (over.status, over.body.as_str()),
        (503, "cpu limit exceeded")
    );
}
