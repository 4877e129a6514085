//! Starts the real `outpost` binary with a generated config and talks to it over HTTP.

#![allow(dead_code)] // each test file uses a different part of the harness

pub mod origin;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The example component `name`, built by `cargo xtask build-examples`.
pub fn example(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds the examples first",
        path.display()
    );
    path
}

/// A TOML `[[tenant]]` block for example `component` (an absolute path is written).
pub fn tenant(name: &str, component: &str, routes: &[&str], extra: &str) -> String {
    let routes: Vec<String> = routes.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "[[tenant]]\nname = {name:?}\ncomponent = {:?}\nroutes = [{}]\n{extra}\n\n",
        example(component).display().to_string(),
        routes.join(", ")
    )
}

/// A running `outpost serve`.
pub struct Node {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Child,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A response read whole.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as JSON (panics with the status and body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Instance slots a test node's pool has, unless a test asks for another number.
pub const TEST_MAX_INSTANCES: u32 = 200;

/// Writes `tenants` into a config with a fresh data dir and an ephemeral port.
pub fn write_config(dir: &Path, tenants: &str) -> (PathBuf, SocketAddr) {
    write_config_with(dir, TEST_MAX_INSTANCES, tenants)
}

/// Like [`write_config`], with `max_instances` pool slots.
pub fn write_config_with(dir: &Path, max_instances: u32, tenants: &str) -> (PathBuf, SocketAddr) {
    write_config_full(dir, max_instances, "", tenants)
}

/// Like [`write_config_with`], with `server` (lines of `[server]` keys) after `listen`.
pub fn write_config_full(
    dir: &Path,
    max_instances: u32,
    server: &str,
    tenants: &str,
) -> (PathBuf, SocketAddr) {
    let addr = free_port();
    // No line for an empty `server`: tests of config errors expect exact line numbers.
    let server = if server.is_empty() {
        String::new()
    } else {
        format!("{server}\n")
    };
    let config = format!(
        "[node]\nid = \"test\"\ndata_dir = \"data\"\nmax_instances = {max_instances}\n\n[server]\nlisten = \"{addr}\"\n{server}\n{tenants}"
    );
    let path = dir.join("outpost.toml");
    std::fs::write(&path, config).expect("write config");
    (path, addr)
}

/// A node started by [`launch_with_admin`]: its admin API's address and its config file.
#[allow(dead_code, reason = "not every test binary calls the admin API")]
pub struct Launched {
    pub node: Node,
    pub admin: SocketAddr,
    pub config: PathBuf,
}

/// Starts a node on a fresh directory serving `tenants` with `max_instances` slots, its
/// admin API on with bearer `token`.
#[allow(dead_code, reason = "not every test binary calls the admin API")]
pub async fn launch_with_admin(token: &str, max_instances: u32, tenants: &str) -> Launched {
    let dir = tempfile::tempdir().expect("temp dir");
    let admin = free_port();
    let (config, addr) = write_config_full(
        dir.path(),
        max_instances,
        &format!("admin = {{ listen = \"{admin}\" }}"),
        tenants,
    );
    let node = Node::start_with_env(dir, &config, addr, &[("OUTPOST_ADMIN_TOKEN", token)]).await;
    Launched {
        node,
        admin,
        config,
    }
}

/// A byte count from `/proc/PID/status` (`VmRSS`, `VmSwap`: given there in kB).
#[allow(dead_code, reason = "not every test binary measures the node")]
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
        * 1024
}

/// A loopback port no other server of this test process was given.
pub fn free_port() -> SocketAddr {
    let port = outpost_fleet::testing::free_ports(1)[0];
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Runs `outpost <args>` to completion; returns (exit code, stderr + stdout).
pub fn run_outpost(args: &[&str]) -> (i32, String) {
    run_outpost_with_env(args, &[])
}

/// Like [`run_outpost`], with extra environment variables.
pub fn run_outpost_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run outpost");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    (output.status.code().unwrap_or(-1), text)
}

impl Node {
    /// Starts a node serving `tenants` and waits until it accepts connections.
    pub async fn start(tenants: &str) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let (config, addr) = write_config(dir.path(), tenants);
        Node::start_with(dir, &config, addr).await
    }

