//! Durable Objects through the real binary and `examples/counter-object`: one event at a
//! time, state kept across events, storage that survives SIGKILL and eviction, limits
//! that reset one object only, and ids that stay in their class and tenant.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use http::Method;
use support::{Launched, Node, tenant};

const HOST: &str = "objects.test";
const TOKEN: &str = "objects-admin-token-4c1e";

/// The counter tenant `name` on `host`, objects idle out after `idle`.
fn counters(name: &str, host: &str, idle: &str, limits: &str) -> String {
    tenant(
        name,
        "counter-object",
        &[host],
        &format!(
            "durable_objects = {{ COUNTERS = {{ class = \"Counter\", idle_timeout = \"{idle}\" }} }}\n{limits}"
        ),
    )
}

/// A node serving `tenants`, its admin API on (bearer [`TOKEN`]).
async fn launch(tenants: &str) -> Launched {
    support::launch_with_admin(TOKEN, 100, tenants).await
}

/// SIGKILLs `node` and starts it again on the same data and port.
async fn restart(node: Node, config: &Path) -> Node {
    let addr = node.addr;
    let dir = node.stop();
    Node::start_with_env(dir, config, addr, &[("OUTPOST_ADMIN_TOKEN", TOKEN)]).await
}

/// How many objects the node holds in memory, from its metrics.
async fn live_objects(admin: SocketAddr) -> f64 {
    support::metric(admin, TOKEN, "outpost_objects_live").await
}

#[tokio::test]
async fn concurrent_increments_are_exact_and_survive_sigkill_and_eviction() {
    let Launched {
        node,
        admin,
        config,
    } = launch(&counters("counters", HOST, "3s", "")).await;

    // 16 clients, 500 increments of one counter between them.
    let node = std::sync::Arc::new(node);
    let mut clients = Vec::new();
    for client in 0..16 {
        let node = node.clone();
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in (client..500).step_by(16) {
                let reply = node.call(Method::POST, HOST, "/counter/hits", "").await;
                assert_eq!(reply.status, 200, "{}", reply.body);
                seen.push(reply.body.parse::<u64>().expect("a count"));
            }
            seen
        }));
    }
    let mut counts = BTreeSet::new();
    for client in clients {
        for count in client.await.expect("client") {
            assert!(counts.insert(count), "count {count} answered twice");
        }
    }
    assert_eq!(
        counts,
        (1..=500).collect(),
        "every increment saw its own count"
    );
    assert_eq!(node.get(HOST, "/counter/hits").await.body, "500");
    // One instance ran all of them: its in-memory event count says so.
    assert_eq!(node.get(HOST, "/counter/hits/events").await.body, "502");
    assert_eq!(live_objects(admin).await, 1.0);

    // SIGKILL with the object live: every acknowledged increment is on disk.
    let node = std::sync::Arc::into_inner(node).expect("clients done");
    let node = restart(node, &config).await;
    assert_eq!(node.get(HOST, "/counter/hits").await.body, "500");
    assert_eq!(node.get(HOST, "/counter/hits/events").await.body, "2");

    // Idle past its timeout, the object leaves memory; the next event rebuilds it.
    support::wait_for_metric(admin, TOKEN, "outpost_objects_live", 0.0).await;
    let reply = node.call(Method::POST, HOST, "/counter/hits", "").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "501"));
    assert_eq!(node.get(HOST, "/counter/hits/events").await.body, "2");
}

#[tokio::test]
async fn a_looping_or_hoarding_object_fails_only_its_own_event() {
    let limits = "limits = { cpu = \"100ms\", memory = \"32MiB\", timeout = \"5s\" }";
    let tenants = format!(
        "{}{}",
        counters("counters", HOST, "30s", limits),
        tenant("hello", "hello", &["hello.test"], "")
    );
    let Launched { node, .. } = launch(&tenants).await;
    for _ in 0..3 {
        node.call(Method::POST, HOST, "/counter/victim", "").await;
    }
    node.call(Method::POST, HOST, "/counter/bystander", "")
        .await;

    let spin = node
        .call(Method::POST, HOST, "/counter/victim/spin", "")
        .await;
    assert_eq!(spin.status, 503, "{}", spin.body);
    assert_eq!(spin.header("outpost-object-failure"), Some("cpu"));
    // The object starts again from storage; the one beside it never stopped.
    assert_eq!(node.get(HOST, "/counter/victim").await.body, "3");
    assert_eq!(node.get(HOST, "/counter/victim/events").await.body, "2");
    assert_eq!(node.get(HOST, "/counter/bystander/events").await.body, "2");

    let grow = node
        .call(Method::POST, HOST, "/counter/victim/grow", "")
        .await;
    assert_eq!(grow.status, 503, "{}", grow.body);
    assert_eq!(grow.header("outpost-object-failure"), Some("memory"));
    assert_eq!(node.get(HOST, "/counter/victim").await.body, "3");
    assert_eq!(node.get(HOST, "/counter/bystander").await.body, "1");
    assert_eq!(node.get("hello.test", "/").await.status, 200);
    assert!(
        node.logs().contains("object stopped: cpu limit exceeded"),
        "the limit is logged:\n{}",
        node.logs()
    );
}

