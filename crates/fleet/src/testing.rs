//! Real `nats-server` processes for tests: one server or a JetStream cluster on
//! loopback, each with its own store directory, started, stopped and restarted at will.
//!
//! The binary is `$OUTPOST_TEST_NATS`, else `target/tools/bin/nats-server`
//! (`cargo xtask test` and `cargo xtask tools` install it).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` to run.
pub fn nats_server_binary() -> PathBuf {
    let binary = std::env::var_os("OUTPOST_TEST_NATS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/bin/nats-server"),
        PathBuf::from,
    );
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo xtask test` (or `cargo xtask tools` once)",
        binary.display()
    );
    binary
}

/// `count` distinct free ports, none handed out before in this process: tests run in
/// parallel threads, and a port freed by one test's probe can be chosen by the kernel for
/// the next; two servers on one port would have one test talking to another's server.
pub fn free_ports(count: usize) -> Vec<u16> {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Held open until every one is chosen, so the kernel cannot give one twice here.
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < count {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("local addr").port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            ports.push(port);
        }
        held.push(listener);
    }
    ports
}

/// One server of a [`NatsCluster`].
struct Server {
    client_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A JetStream cluster (or a single server) on loopback.
pub struct NatsCluster {
    dir: tempfile::TempDir,
    servers: Vec<Server>,
    /// The token clients must present, if the servers want one.
    token: Option<String>,
}

impl NatsCluster {
    /// Starts `size` servers (1: no clustering) with `sync_interval: always`, and waits
    /// until JetStream answers on each.
    pub async fn start(size: usize) -> NatsCluster {
        NatsCluster::start_with_token(size, None).await
    }

    /// Like [`NatsCluster::start`], with servers that accept only clients presenting
    /// `token`.
    pub async fn start_with_token(size: usize, token: Option<&str>) -> NatsCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(2 * size);
        let (cluster_ports, client_ports) = ports.split_at(size);
        let mut servers = Vec::new();
        for i in 0..size {
            let client_port = client_ports[i];
            let store = dir.path().join(format!("n{i}-store"));
            let mut config = format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{client_port}\nmax_payload: 8MB\n\
                 jetstream {{ store_dir: {store:?}, sync_interval: always }}\n"
            );
            if let Some(token) = token {
                config.push_str(&format!("authorization {{ token: {token:?} }}\n"));
            }
            if size > 1 {
                let routes: Vec<String> = cluster_ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, port)| format!("nats-route://127.0.0.1:{port}"))
                    .collect();
                config.push_str(&format!(
                    "cluster {{ name: outpost-test, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                    cluster_ports[i],
                    routes.join(", ")
                ));
            }
            let path = dir.path().join(format!("n{i}.conf"));
            std::fs::write(&path, config).expect("write nats config");
            servers.push(Server {
                client_port,
                config: path,
                log: dir.path().join(format!("n{i}.log")),
                child: None,
            });
        }
        let mut cluster = NatsCluster {
            dir,
            servers,
            token: token.map(str::to_string),
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster.wait_ready().await;
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let server = &mut self.servers[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&server.log)
            .expect("nats log");
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(&server.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        server.child = Some(child);
    }

    /// `nats://127.0.0.1:PORT` of every server.
    pub fn urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.client_port))
            .collect()
    }

    /// The client address of server `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.servers[i].client_port))
    }

    /// Kills server `i` (SIGKILL: no goodbye to its peers).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills every server.
    pub fn kill_all(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }

    /// Starts server `i` again on its port and store, and waits until the whole cluster
    /// answers JetStream requests.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready().await;
    }

    /// Starts every stopped server and waits for JetStream.
    pub async fn restart_all(&mut self) {
        for i in 0..self.servers.len() {
            if self.servers[i].child.is_none() {
                self.spawn(i);
            }
        }
        self.wait_ready().await;
    }

    /// Every server's log so far, for a failing test's message.
    pub fn logs(&self) -> String {
        self.servers
            .iter()
            .map(|s| std::fs::read_to_string(&s.log).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until every running server answers a JetStream account query (the
    /// cluster's meta leader is elected).
    async fn wait_ready(&self) {
        let started = Instant::now();
        for server in self.servers.iter().filter(|s| s.child.is_some()) {
            let url = format!("nats://127.0.0.1:{}", server.client_port);
            loop {
                let ready = async {
                    let mut options = async_nats::ConnectOptions::new()
                        .connection_timeout(Duration::from_millis(500));
                    if let Some(token) = &self.token {
                        options = options.token(token.clone());
                    }
                    let client = options.connect(&url).await.ok()?;
                    let jetstream = async_nats::jetstream::new(client);
                    jetstream.query_account().await.ok()
                };
                if tokio::time::timeout(Duration::from_secs(2), ready)
                    .await
                    .ok()
                    .flatten()
                    .is_some()
                {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the NATS cluster did not become ready; its logs:\n{}",
                    self.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// The directory holding the servers' configs, stores and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}
