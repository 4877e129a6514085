//! `examples/rate-limit` through the real binary: per-client fixed windows on KV, with the
//! client address the node derives behind a trusted proxy.

mod support;

use bytes::Bytes;
use http::Method;
use support::{Node, tenant, write_config};

#[tokio::test]
async fn each_client_gets_its_limit_then_429_with_retry_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A day-long window: the test cannot straddle a window boundary in practice.
    let (config, addr) = write_config(
        dir.path(),
        &tenant(
            "limited",
            "rate-limit",
            &["/"],
            "kv = [\"LIMITS\"]\nvars = { LIMIT = 3, WINDOW = 86400 }",
        ),
    );
    // The test client plays a load balancer: the node believes its x-forwarded-for.
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    std::fs::write(&config, text).expect("config");
    let node = Node::start_with(dir, &config, addr).await;
    let from = |client: &'static str| {
        let node = &node;
        async move {
            node.send(
                Method::GET,
                "api.test",
                "/",
                &[("x-forwarded-for", client)],
                Bytes::new(),
            )
            .await
        }
    };

    for remaining in ["2", "1", "0"] {
        let reply = from("198.51.100.1").await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "allowed\n"));
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(reply.header("x-ratelimit-remaining"), Some(remaining));
    }
    let limited = from("198.51.100.1").await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let retry: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("retry-after in seconds");
    assert!((1..=86400).contains(&retry), "{retry}");
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        limited.header("x-ratelimit-reset"),
        Some(retry.to_string().as_str())
    );

    // Another client has its own window.
    let other = from("198.51.100.2").await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("x-ratelimit-remaining"), Some("2"));
}
