//! Running a node for months: the admin API and its token, deploys under load and
//! rollbacks (through the `outpost` CLI), config reloads, metrics, graceful shutdown,
//! and slow clients. All against the real binary.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::Method;
use support::{Node, admin_call, example, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "test-admin-token-4b1d9f0c2e";

/// A node with an admin API on `admin`, serving `tenants`, in `dir`.
struct Ops {
    node: Node,
    admin: SocketAddr,
    config: std::path::PathBuf,
    addr: SocketAddr,
}

/// The whole config file: `server_extra` lines go into `[server]`, `node_extra` into `[node]`.
fn config_text(
    addr: SocketAddr,
    admin: SocketAddr,
    node_extra: &str,
    server_extra: &str,
    tenants: &str,
) -> String {
    format!(
        "[node]\nid = \"ops\"\ndata_dir = \"data\"\nmax_instances = 100\n{node_extra}\n\n\
         [server]\nlisten = \"{addr}\"\nadmin = {{ listen = \"{admin}\" }}\n{server_extra}\n\n{tenants}"
    )
}

fn tenant(name: &str, component: &Path, route: &str) -> String {
    format!(
        "[[tenant]]\nname = {name:?}\ncomponent = {:?}\nroutes = [{route:?}]\n\n",
        component.display().to_string()
    )
}

async fn start(node_extra: &str, server_extra: &str, tenants: &str) -> Ops {
    let dir = tempfile::tempdir().expect("temp dir");
    let (addr, admin) = (free_port(), free_port());
    let config = dir.path().join("outpost.toml");
    std::fs::write(
        &config,
        config_text(addr, admin, node_extra, server_extra, tenants),
    )
    .expect("config");
    let node = Node::start_with_env(dir, &config, addr, &[("OUTPOST_ADMIN_TOKEN", TOKEN)]).await;
    Ops {
        node,
        admin,
        config,
        addr,
    }
}

impl Ops {
    async fn admin(&self, method: Method, path: &str, token: Option<&str>) -> support::Reply {
        admin_call(self.admin, method, path, token, Vec::new()).await
    }

    fn rewrite(&self, node_extra: &str, tenants: &str) {
        std::fs::write(
            &self.config,
            config_text(self.addr, self.admin, node_extra, "", tenants),
        )
        .expect("rewrite config");
    }

    /// Reloads by SIGHUP and waits for the node to say it is done.
    async fn reload(&self) {
        let before = self.reloads();
        self.node.signal("HUP");
        assert!(
            self.node.wait_for_log(|_| self.reloads() > before).await,
            "no reload logged:\n{}",
            self.node.logs()
        );
    }

    fn reloads(&self) -> usize {
        self.node
            .logs()
            .lines()
            .filter(|l| l.contains("config reloaded") || l.contains("was not reloaded"))
            .count()
    }
}

#[tokio::test]
async fn the_admin_api_needs_the_token_and_a_refused_request_changes_nothing() {
    let ops = start("", "", &tenant("app", &example("hello"), "/")).await;
    assert_eq!(ops.admin(Method::GET, "/healthz", None).await.status, 200);
    assert_eq!(ops.admin(Method::GET, "/readyz", None).await.status, 200);

    for token in [None, Some("wrong-token-of-some-length")] {
        for (method, path) in [
            (Method::GET, "/tenants"),
            (Method::GET, "/tenants/app"),
            (Method::GET, "/metrics"),
            (Method::POST, "/tenants/app/rollback"),
            (Method::POST, "/reload"),
        ] {
            let reply = ops.admin(method.clone(), path, token).await;
            assert_eq!(
                reply.status, 401,
                "{method} {path} with {token:?}: {}",
                reply.body
            );
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        }
        let echo = std::fs::read(example("echo")).expect("echo.wasm");
        let reply = admin_call(
            ops.admin,
            Method::PUT,
            "/tenants/app/component",
            token,
            echo,
        )
        .await;
        assert_eq!(reply.status, 401);
    }
    // Nothing changed: hello still serves, with its one version.
    assert_eq!(ops.node.get("x.test", "/").await.body, "hello from outpost");
    let status = ops.admin(Method::GET, "/tenants/app", Some(TOKEN)).await;
    assert_eq!(status.status, 200, "{}", status.body);
    let status = status.json();
    assert_eq!(status["name"], "app");
    assert_eq!(status["routes"][0], "/");
    assert_eq!(status["version"]["source"], "config");
    assert_eq!(status["previous"].as_array().map(Vec::len), Some(0));
    assert_eq!(status["limits"]["concurrency"], 64);
    assert_eq!(
        status["requests"]["2xx"], 1,
        "the one request above: {status}"
    );
    // The slot is given back when the guest's instance is done, which can be just after
    // the client has the whole response: wait for it rather than racing it.
    let mut in_flight = status["requests_in_flight"].clone();
    for _ in 0..250 {
        if in_flight == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        in_flight = ops
            .admin(Method::GET, "/tenants/app", Some(TOKEN))
            .await
            .json()["requests_in_flight"]
            .clone();
    }
    assert_eq!(in_flight, 0, "the finished request still holds its slot");
    assert_eq!(
        ops.admin(Method::GET, "/tenants/nope", Some(TOKEN))
            .await
            .status,
        404
    );
}

/// Runs `outpost <args>` with the admin token; (exit code, output).
fn outpost_cli(args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(args)
        .env("OUTPOST_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("run outpost");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn a_deploy_and_a_rollback_under_load_switch_versions_without_a_failed_request() {
    let ops = Arc::new(start("", "", &tenant("app", &example("hello"), "/")).await);
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (ops, stop) = (ops.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let reply = ops.node.get("x.test", "/").await;
                let kind = if reply.body == "hello from outpost" {
                    "old"
                } else if reply.body.starts_with('{') && reply.body.contains("\"method\"") {
                    "new"
                } else {
                    "other"
                };
                seen.push((reply.status, kind));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin = format!("http://{}", ops.admin);
    let echo = example("echo").display().to_string();
    let (code, output) = tokio::task::spawn_blocking({
        let (admin, echo) = (admin.clone(), echo.clone());
        move || outpost_cli(&["deploy", "--admin", &admin, "--tenant", "app", &echo])
    })
    .await
    .expect("deploy");
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("deployed"), "{output}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = ops
        .admin(Method::GET, "/tenants/app", Some(TOKEN))
        .await
        .json();
    assert_eq!(status["version"]["source"], "api");
    assert_eq!(status["previous"][0]["source"], "config");

    let (code, output) = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || outpost_cli(&["rollback", "--admin", &admin, "--tenant", "app"])
    })
    .await
    .expect("rollback");
    assert_eq!(code, 0, "{output}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for client in clients {
        let seen = client.await.expect("client");
        total += seen.len();
        assert!(
            seen.iter().all(|(status, _)| *status == 200),
            "a request failed: {seen:?}"
        );
        assert!(seen.iter().all(|(_, kind)| *kind != "other"), "{seen:?}");
        // old … new … old: each client sees at most the two switches.
        let switches = seen.windows(2).filter(|w| w[0].1 != w[1].1).count();
        assert!(switches <= 2, "versions flapped: {seen:?}");
        assert_eq!(seen.first().map(|s| s.1), Some("old"));
        assert_eq!(seen.last().map(|s| s.1), Some("old"), "the rollback took");
        assert!(
            seen.iter().any(|(_, kind)| *kind == "new"),
            "the deploy never served"
        );
    }
    assert!(total > 100, "only {total} requests under load");

    // Nothing older to go back to now, and a broken upload is refused, old version kept.
    let (code, output) = outpost_cli(&["rollback", "--admin", &admin, "--tenant", "app"]);
    assert_ne!(code, 0);
    assert!(output.contains("no earlier version"), "{output}");
    let broken = ops.node.dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm not really").expect("write");
    let (code, output) = outpost_cli(&[
        "deploy",
        "--admin",
        &admin,
        "--tenant",
        "app",
        &broken.display().to_string(),
    ]);
    assert_ne!(code, 0);
    assert!(
        output.contains("not a valid WebAssembly component"),
        "{output}"
    );
    assert_eq!(ops.node.get("x.test", "/").await.body, "hello from outpost");
}

#[tokio::test]
async fn a_deployed_version_survives_a_restart() {
    let ops = start("", "", &tenant("app", &example("hello"), "/")).await;
    let echo = std::fs::read(example("echo")).expect("echo");
    let reply = admin_call(
        ops.admin,
        Method::PUT,
        "/tenants/app/component",
        Some(TOKEN),
        echo,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (config, addr, admin) = (ops.config.clone(), ops.addr, ops.admin);
    let dir = ops.node.stop();
    let node = Node::start_with_env(dir, &config, addr, &[("OUTPOST_ADMIN_TOKEN", TOKEN)]).await;
    let reply = node.get("x.test", "/").await;
    assert!(
        reply.body.contains("\"method\""),
        "the deploy was lost: {}",
        reply.body
    );
    let reply = admin_call(
        admin,
        Method::POST,
        "/tenants/app/rollback",
        Some(TOKEN),
        Vec::new(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(node.get("x.test", "/").await.body, "hello from outpost");
}

#[tokio::test]
async fn sighup_adds_changes_and_removes_tenants_and_a_broken_component_keeps_the_old_version() {
    let (hello, echo) = (example("hello"), example("echo"));
    let ops = start(
        "",
        "",
        &format!(
            "{}{}",
            tenant("a", &hello, "a.test"),
            tenant("b", &echo, "b.test")
        ),
    )
    .await;
    assert_eq!(ops.node.get("a.test", "/").await.body, "hello from outpost");
    assert_eq!(ops.node.get("b.test", "/").await.status, 200);

    // a changes component, b goes, c comes.
    ops.rewrite(
        "",
        &format!(
            "{}{}",
            tenant("a", &echo, "a.test"),
            tenant("c", &hello, "c.test")
        ),
    );
    ops.reload().await;
    assert!(
        ops.node
            .get("a.test", "/")
            .await
            .body
            .contains("\"method\"")
    );
    assert_eq!(ops.node.get("b.test", "/").await.status, 404);
    assert_eq!(ops.node.get("c.test", "/").await.body, "hello from outpost");

    // a's new component is broken: a keeps serving echo, and the admin API says why.
    let broken = ops.node.dir.path().join("broken.wasm");
    std::fs::write(&broken, b"not wasm at all").expect("write");
    ops.rewrite(
        "",
        &format!(
            "{}{}",
            tenant("a", &broken, "a.test"),
            tenant("c", &hello, "c.test")
        ),
    );
    ops.reload().await;
    assert!(
        ops.node
            .get("a.test", "/")
            .await
            .body
            .contains("\"method\"")
    );
    let status = ops
        .admin(Method::GET, "/tenants/a", Some(TOKEN))
        .await
        .json();
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not a valid WebAssembly component"),
        "{status}"
    );

    // A config with a syntax error changes nothing, and says so.
    std::fs::write(&ops.config, "[[tenant]\nname = ").expect("write");
    ops.reload().await;
    assert!(
        ops.node
            .get("a.test", "/")
            .await
            .body
            .contains("\"method\"")
    );
    assert_eq!(ops.node.get("c.test", "/").await.body, "hello from outpost");
    let all = ops.admin(Method::GET, "/tenants", Some(TOKEN)).await.json();
    assert!(
        all["reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("outpost.toml")),
        "{all}"
    );
}

#[tokio::test]
async fn watch_reloads_when_the_file_changes() {
    let hello = example("hello");
    let ops = start("watch = true", "", &tenant("a", &hello, "a.test")).await;
    assert_eq!(ops.node.get("b.test", "/").await.status, 404);
    // mtime granularity: make sure the new file's time differs.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ops.rewrite(
        "watch = true",
        &format!(
            "{}{}",
            tenant("a", &hello, "a.test"),
            tenant("b", &hello, "b.test")
        ),
    );
    let started = Instant::now();
    loop {
        if ops.node.get("b.test", "/").await.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not reloaded:\n{}",
            ops.node.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the sample `name{labels}` in Prometheus text, if present.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the scrape parses as Prometheus text");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref buckets) => {
                buckets.last().map_or(0.0, |b| b.count)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move_with_traffic() {
    let ops = start(
        "",
        "",
        &format!(
            "{}limits = {{ fuel = 10_000_000 }}\n\n{}kv = [\"COUNTS\"]\n\n",
            tenant("app", &example("limits"), "/"),
            tenant("counter", &example("kv-counter"), "counter.test")
        ),
    )
    .await;
    let scrape = || async { ops.admin(Method::GET, "/metrics", Some(TOKEN)).await.body };
    let before = scrape().await;
    for _ in 0..5 {
        assert_eq!(ops.node.get("x.test", "/").await.status, 200);
    }
    assert_eq!(ops.node.get("x.test", "/spin").await.status, 503);
    let after = scrape().await;
    let ok = |text: &str| {
        sample(
            text,
            "outpost_requests_total",
            &[("tenant", "app"), ("class", "2xx")],
        )
    };
    assert_eq!(ok(&before).unwrap_or(0.0), 0.0);
    assert_eq!(ok(&after), Some(5.0), "{after}");
    assert_eq!(
        sample(
            &after,
            "outpost_requests_total",
            &[("tenant", "app"), ("class", "5xx")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            "outpost_limit_hits_total",
            &[("tenant", "app"), ("kind", "cpu")]
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "outpost_request_duration_seconds_count",
            &[("tenant", "app")]
        ),
        Some(6.0),
        "{after}"
    );
    assert!(sample(&after, "outpost_tenant_loads_total", &[]).is_some_and(|n| n >= 1.0));
    let app = [("tenant", "app")];
    let instances = |text: &str| sample(text, "outpost_instantiation_seconds_count", &app);
    assert_eq!(
        instances(&after).unwrap_or(0.0) - instances(&before).unwrap_or(0.0),
        6.0,
        "one instance per request: {after}"
    );
    let fuel = |text: &str| sample(text, "outpost_fuel_consumed_total", &app).unwrap_or(0.0);
    // The spinning request alone burnt its whole tank.
    assert!(fuel(&after) - fuel(&before) >= 10_000_000.0, "{after}");
    let peaks = sample(&after, "outpost_instance_memory_peak_bytes_count", &app);
    assert!(peaks.is_some_and(|n| n >= 6.0), "{after}");

    // Store operations, by tenant, store and operation, with their latency.
    for _ in 0..3 {
        assert_eq!(ops.node.get("counter.test", "/").await.status, 200);
    }
    let after = scrape().await;
    let parsed =
        prometheus_parse::Scrape::parse(after.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let kv_ops: f64 = parsed
        .samples
        .iter()
        .filter(|s| {
            s.metric == "outpost_storage_operation_seconds_count"
                && s.labels.get("tenant") == Some("counter")
                && s.labels.get("store") == Some("kv")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum();
    assert!(
        kv_ops >= 3.0,
        "3 counter requests, {kv_ops} KV operations:\n{after}"
    );
    assert!(sample(&after, "outpost_connections", &[]).is_some());
}

#[tokio::test]
async fn sigterm_lets_a_slow_request_finish_and_refuses_new_connections() {
    let mut ops = start(
        "",
        "shutdown_grace = \"10s\"",
        &tenant("app", &example("limits"), "/"),
    )
    .await;
    let slow = {
        let addr = ops.addr;
        tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream
                .write_all(b"GET /sleep?ms=1500 HTTP/1.1\r\nHost: x.test\r\n\r\n")
                .await
                .expect("send");
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    ops.node.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::net::TcpStream::connect(ops.addr).await.is_err(),
        "a new connection was accepted after SIGTERM"
    );
    let answer = slow.await.expect("slow request");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("slept 1500"), "{answer}");
    assert_eq!(
        ops.node.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        ops.node.logs()
    );
}

#[tokio::test]
async fn a_client_trickling_headers_is_cut_off_while_others_are_served() {
    let ops = start(
        "",
        "header_timeout = \"1s\"",
        &tenant("app", &example("hello"), "/"),
    )
    .await;
    let mut slow = tokio::net::TcpStream::connect(ops.addr)
        .await
        .expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x.test\r\n")
        .await
        .expect("send");
    let started = Instant::now();
    let mut cut_off = None;
    for i in 0..40 {
        // One header byte every 150 ms: never a whole head.
        if slow.write_all(b"x").await.is_err() {
            cut_off = Some(started.elapsed());
            break;
        }
        if i % 3 == 0 {
            assert_eq!(ops.node.get("x.test", "/").await.body, "hello from outpost");
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(150), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut_off = Some(started.elapsed());
                break;
            }
            Ok(Ok(n)) => {
                // hyper may answer 408 before closing; the connection must still end.
                assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));
            }
            Err(_) => {}
        }
    }
    let cut_off = cut_off.expect("the trickling client was never disconnected");
    assert!(
        cut_off < Duration::from_secs(5),
        "cut off only after {cut_off:?}"
    );
    assert_eq!(ops.node.get("x.test", "/").await.body, "hello from outpost");
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_version_it_started_on() {
    let ops = start("", "", &tenant("app", &example("limits"), "/")).await;
    let slow = {
        let ops_addr = ops.addr;
        tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(ops_addr)
                .await
                .expect("connect");
            stream
                .write_all(
                    b"GET /sleep?ms=1000 HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n",
                )
                .await
                .expect("send");
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hello = std::fs::read(example("hello")).expect("hello");
    let reply = admin_call(
        ops.admin,
        Method::PUT,
        "/tenants/app/component",
        Some(TOKEN),
        hello,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        ops.node.get("x.test", "/sleep?ms=1000").await.body,
        "hello from outpost"
    );
    let answer = slow.await.expect("slow");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("slept 1000 ms"),
        "the old version answers: {answer}"
    );
}

/// Sends a raw HTTP/1.1 request on `stream` and reads until the response head is in.
async fn raw_request(stream: &mut tokio::net::TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.expect("send");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        let n = stream.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn connections_past_max_connections_wait_until_one_closes() {
    let ops = start(
        "",
        "max_connections = 2",
        &tenant("app", &example("hello"), "/"),
    )
    .await;
    let request = b"GET / HTTP/1.1\r\nHost: x.test\r\n\r\n";
    let mut first = tokio::net::TcpStream::connect(ops.addr)
        .await
        .expect("connect");
    assert!(
        raw_request(&mut first, request)
            .await
            .starts_with("HTTP/1.1 200")
    );
    let mut second = tokio::net::TcpStream::connect(ops.addr)
        .await
        .expect("connect");
    assert!(
        raw_request(&mut second, request)
            .await
            .starts_with("HTTP/1.1 200")
    );

    // The kernel queues the third, but the node does not take it while two are open.
    let mut third = tokio::net::TcpStream::connect(ops.addr)
        .await
        .expect("connect");
    third.write_all(request).await.expect("send");
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(early.is_err(), "served past max_connections");
    drop(first);
    let served = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a connection closed")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..served]).starts_with("HTTP/1.1 200"));
    drop(second);
}

#[tokio::test]
async fn an_oversized_request_head_gets_431_and_an_idle_connection_is_closed() {
    let ops = start(
        "",
        "max_header_size = \"8KiB\"\nidle_timeout = \"1s\"",
        &tenant("app", &example("hello"), "/"),
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(ops.addr)
        .await
        .expect("connect");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x.test\r\nx-big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = raw_request(&mut stream, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let mut idle = tokio::net::TcpStream::connect(ops.addr)
        .await
        .expect("connect");
    let answer = raw_request(&mut idle, b"GET / HTTP/1.1\r\nHost: x.test\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection was kept past 5 s");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed too early"
    );
}

#[tokio::test]
async fn code_of_replaced_versions_is_freed() {
    let ops = start("", "", &tenant("app", &example("hello"), "/")).await;
    for name in ["echo", "limits", "echo"] {
        let wasm = std::fs::read(example(name)).expect("wasm");
        let reply = admin_call(
            ops.admin,
            Method::PUT,
            "/tenants/app/component",
            Some(TOKEN),
            wasm,
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(ops.node.get("x.test", "/").await.status, 200);
    }
    let text = ops.admin(Method::GET, "/metrics", Some(TOKEN)).await.body;
    assert_eq!(
        sample(&text, "outpost_components_in_memory", &[]),
        Some(1.0),
        "only the serving version's code stays: {text}"
    );
    let status = ops
        .admin(Method::GET, "/tenants/app", Some(TOKEN))
        .await
        .json();
    assert_eq!(
        status["previous"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );
}
