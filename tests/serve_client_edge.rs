//! `examples/rate-limit` and `examples/geo` through the real binary: what a guest can do
//! with the client address and country the node derives (behind a trusted proxy).

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

#[tokio::test]
async fn geo_personalises_by_the_country_the_node_derives() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, addr) = write_config(dir.path(), &tenant("geo", "geo", &["/"], ""));
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\ngeo = { \"198.51.100.0/24\" = \"DE\", \"198.51.100.128/25\" = \"NL\" }\n",
    );
    std::fs::write(&config, text).expect("config");
    let node = Node::start_with(dir, &config, addr).await;
    let from = |client: &'static str, claimed: Option<&'static str>| {
        let node = &node;
        async move {
            let mut headers = vec![("x-forwarded-for", client)];
            if let Some(country) = claimed {
                headers.push(("x-outpost-country", country));
            }
            node.send(Method::GET, "www.test", "/", &headers, Bytes::new())
                .await
        }
    };
    let de = from("198.51.100.7", None).await;
    assert_eq!(de.body, "Hallo! Prices in EUR. (country: DE)\n");
    assert_eq!(de.header("content-language"), Some("de"));
    let nl = from("198.51.100.200", None).await;
    assert_eq!(
        nl.body, "Hoi! Prices in EUR. (country: NL)\n",
        "the longer prefix wins"
    );
    let unknown = from("203.0.113.9", Some("FR")).await;
    assert_eq!(
        unknown.body, "Hello! Prices in USD. (country: unknown)\n",
        "a client cannot claim a country"
    );
}