    /// Starts a node whose `[server]` section also has `server` (extra keys).
    #[allow(dead_code, reason = "not every test binary sets server keys")]
    pub async fn start_with_server(server: &str, tenants: &str) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let (config, addr) = write_config_full(dir.path(), TEST_MAX_INSTANCES, server, tenants);
        Node::start_with(dir, &config, addr).await
    }

    /// Starts a node on an existing config (to restart on the same data dir).
    pub async fn start_with(dir: tempfile::TempDir, config: &Path, addr: SocketAddr) -> Node {
        Node::start_with_env(dir, config, addr, &[]).await
    }

    /// Like [`Node::start_with`], with extra environment variables (store credentials).
    pub async fn start_with_env(
        dir: tempfile::TempDir,
        config: &Path,
        addr: SocketAddr,
        env: &[(&str, &str)],
    ) -> Node {
        // A fresh log per start: tests read what this start logged.
        let log = std::fs::File::create(dir.path().join("outpost.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn outpost");
        let mut node = Node {
            addr,
            dir,
            child,
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        let started = Instant::now();
        loop {
            // Its own log line, not just an open port: the port is this node's.
            let serving = format!("serving on http://{addr}/");
            if node.logs().contains(&serving) {
                return node;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!(
                    "outpost exited with {status} before serving:\n{}",
                    node.logs()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "outpost did not start serving within 120s:\n{}",
                node.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The node's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the node a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `within` for the node to exit; its exit code, or `None` if it is
    /// still running.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The node's log so far (one JSON object per line).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("outpost.log")).unwrap_or_default()
    }

    /// Waits (up to 5 s) for a log line for which `matches` holds.
    pub async fn wait_for_log(&self, matches: impl Fn(&str) -> bool) -> bool {
        for _ in 0..250 {
            if self.logs().lines().any(&matches) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Stops the node and hands back its directory (for a restart on the same data).
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// A node serving `examples/blob-files` at `files.test` on a file store, with
    /// `server` keys and the tenant's `limits` (inline-table keys), holding a blob of
    /// `size` bytes at `/files/big`.
    #[allow(dead_code, reason = "not every test binary serves a big blob")]
    pub async fn with_big_blob(server: &str, limits: &str, size: usize) -> Node {
        let files = tenant(
            "files",
            "blob-files",
            &["files.test"],
            &format!("blob = {{ FILES = {{}} }}\nlimits = {{ {limits} }}"),
        );
        let node = Node::start_with_server(server, &files).await;
        let blob = Bytes::from(vec![b'x'; size]);
        let put = node
            .send(http::Method::PUT, "files.test", "/files/big", &[], blob)
            .await;
        assert!(put.status < 300, "{} {}", put.status, put.body);
        node
    }

    /// Asks for `path` until the node answers 200, for at most `within`.
    #[allow(
        dead_code,
        reason = "not every test binary waits for a tenant to recover"
    )]
    pub async fn served_within(&self, host: &str, path: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let reply = self.get(host, path).await;
            if reply.status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still {} after {within:?}: {}",
                reply.status,
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET `path` with `Host: host`.
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.send(http::Method::GET, host, path, &[], Bytes::new())
            .await
    }

    /// Sends one request and returns the response body's bytes (status must be 200).
    pub async fn send_raw(
        &self,
        method: http::Method,
        host: &str,
        path: &str,
        body: Bytes,
    ) -> Vec<u8> {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("host", host)
            .body(Full::new(body))
            .expect("request");
        let response = self.client.request(request).await.expect("send request");
        assert_eq!(response.status(), 200);
        response
            .into_body()
            .collect()
            .await
            .expect("read body")
            .to_bytes()
            .to_vec()
    }

    /// Sends `body` (text) with no extra headers and reads the whole response.
    pub async fn call(&self, method: http::Method, host: &str, path: &str, body: &str) -> Reply {
        self.send(method, host, path, &[], Bytes::from(body.to_string()))
            .await
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &self,
        method: http::Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        let (status, headers, body) = self.send_bytes(method, host, path, headers, body).await;
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// Sends one request; answers status, headers and the body's bytes.
    pub async fn send_bytes(
        &self,
        method: http::Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> (u16, http::HeaderMap, Bytes) {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("host", host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).expect("request");
        let response = self.client.request(request).await.expect("send request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("read body")
            .to_bytes();
        (status, headers, body)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real S3-protocol server (`s3s-fs`, installed by `cargo xtask test`) on a temp dir.
pub struct S3Server {
    pub endpoint: String,
    pub root: tempfile::TempDir,
    child: Child,
}

pub const S3_ACCESS_KEY: &str = "outpost-test-key";
pub const S3_SECRET_KEY: &str = "outpost-test-secret";

impl S3Server {
    /// Starts the server with `bucket` created, and waits until it accepts connections.
    pub async fn start(bucket: &str) -> S3Server {
        let binary = std::env::var_os("OUTPOST_TEST_S3S").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/s3s-fs"),
            PathBuf::from,
        );
        assert!(
            binary.exists(),
            "{} is missing: run the tests with `cargo xtask test`, which installs s3s-fs",
            binary.display()
        );
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(root.path().join(bucket)).expect("create the bucket");
        let addr = free_port();
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port"])
            .arg(addr.port().to_string())
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn s3s-fs");
        let server = S3Server {
            endpoint: format!("http://{addr}"),
            root,
            child,
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "s3s-fs did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// The environment a node needs to reach this server with the default variable names.
    pub fn credentials(&self) -> [(&'static str, &'static str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The string `field` of each object in the JSON array `array`.
pub fn strings(array: &serde_json::Value, field: &str) -> Vec<String> {
    array
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {array}"))
        .iter()
        .filter_map(|item| item[field].as_str().map(str::to_string))
        .collect()
}

/// Sends one request to `addr` (an admin API), with a bearer `token` if given.
pub async fn admin_call(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).expect("request"))
        .await
        .expect("admin API reachable");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("admin body")
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The value of metric `name` (a gauge or counter without labels) from the admin API at
/// `admin`.
pub async fn metric(admin: SocketAddr, token: &str, name: &str) -> f64 {
    let text = admin_call(
        admin,
        http::Method::GET,
        "/metrics",
        Some(token),
        Vec::new(),
    )
    .await
    .body;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the scrape parses as Prometheus text");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or_else(|| panic!("no {name} in the metrics:\n{text}"))
}

/// Waits (up to 60 s) until metric `name` reads `value`.
pub async fn wait_for_metric(admin: SocketAddr, token: &str, name: &str, value: f64) {
    let started = Instant::now();
    loop {
        let now = metric(admin, token, name).await;
        if now == value {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name} is {now} after 60 s, waiting for {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
