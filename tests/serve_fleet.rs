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
    if !failed.is_empty() {
        let logs = [&a, &b, &c].map(|n| n.logs()).join("\n");
        let reasons: Vec<&str> = logs.lines().filter(|l| l.contains("kv:")).take(5).collect();
        panic!(
            "{} increments failed: {:?}; the nodes logged: {reasons:#?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
    }
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

    // Deploys go through the hub again.
    let wasm = std::fs::read(support::example("hello")).expect("hello wasm");
    let deployed = admin_call(
        admin,
        Method::PUT,
        "/tenants/counter/component",
        Some(TOKEN),
        wasm,
    )
    .await;
    assert_eq!(deployed.status, 200, "{}", deployed.body);
    let reply = node.get(HOST, "/").await;
    assert!(reply.body.contains("hello from outpost"), "{}", reply.body);
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

/// A fleet node with an admin API: `app` (hello, from its own config) on `app.test`.
struct FleetNode {
    node: Node,
    admin: std::net::SocketAddr,
    config: std::path::PathBuf,
    addr: std::net::SocketAddr,
}

impl FleetNode {
    async fn start(cluster: &NatsCluster, id: &str, first: usize) -> FleetNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let (addr, admin) = (support::free_port(), support::free_port());
        let config = dir.path().join("outpost.toml");
        let mut urls = cluster.urls();
        urls.rotate_left(first);
        let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
        std::fs::write(
            &config,
            format!(
                "[node]\nid = {id:?}\ndata_dir = \"data\"\nmax_instances = 50\n\n\
                 [server]\nlisten = \"{addr}\"\nadmin = {{ listen = \"{admin}\" }}\n\n\
                 [fleet]\nnats = [{}]\nname = \"e2e\"\nreplicas = {}\n\n{}",
                urls.join(", "),
                urls.len().min(3),
                tenant("app", "hello", &["app.test"], "")
            ),
        )
        .expect("config");
        let node =
            Node::start_with_env(dir, &config, addr, &[("OUTPOST_ADMIN_TOKEN", TOKEN)]).await;
        let fleet_node = FleetNode {
            node,
            admin,
            config,
            addr,
        };
        fleet_node.wait_ready().await;
        fleet_node
    }

    async fn wait_ready(&self) {
        let readyz =
            || async { admin_call(self.admin, Method::GET, "/readyz", None, Vec::new()).await };
        let ready = eventually_ready(&readyz).await;
        assert_eq!(ready.status, 200, "{}", ready.body);
    }

    /// SIGKILLs the node and starts it again on the same data dir.
    async fn restart(self) -> FleetNode {
        let FleetNode {
            node,
            admin,
            config,
            addr,
        } = self;
        let dir = node.stop();
        let node =
            Node::start_with_env(dir, &config, addr, &[("OUTPOST_ADMIN_TOKEN", TOKEN)]).await;
        let restarted = FleetNode {
            node,
            admin,
            config,
            addr,
        };
        restarted.wait_ready().await;
        restarted
    }

    async fn deploy(&self, tenant: &str, example: &str) -> Reply {
        let wasm = std::fs::read(support::example(example)).expect("example wasm");
        admin_call(
            self.admin,
            Method::PUT,
            &format!("/tenants/{tenant}/component"),
            Some(TOKEN),
            wasm,
        )
        .await
    }

    /// Polls `host` `/` until its body satisfies `done` (up to 20 s).
    async fn serves(&self, host: &str, done: impl Fn(&Reply) -> bool) -> Reply {
        let started = Instant::now();
        loop {
            let reply = self.node.get(host, "/").await;
            if done(&reply) || started.elapsed() > Duration::from_secs(20) {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `outpost <args>`: (exit code, output). The node config a fleet command reads wants
/// its admin token, as `outpost serve` does.
fn outpost_cli(args: &[&str]) -> (i32, String) {
    support::run_outpost_with_env(args, &[("OUTPOST_ADMIN_TOKEN", TOKEN)])
}

/// Defines `tenant` in the fleet with `table` and the echo component, through the hub.
fn define_in_fleet(node: &FleetNode, tenant: &str, table: &str) -> (i32, String) {
    let path = node.config.with_file_name(format!("{tenant}.toml"));
    std::fs::write(&path, table).expect("table");
    let echo = support::example("echo");
    outpost_cli(&[
        "deploy",
        "--fleet",
        node.config.to_str().expect("path"),
        "--define",
        path.to_str().expect("path"),
        "--tenant",
        tenant,
        echo.to_str().expect("path"),
    ])
}

fn is_hello(reply: &Reply) -> bool {
    reply.status == 200 && reply.body.contains("hello from outpost")
}

fn is_echo(reply: &Reply) -> bool {
    reply.status == 200 && reply.body.contains("\"method\"")
}

#[tokio::test]
async fn a_deploy_through_one_node_is_served_by_every_node_and_so_is_a_rollback() {
    let cluster = NatsCluster::start(3).await;
    let a = FleetNode::start(&cluster, "a", 0).await;
    let b = FleetNode::start(&cluster, "b", 1).await;
    let c = FleetNode::start(&cluster, "c", 2).await;
    for node in [&a, &b, &c] {
        let reply = node.serves("app.test", is_hello).await;
        assert!(is_hello(&reply), "{}", reply.body);
    }

    let deployed = a.deploy("app", "echo").await;
    assert_eq!(deployed.status, 200, "{}", deployed.body);
    // A answers once it serves the new version itself.
    assert!(is_echo(&a.node.get("app.test", "/").await));
    for node in [&b, &c] {
        let reply = node.serves("app.test", is_echo).await;
        assert!(is_echo(&reply), "{}\n{}", reply.body, node.node.logs());
    }

    let rolled = admin_call(
        b.admin,
        Method::POST,
        "/tenants/app/rollback",
        Some(TOKEN),
        Vec::new(),
    )
    .await;
    assert_eq!(rolled.status, 200, "{}", rolled.body);
    for node in [&a, &b, &c] {
        let reply = node.serves("app.test", is_hello).await;
        assert!(is_hello(&reply), "{}", reply.body);
    }

    // A tenant defined in the fleet, not in any node's config, appears on all three.
    let (code, output) = define_in_fleet(&a, "blog", "name = \"blog\"\nroutes = [\"blog.test\"]\n");
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("3 of 3 nodes serve it"), "{output}");
    for node in [&a, &b, &c] {
        let reply = node.serves("blog.test", is_echo).await;
        assert!(is_echo(&reply), "{}\n{}", reply.body, node.node.logs());
    }

    // Changed in the fleet (a second route), it changes on all three.
    let (code, output) = define_in_fleet(
        &a,
        "blog",
        "name = \"blog\"\nroutes = [\"blog.test\", \"news.test\"]\n",
    );
    assert_eq!(code, 0, "{output}");
    for node in [&a, &b, &c] {
        let reply = node.serves("news.test", is_echo).await;
        assert!(is_echo(&reply), "{}\n{}", reply.body, node.node.logs());
    }

    // `outpost fleet status` names every node and the tenants' versions.
    let (code, output) = support::run_outpost_with_env(
        &[
            "fleet",
            "status",
            "--config",
            a.config.to_str().expect("path"),
        ],
        &[("OUTPOST_ADMIN_TOKEN", TOKEN)],
    );
    assert_eq!(code, 0, "{output}");
    for name in ["a ", "b ", "c ", "app ", "blog "] {
        assert!(
            output.lines().any(|l| l.starts_with(name)),
            "{name:?} missing:\n{output}"
        );
    }

    // The fleet's status shows every node serving the same versions.
    let status = admin_call(c.admin, Method::GET, "/fleet", Some(TOKEN), Vec::new()).await;
    assert_eq!(status.status, 200, "{}", status.body);
    let status = status.json();
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{status}");
    for node in nodes {
        assert_eq!(node["lagging"], serde_json::json!([]), "{status}");
        assert_eq!(node["gone"], false, "{status}");
    }

    // Removed from the fleet, the tenant is gone from all three.
    let (code, output) = outpost_cli(&[
        "fleet",
        "remove",
        "--config",
        a.config.to_str().expect("path"),
        "--tenant",
        "blog",
    ]);
    assert_eq!(code, 0, "{output}");
    for node in [&a, &b, &c] {
        let reply = node.serves("blog.test", |r| r.status == 404).await;
        assert_eq!(reply.status, 404, "{}\n{}", reply.body, node.node.logs());
    }

    // A garbled manifest is refused: the tenant keeps serving and says why.
    let hub = outpost_fleet::Hub::connect(
        &outpost_config::FleetConfig {
            nats: cluster.urls(),
            name: "e2e".into(),
            credentials: None,
            token_env: None,
            replicas: 3,
        },
        "test",
    )
    .await
    .expect("hub");
    assert!(hub.wait_connected(Duration::from_secs(10)).await);
    let error = refuse_manifest(
        &hub,
        &b,
        b"{\"tenant\": \"app\", \"versions\": 7}".to_vec(),
        "not manifest JSON",
    )
    .await;
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.contains("not manifest JSON")),
        "{error}"
    );
    assert!(is_hello(&b.node.get("app.test", "/").await));

    // So is one naming a component the fleet's store does not have.
    let missing = format!(
        "{{\"tenant\": \"app\", \"versions\": [{{\"hash\": \"{}\", \"deployed_at\": 1, \"by\": \"x\", \"size\": 1}}]}}",
        "f".repeat(64)
    );
    let error = refuse_manifest(&hub, &b, missing.into_bytes(), "object store").await;
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.contains("is not in the fleet's object store")),
        "{error}"
    );
    assert!(is_hello(&b.node.get("app.test", "/").await));
}