#[tokio::test]
async fn objects_are_per_tenant_and_ids_stay_in_their_namespace() {
    let tenants = format!(
        "{}{}",
        counters("alpha", "alpha.test", "30s", ""),
        counters("beta", "beta.test", "30s", "")
    );
    let Launched { node, .. } = launch(&tenants).await;

    node.call(Method::POST, "alpha.test", "/counter/same", "")
        .await;
    node.call(Method::POST, "alpha.test", "/counter/same", "")
        .await;
    let beta = node
        .call(Method::POST, "beta.test", "/counter/same", "")
        .await;
    assert_eq!(
        beta.body, "1",
        "the same name in another tenant is another object"
    );

    let id = node.get("alpha.test", "/counter/same/id").await.body;
    assert_eq!(id.len(), 64, "{id}");
    let back = node.get("alpha.test", &format!("/id?string={id}")).await;
    assert_eq!((back.status, back.body), (200, format!("Counter {id}")));

    let foreign = node.get("beta.test", &format!("/id?string={id}")).await;
    assert_eq!(foreign.status, 400, "{}", foreign.body);
    assert!(
        foreign.body.contains("another"),
        "says why: {}",
        foreign.body
    );
    let malformed = node.get("alpha.test", "/id?string=not-an-id").await;
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    // Refusing them lost nothing.
    assert_eq!(node.get("alpha.test", "/counter/same").await.body, "2");
}

/// Waits (up to 60 s) until `path` answers `expected`.
async fn wait_for_body(node: &Node, path: &str, expected: &str) {
    let started = Instant::now();
    loop {
        let reply = node.get(HOST, path).await;
        if reply.body == expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{path} answers {:?} after 60 s, waiting for {expected:?}\n{}",
            reply.body,
            node.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_alarm_set_before_a_sigkill_fires_after_the_restart_and_failures_are_retried() {
    let Launched { node, config, .. } = launch(&counters("counters", HOST, "30s", "")).await;

    // Set 1.5 s ahead, then killed before it is due.
    let set = node
        .call(Method::POST, HOST, "/counter/late/alarm?in_ms=1500", "")
        .await;
    assert_eq!((set.status, set.body.as_str()), (200, "set"));
    let pending = node.get(HOST, "/counter/late/alarm").await.body;
    assert!(
        pending.parse::<u64>().is_ok(),
        "the alarm is set: {pending}"
    );
    let node = restart(node, &config).await;
    wait_for_body(&node, "/counter/late/alarms", "1 0").await;
    assert_eq!(node.get(HOST, "/counter/late/alarm").await.body, "none");

    // Its first run fails: it runs again after the backoff, knowing it is a retry.
    node.call(
        Method::POST,
        HOST,
        "/counter/flaky/alarm?in_ms=0&fail=1",
        "",
    )
    .await;
    wait_for_body(&node, "/counter/flaky/alarms", "1 1").await;
    assert!(
        node.logs()
            .contains("alarm failed with status 500; retried in"),
        "the failure is logged:\n{}",
        node.logs()
    );
}

/// Alarms due together run a few at a time (`ALARMS_AT_ONCE`, 32): with 96 due in the same
/// millisecond, each taking 300 ms, and room for only 40 live objects, each runs once and
/// none fails (all at once, most would find the tenant at its live-objects limit: 503,
/// then a retry).
#[tokio::test]
async fn a_burst_of_alarms_due_together_runs_each_once() {
    const ALARMS: usize = 96;
    let limits = "limits = { live_objects = 40 }";
    let Launched { node, .. } = launch(&counters("counters", HOST, "30s", limits)).await;
    let due = Instant::now() + Duration::from_secs(4);
    for i in 0..ALARMS {
        let in_ms = due.saturating_duration_since(Instant::now()).as_millis();
        assert!(in_ms > 0, "setting the alarms took longer than 4 s");
        let set = node
            .call(
                Method::POST,
                HOST,
                &format!("/counter/burst{i}/alarm?in_ms={in_ms}&hold_ms=300"),
                "",
            )
            .await;
        assert_eq!((set.status, set.body.as_str()), (200, "set"), "alarm {i}");
    }
    for i in 0..ALARMS {
        // "1 0": ran once, on its first attempt.
        wait_for_body(&node, &format!("/counter/burst{i}/alarms"), "1 0").await;
    }
    assert!(
        !node.logs().contains("alarm failed"),
        "no alarm of the burst failed:\n{}",
        node.logs()
    );
}

#[tokio::test]
async fn the_rate_limiter_allows_exactly_its_limit_per_key_under_concurrency() {
    let limiter = tenant(
        "limiter",
        "rate-limiter-object",
        &["limit.test"],
        "durable_objects = { LIMITERS = { class = \"RateLimiter\" } }",
    );
    let Launched { node, .. } = launch(&limiter).await;
    let node = std::sync::Arc::new(node);

    // 8 clients, 120 requests for one key between them: exactly 100 pass.
    let mut clients = Vec::new();
    for _ in 0..8 {
        let node = node.clone();
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..15 {
                statuses.push(node.get("limit.test", "/?key=hot").await.status);
            }
            statuses
        }));
    }
    let mut allowed = 0;
    for client in clients {
        for status in client.await.expect("client") {
            match status {
                200 => allowed += 1,
                429 => {}
                other => panic!("status {other}"),
            }
        }
    }
    assert_eq!(allowed, 100, "the limit is exact");

    let over = node.get("limit.test", "/?key=hot").await;
    assert_eq!(over.status, 429, "{}", over.body);
    let retry: u64 = over
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(over.header("x-ratelimit-limit"), Some("100"));
    assert_eq!(over.header("x-ratelimit-remaining"), Some("0"));

    // Another key is another object, with its whole allowance.
    let other = node.get("limit.test", "/?key=cold").await;
    assert_eq!(other.status, 200, "{}", other.body);
    assert_eq!(other.header("x-ratelimit-remaining"), Some("99"));
}

