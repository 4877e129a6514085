//! A fleet: real outpost nodes sharing global KV through a real NATS JetStream cluster
//! (`nats-server` processes on loopback, `sync_interval: always`).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use http::Method;
use outpost_fleet::testing::NatsCluster;
use support::{Node, Reply, admin_call, tenant};

/// The kv-counter example with its `COUNTS` binding global; the hub's servers listed
/// starting at `first`, so the nodes spread over the cluster.
fn fleet_node_config(cluster: &NatsCluster, first: usize, cache_ttl: &str) -> String {
    let mut urls = cluster.urls();
    urls.rotate_left(first);
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    let replicas = urls.len().min(3);
    format!(
        "[fleet]\nnats = [{}]\nname = \"e2e\"\nreplicas = {replicas}\n\n{}",
        urls.join(", "),
        tenant(
            "counter",
            "kv-counter",
            &["counter.test"],
            &format!(
                "kv = {{ COUNTS = {{ backend = \"global\", cache_ttl = {cache_ttl:?} }} }}\nlimits = {{ concurrency = 400 }}"
            ),
        )
    )
}

const HOST: &str = "counter.test";

/// Polls `path` on `node` until `done` holds for its reply (up to 10 s); the last reply.
async fn eventually(node: &Node, path: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    let started = Instant::now();
    loop {
        let reply = node.get(HOST, path).await;
        if done(&reply) || started.elapsed() > Duration::from_secs(10) {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn three_nodes_share_global_kv_through_a_three_server_hub() {
    let cluster = NatsCluster::start(3).await;
    let a = Node::start(&fleet_node_config(&cluster, 0, "1h")).await;
    let b = Node::start(&fleet_node_config(&cluster, 1, "1h")).await;
    let c = Node::start(&fleet_node_config(&cluster, 2, "1h")).await;

    // C reads the key first (caching that it is absent); A's write still shows on C,
    // through the watch: the cache TTL is an hour.
    assert_eq!(c.get(HOST, "/get?key=user").await.status, 404);
    let put = a.call(Method::PUT, HOST, "/put?key=user", "ada").await;
    assert_eq!(put.status, 200, "{}\n{}", put.body, a.logs());
    let read = eventually(&c, "/get?key=user", |r| r.status == 200).await;
    assert_eq!(
        (read.status, read.body.as_str()),
        (200, "ada"),
        "{}",
        c.logs()
    );

    // 3 nodes × 200 concurrent increments of one counter end at exactly 600.
    let increments = [&a, &b, &c].into_iter().flat_map(|node| {
        (0..200).map(move |_| node.call(Method::POST, HOST, "/incr?key=hits", ""))
    });
    let replies = futures::future::join_all(increments).await;
    let failed: Vec<String> = replies
        .iter()
        .filter(|r| r.status != 200)
        .map(|r| format!("{} {}", r.status, r.body))
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let counts: BTreeSet<i64> = replies
        .iter()
        .map(|r| r.body.trim().parse().expect("a count"))
        .collect();
    assert_eq!(
        counts,
        (1..=600).collect(),
        "every increment saw its own count"
    );
    for node in [&a, &b, &c] {
        let total = eventually(node, "/get?key=hits", |r| r.body == "600").await;
        assert_eq!(total.body, "600");
    }

    // A compare-and-swap race between the nodes, all from the same version: one winner.
    let version = a.get(HOST, "/entry?key=user").await.json()["version"]
        .as_u64()
        .expect("version");
    let path = format!("/cas?key=user&version={version}");
    let (ra, rb, rc) = tokio::join!(
        a.call(Method::POST, HOST, &path, "from-a"),
        b.call(Method::POST, HOST, &path, "from-b"),
        c.call(Method::POST, HOST, &path, "from-c"),
    );
    let statuses = [ra.status, rb.status, rc.status];
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}: {} {} {}",
        ra.body,
        rb.body,
        rc.body
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        2,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_nats_server_killed_mid_writes_loses_no_acknowledged_write() {
    let mut cluster = NatsCluster::start(3).await;
    let writer = Node::start(&fleet_node_config(&cluster, 0, "1h")).await;
    let mut acknowledged = Vec::new();
    let mut failed = Vec::new();
    let mut killed_at = None;
    // 40 writes, one server of three SIGKILLed (the writer's first), then writes until
    // 60 more are acknowledged: the node reconnects and the streams elect new leaders.
    for i in 0.. {
        if i == 40 {
            cluster.kill(0);
            killed_at = Some(Instant::now());
        }
        let reply = writer
            .call(
                Method::PUT,
                HOST,
                &format!("/put?key=k{i}"),
                &format!("v{i}"),
            )
            .await;
        if reply.status == 200 {
            acknowledged.push(i);
        } else if i < 40 {
            panic!(
                "write {i} failed before any server was lost: {}",
                reply.body
            );
        } else {
            failed.push(reply.body);
        }
        let after_kill = acknowledged.iter().filter(|i| **i >= 40).count();
        if after_kill >= 60 {
            break;
        }
        if let Some(at) = killed_at {
            assert!(
                at.elapsed() < Duration::from_secs(30),
                "writes did not go on after the kill: {after_kill} acknowledged; failures: {:?}",
                &failed[failed.len().saturating_sub(3)..]
            );
            if reply.status != 200 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // A node that never cached anything reads every acknowledged write from the hub.
    let reader = Node::start(&fleet_node_config(&cluster, 1, "1h")).await;
    for i in &acknowledged {
        let read = eventually(&reader, &format!("/get?key=k{i}"), |r| r.status == 200).await;
        assert_eq!(
            read.body,
            format!("v{i}"),
            "acknowledged write k{i} is missing"
        );
    }
}

#[tokio::test]
async fn with_the_whole_hub_down_nodes_serve_and_global_writes_fail_clearly() {
    let mut cluster = NatsCluster::start(1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (addr, admin) = (support::free_port(), support::free_port());
    let config = dir.path().join("outpost.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nid = \"fleet\"\ndata_dir = \"data\"\nmax_instances = 50\n\n\
             [server]\nlisten = \"{addr}\"\nadmin = {{ listen = \"{admin}\" }}\n\n{}",
            fleet_node_config(&cluster, 0, "1s")
        ),
    )
    .expect("config");
    let node = Node::start_with_env(dir, &config, addr, &[("OUTPOST_ADMIN_TOKEN", TOKEN)]).await;
    let readyz = || async { admin_call(admin, Method::GET, "/readyz", None, Vec::new()).await };
    let ready = eventually_ready(&readyz).await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));

    let put = node.call(Method::PUT, HOST, "/put?key=known", "yes").await;
    assert_eq!(put.status, 200, "{}", put.body);
    cluster.kill_all();
    let started = Instant::now();
    let degraded = loop {
        let ready = readyz().await;
        if ready.body.starts_with("degraded") || started.elapsed() > Duration::from_secs(10) {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(degraded.status, 200, "a degraded node still serves");
    assert!(
        degraded.body.contains("hub is unreachable"),
        "{}",
        degraded.body
    );

    // Past its 1 s cache TTL the node's copy still serves; a write fails, saying why.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let read = node.get(HOST, "/get?key=known").await;
    assert_eq!((read.status, read.body.as_str()), (200, "yes"));
    let write = node.call(Method::PUT, HOST, "/put?key=new", "no").await;
    assert_eq!(write.status, 503, "{}\n{}", write.body, node.logs());
    // The client sees only the status; the guest was told why, and the log keeps it.
    assert!(
        node.logs()
            .lines()
            .any(|l| l.contains("hub is unreachable; the write was not made")),
        "{}",
        node.logs()
    );

    cluster.restart_all().await;
    let started = Instant::now();
    let write = loop {
        let write = node.call(Method::PUT, HOST, "/put?key=new", "yes").await;
        if write.status == 200 || started.elapsed() > Duration::from_secs(15) {
            break write;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(write.status, 200, "{}", write.body);
    assert_eq!(node.get(HOST, "/get?key=new").await.body, "yes");
    let ready = readyz().await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
}

const TOKEN: &str = "fleet-test-admin-token";

/// `/readyz` once the tenants are loaded (it answers 503 while they compile).
async fn eventually_ready<F: std::future::Future<Output = Reply>>(
    readyz: &impl Fn() -> F,
) -> Reply {
    let started = Instant::now();
    loop {
        let reply = readyz().await;
        if reply.status != 503 || started.elapsed() > Duration::from_secs(60) {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