/// Writes `manifest` as `app`'s manifest straight to the hub and waits (up to 10 s) for
/// `node` to report a `last_error` for `app` containing `expected`; that error.
async fn refuse_manifest(
    hub: &outpost_fleet::Hub,
    node: &FleetNode,
    manifest: Vec<u8>,
    expected: &str,
) -> serde_json::Value {
    outpost_fleet::Deploys::new(hub)
        .put_raw_manifest("app", manifest)
        .await
        .expect("raw manifest");
    let started = Instant::now();
    loop {
        let reply = admin_call(
            node.admin,
            Method::GET,
            "/tenants/app",
            Some(TOKEN),
            Vec::new(),
        )
        .await;
        let error = reply.json()["last_error"].clone();
        if error.as_str().is_some_and(|e| e.contains(expected))
            || started.elapsed() > Duration::from_secs(10)
        {
            return error;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_node_killed_while_the_fleet_deploys_catches_up_when_it_restarts() {
    let cluster = NatsCluster::start(1).await;
    let a = FleetNode::start(&cluster, "a", 0).await;
    let b = FleetNode::start(&cluster, "b", 0).await;
    let b_config = b.config.clone();
    let FleetNode {
        node, admin, addr, ..
    } = b;
    let b_dir = node.stop();
    let deployed = a.deploy("app", "echo").await;
    assert_eq!(deployed.status, 200, "{}", deployed.body);

    let node =
        Node::start_with_env(b_dir, &b_config, addr, &[("OUTPOST_ADMIN_TOKEN", TOKEN)]).await;
    let b = FleetNode {
        node,
        admin,
        config: b_config,
        addr,
    };
    b.wait_ready().await;
    let reply = b.serves("app.test", is_echo).await;
    assert!(is_echo(&reply), "{}\n{}", reply.body, b.node.logs());

    // Killed again and restarted with the hub gone: it serves what it last knew.
    drop(cluster);
    let b = b.restart().await;
    let reply = b.node.get("app.test", "/").await;
    assert!(is_echo(&reply), "{}\n{}", reply.body, b.node.logs());
}

#[tokio::test]
async fn a_hub_that_wants_a_token_gets_it_from_the_environment() {
    let cluster = NatsCluster::start_with_token(1, Some("fleet-token-0123456789")).await;
    let with_token = |config: String| {
        config.replacen(
            "name = \"e2e\"\n",
            "name = \"e2e\"\ntoken_env = \"OUTPOST_FLEET_TOKEN\"\n",
            1,
        )
    };
    let start = |token: &'static str| {
        let config = with_token(fleet_node_config(&cluster, 0, "1h"));
        async move {
            let dir = tempfile::tempdir().expect("temp dir");
            let (path, addr) = support::write_config(dir.path(), &config);
            Node::start_with_env(dir, &path, addr, &[("OUTPOST_FLEET_TOKEN", token)]).await
        }
    };
    let right = start("fleet-token-0123456789").await;
    let put = right.call(Method::PUT, HOST, "/put?key=k", "v").await;
    assert_eq!(put.status, 200, "{}\n{}", put.body, right.logs());

    // A wrong token: the node serves, but cannot reach the hub's data.
    let wrong = start("not-the-token").await;
    let put = wrong.call(Method::PUT, HOST, "/put?key=k", "v").await;
    assert_eq!(put.status, 503, "{}", put.body);
    assert!(
        wrong
            .wait_for_log(|l| l.contains("the fleet's hub refused this node"))
            .await,
        "{}",
        wrong.logs()
    );

    // The variable unset: the node refuses to start, naming the key.
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, _) = support::write_config(
        dir.path(),
        &with_token(fleet_node_config(&cluster, 0, "1h")),
    );
    let (code, output) = support::run_outpost(&["serve", "--config", path.to_str().expect("path")]);
    assert_ne!(code, 0, "{output}");
    assert!(
        output.contains("[fleet] token_env") && output.contains("OUTPOST_FLEET_TOKEN"),
        "{output}"
    );
}

#[tokio::test]
async fn a_purge_through_one_node_purges_every_nodes_cache() {
    let cluster = NatsCluster::start(1).await;
    let origin = support::origin::Origin::start_with(
        "api",
        support::origin::Behaviour {
            status: Some(200),
            ..Default::default()
        },
    )
    .await;
    let shop = |node: &str, first: usize| {
        let mut urls = cluster.urls();
        urls.rotate_left(first);
        let config = format!(
            "[fleet]\nnats = [{:?}]\nname = \"e2e\"\nreplicas = 1\n\n\
             [[tenant]]\nname = \"shop\"\ncomponent = {:?}\nroutes = [\"shop.test\"]\n\
             vars = {{ ORIGIN = {:?}, CACHE_CONTROL = \"public, max-age=3600\" }}\n\
             outbound = [{:?}]\ncache = {{ enabled = true }}\n",
            urls[0],
            support::example("cached-proxy").display().to_string(),
            origin.url(),
            origin.url(),
        );
        (node.to_string(), config)
    };
    let mut nodes = Vec::new();
    for (id, tenants) in [shop("a", 0), shop("b", 0)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (addr, admin) = (support::free_port(), support::free_port());
        let path = dir.path().join("outpost.toml");
        std::fs::write(
            &path,
            format!(
                "[node]\nid = {id:?}\ndata_dir = \"data\"\n\n[server]\nlisten = \"{addr}\"\n\
                 admin = {{ listen = \"{admin}\" }}\n\n{tenants}"
            ),
        )
        .expect("config");
        let node = Node::start_with_env(dir, &path, addr, &[("OUTPOST_ADMIN_TOKEN", TOKEN)]).await;
        nodes.push((node, admin));
    }
    let cache_status = |reply: &Reply| {
        reply
            .header("x-outpost-cache")
            .unwrap_or("(none)")
            .to_string()
    };
    for (node, _) in &nodes {
        node.get("shop.test", "/page").await;
        let again = node.get("shop.test", "/page").await;
        assert_eq!(cache_status(&again), "HIT", "{}", again.body);
    }
    let purged = admin_call(
        nodes[0].1,
        Method::POST,
        "/tenants/shop/purge",
        Some(TOKEN),
        br#"{"everything": true}"#.to_vec(),
    )
    .await;
    assert_eq!(purged.status, 200, "{}", purged.body);
    assert_eq!(purged.json()["fleet"], true, "{}", purged.body);
    // A answered once it had purged; B purges as the purge arrives.
    assert_eq!(
        cache_status(&nodes[0].0.get("shop.test", "/page").await),
        "MISS"
    );
    let started = Instant::now();
    let b = loop {
        let reply = nodes[1].0.get("shop.test", "/page").await;
        if cache_status(&reply) == "MISS" || started.elapsed() > Duration::from_secs(10) {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(cache_status(&b), "MISS", "{}", nodes[1].0.logs());
}