#[tokio::test]
async fn a_deploy_replaces_live_objects_and_keeps_their_storage() {
    let Launched { node, admin, .. } = launch(&counters("counters", HOST, "30s", "")).await;
    for _ in 0..2 {
        node.call(Method::POST, HOST, "/counter/kept", "").await;
    }
    assert_eq!(node.get(HOST, "/counter/kept/events").await.body, "3");

    let wasm = std::fs::read(support::example("counter-object")).expect("wasm");
    let deployed = support::admin_call(
        admin,
        Method::PUT,
        "/tenants/counters/component",
        Some(TOKEN),
        wasm,
    )
    .await;
    assert_eq!(deployed.status, 200, "{}", deployed.body);
    // The new version's first event builds the object anew, from its storage.
    assert_eq!(node.get(HOST, "/counter/kept/events").await.body, "1");
    assert_eq!(node.get(HOST, "/counter/kept").await.body, "2");
    assert!(
        node.logs()
            .contains("object replaced by a new version of its tenant"),
        "{}",
        node.logs()
    );
}

#[tokio::test]
async fn a_tenant_at_its_live_objects_limit_retires_the_least_recently_used() {
    let Launched { node, admin, .. } = launch(&counters(
        "counters",
        HOST,
        "60s",
        "limits = { live_objects = 2 }",
    ))
    .await;
    for name in ["first", "second", "first"] {
        node.call(Method::POST, HOST, &format!("/counter/{name}"), "")
            .await;
    }
    assert_eq!(live_objects(admin).await, 2.0);

    // A third makes room: `second` is the least recently used.
    node.call(Method::POST, HOST, "/counter/third", "").await;
    support::wait_for_metric(admin, TOKEN, "outpost_objects_live", 2.0).await;
    assert_eq!(node.get(HOST, "/counter/first/events").await.body, "3");
    // `second` starts again from storage (and in turn retires `third`).
    assert_eq!(node.get(HOST, "/counter/second").await.body, "1");
    assert_eq!(node.get(HOST, "/counter/second/events").await.body, "2");
    support::wait_for_metric(admin, TOKEN, "outpost_objects_live", 2.0).await;
}

#[tokio::test]
async fn object_storage_lists_deletes_runs_sql_and_transactions() {
    let Launched { node, .. } = launch(&counters("counters", HOST, "30s", "")).await;
    let tour = node
        .call(Method::POST, HOST, "/counter/tour/storage", "")
        .await;
    assert_eq!(tour.status, 200, "{}", tour.body);
    assert_eq!(
        tour.json(),
        serde_json::json!({
            "prefix": ["a1", "a2", "a3"],
            "range": ["a2", "a3", "b1"],
            "last_two": ["b2", "b1"],
            "deleted": 1,
            "many": ["a2", "b1"],
            "sql": [1],
            "committed": true,
            "rolled_back": true,
            "after_delete_all": 0,
        })
    );

    // Transactions go through the transaction calls: a guest's own BEGIN is refused.
    let open = node
        .call(Method::POST, HOST, "/counter/notes/open-transaction", "")
        .await;
    assert_eq!(open.status, 200, "{}", open.body);
    assert!(open.body.starts_with("refused: "), "{}", open.body);
    assert_eq!(node.get(HOST, "/counter/notes/notes").await.body, "0");
}
