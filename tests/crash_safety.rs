//! SIGKILL in the middle of operator actions: a deploy and a reload. After a restart the
//! node serves the old version or the new one, never neither, and keeps every deploy
//! that was acknowledged.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::Method;
use support::{Node, admin_call, example, free_port};
use tokio::io::AsyncWriteExt;

const TOKEN: &str = "crash-safety-admin-token-77a1";
const HELLO: &str = "hello from outpost";

struct Setup {
    config: PathBuf,
    addr: SocketAddr,
    admin: SocketAddr,
}

/// The tenant `name`, serving the hello example on `route`.
fn tenant(name: &str, route: &str) -> String {
    support::tenant(name, "hello", &[route], "")
}

fn write(setup: &Setup, tenants: &str) {
    let text = format!(
        "[node]\nid = \"crash\"\ndata_dir = \"data\"\nmax_instances = 50\n\n[server]\nlisten = \"{}\"\nadmin = {{ listen = \"{}\" }}\n\n{tenants}",
        setup.addr, setup.admin
    );
    std::fs::write(&setup.config, text).expect("write config");
}

async fn start(dir: tempfile::TempDir, setup: &Setup) -> Node {
    Node::start_with_env(
        dir,
        &setup.config,
        setup.addr,
        &[("OUTPOST_ADMIN_TOKEN", TOKEN)],
    )
    .await
}

fn setup(dir: &Path) -> Setup {
    Setup {
        config: dir.join("outpost.toml"),
        addr: free_port(),
        admin: free_port(),
    }
}

/// Whether `/` answers hello's or echo's body (echo answers JSON naming the method).
async fn serving(node: &Node) -> &'static str {
    let reply = node.get("x.test", "/").await;
    assert_eq!(
        reply.status, 200,
        "the tenant does not serve: {}",
        reply.body
    );
    if reply.body == HELLO {
        "hello"
    } else {
        assert!(
            reply.body.contains("\"method\""),
            "neither version: {}",
            reply.body
        );
        "echo"
    }
}

/// Sends a deploy of `component` to the admin API without waiting for its answer.
async fn send_deploy(admin: SocketAddr, component: &[u8]) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(admin).await.expect("admin");
    let head = format!(
        "PUT /tenants/app/component HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
        component.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(component).await.expect("component");
    stream
}

#[tokio::test]
async fn a_deploy_cut_by_sigkill_leaves_the_old_version_or_the_new() {
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = setup(dir.path());
    write(&setup, &tenant("app", "/"));
    let mut node = start(dir, &setup).await;
    assert_eq!(serving(&node).await, "hello");
    let echo = std::fs::read(example("echo")).expect("echo");
    let hello = std::fs::read(example("hello")).expect("hello");

    // Killed while the deploy is compiling (just sent), then once it has said so.
    let mut expected = "hello";
    for (round, wait_for_done) in [false, true, false, true].into_iter().enumerate() {
        let (next, bytes) = if expected == "hello" {
            ("echo", &echo)
        } else {
            ("hello", &hello)
        };
        let deployed_before = node.logs().matches("\"deployed\"").count();
        let _deploy = send_deploy(setup.admin, bytes).await;
        if wait_for_done {
            let started = std::time::Instant::now();
            while node.logs().matches("\"deployed\"").count() == deployed_before {
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(60),
                    "round {round}: the deploy never finished:\n{}",
                    node.logs()
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        let dir = node.stop(); // SIGKILL
        node = start(dir, &setup).await;
        let now = serving(&node).await;
        if wait_for_done {
            assert_eq!(now, next, "round {round}: an acknowledged deploy was lost");
        } else {
            assert!(now == expected || now == next, "round {round}: {now}");
        }
        expected = now;
        // The version history still works: a deploy after the crash goes through.
        let reply = admin_call(
            setup.admin,
            Method::GET,
            "/tenants/app",
            Some(TOKEN),
            Vec::new(),
        )
        .await;
        assert_eq!(reply.status, 200, "round {round}: {}", reply.body);
    }
}

#[tokio::test]
async fn a_reload_cut_by_sigkill_restarts_on_the_file_and_keeps_deploys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = setup(dir.path());
    write(&setup, &tenant("app", "/"));
    let node = start(dir, &setup).await;
    let echo = std::fs::read(example("echo")).expect("echo");
    let reply = admin_call(
        setup.admin,
        Method::PUT,
        "/tenants/app/component",
        Some(TOKEN),
        echo,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(serving(&node).await, "echo");

    write(
        &setup,
        &format!("{}{}", tenant("app", "/"), tenant("two", "two.test")),
    );
    node.signal("HUP");
    let dir = node.stop(); // SIGKILL, the reload just begun
    let node = start(dir, &setup).await;
    assert_eq!(
        serving(&node).await,
        "echo",
        "the deployed version was lost"
    );
    let two = node.get("two.test", "/").await;
    assert_eq!((two.status, two.body.as_str()), (200, HELLO));
}
