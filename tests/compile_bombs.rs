//! Components built to be expensive to compile. The node compiles each in a child
//! process and stops it past `node.compile_memory` or `node.compile_timeout`: the deploy
//! (or the start, or `outpost check`) fails with a reason that names the tenant and the
//! limit, and the node, its memory and its other tenants carry on. Each test has a twin
//! with the limit raised, in which the same component compiles: the limit is what
//! stopped it.

mod support;

use std::fmt::Write;
use std::net::SocketAddr;

use support::{Node, admin_call, example, free_port, proc_status_bytes, run_outpost, tenant};

const TOKEN: &str = "compile-bomb-test-token";

/// A valid component whose one core function is `stores` dependent multiplications,
/// each stored to memory (so none can be optimised away): its code and the compiler's
/// memory grow with `stores`, its wasm by about 15 bytes each. 100,000 take about
/// 0.7 s and 160 MiB to compile here. It exports no HTTP handler, so once compiled it
/// is refused for that, in other words.
fn bomb(stores: usize) -> Vec<u8> {
    const LOCALS: usize = 200;
    let mut body = String::new();
    for local in 1..LOCALS {
        writeln!(
            body,
            "local.get 0 i64.const {} i64.mul local.set {local}",
            local * 7 + 3
        )
        .expect("write");
    }
    let mut x: u64 = 12345;
    for _ in 0..stores {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pick = |shift: u32| (x >> shift) as usize % LOCALS;
        let address = (x >> 40) % 8192 * 8;
        writeln!(
            body,
            "i32.const {address} local.get {} local.get {} i64.mul local.tee {} i64.store",
            pick(11),
            pick(23),
            pick(37)
        )
        .expect("write");
    }
    body.push_str("local.get 0\n");
    let locals = "i64 ".repeat(LOCALS - 1);
    let text = format!(
        "(component (core module $m (memory 1) \
         (func (export \"f\") (param i64) (result i64) (local {locals}) {body})) \
         (core instance (instantiate $m)))"
    );
    wat::parse_str(&text).expect("the bomb is valid wasm text")
}

/// A node serving hello, with an admin API and `node_extra` lines in `[node]`.
async fn node(node_extra: &str) -> (Node, SocketAddr) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (addr, admin) = (free_port(), free_port());
    let config = dir.path().join("outpost.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\ndata_dir = \"data\"\n{node_extra}\n\n[server]\nlisten = \"{addr}\"\n\
             admin = {{ listen = \"{admin}\" }}\n\n{}",
            tenant("hello", "hello", &["/"], "")
        ),
    )
    .expect("config");
    let node = Node::start_with_env(dir, &config, addr, &[("OUTPOST_ADMIN_TOKEN", TOKEN)]).await;
    (node, admin)
}

async fn deploy(admin: SocketAddr, wasm: Vec<u8>) -> support::Reply {
    admin_call(
        admin,
        http::Method::PUT,
        "/tenants/hello/component",
        Some(TOKEN),
        wasm,
    )
    .await
}

#[tokio::test]
async fn a_deploy_that_needs_more_memory_to_compile_than_allowed_is_refused() {
    let (node, admin) = node("compile_memory = \"64MiB\"").await;
    let before = proc_status_bytes(node.pid(), "VmRSS");
    let refused = deploy(admin, bomb(100_000)).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("hello") && refused.body.contains("node.compile_memory (64MiB)"),
        "names the tenant and the limit: {}",
        refused.body
    );
    let grown = proc_status_bytes(node.pid(), "VmRSS").saturating_sub(before);
    assert!(
        grown < 16 << 20,
        "the compile's memory was the child's, not the node's: node grew {grown} bytes"
    );
    assert_eq!(
        node.get("hello.test", "/").await.status,
        200,
        "old version serves"
    );
    // A component of ordinary size still compiles under the same limit.
    let hello = std::fs::read(example("hello")).expect("hello.wasm");
    let deployed = deploy(admin, hello).await;
    assert_eq!(deployed.status, 200, "{}", deployed.body);
}

#[tokio::test]
async fn the_same_deploy_compiles_when_the_memory_limit_allows_it() {
    let (_node, admin) = node("compile_memory = \"4GiB\"").await;
    let refused = deploy(admin, bomb(100_000)).await;
    // Compiled, then refused for what it is: a component without an HTTP handler.
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        !refused.body.contains("compile_memory") && refused.body.contains("incoming-handler"),
        "{}",
        refused.body
    );
}

/// `outpost check` and `outpost serve` on a config whose tenant `slow` is the bomb.
fn check_and_serve(node_extra: &str) -> [(i32, String); 2] {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("slow.wasm"), bomb(100_000)).expect("bomb");
    let config = dir.path().join("outpost.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\ndata_dir = \"data\"\n{node_extra}\n\n[server]\nlisten = \"{}\"\n\n{}",
            free_port(),
            "[[tenant]]\nname = \"slow\"\ncomponent = \"slow.wasm\"\nroutes = [\"/\"]\n"
        ),
    )
    .expect("config");
    let config = config.to_str().expect("path");
    [
        run_outpost(&["check", "--config", config]),
        run_outpost(&["serve", "--config", config]),
    ]
}

#[test]
fn a_component_slower_to_compile_than_allowed_is_refused_at_check_and_start() {
    for (code, output) in check_and_serve("compile_timeout = \"50ms\"") {
        assert_ne!(code, 0, "{output}");
        assert!(
            output.contains("slow") && output.contains("node.compile_timeout (0.05s)"),
            "names the tenant and the limit: {output}"
        );
    }
}

#[test]
fn the_same_component_compiles_when_the_timeout_allows_it() {
    for (code, output) in check_and_serve("compile_timeout = \"5m\"") {
        assert_ne!(code, 0, "{output}");
        assert!(
            !output.contains("compile_timeout") && output.contains("incoming-handler"),
            "{output}"
        );
    }
}
