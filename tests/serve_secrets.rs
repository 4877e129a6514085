//! Secrets reach the guest like vars, from the node's environment or a file, and never
//! appear in the node's log.

mod support;

use support::{Node, tenant, write_config};

const SECRET: &str = "s3cr3t-value-7f1e";

#[tokio::test]
async fn a_secret_from_the_environment_reaches_the_guest_and_not_the_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, addr) = write_config(
        dir.path(),
        &tenant(
            "echo",
            "echo",
            &["/"],
            "secrets = { GREETING = { env = \"OUTPOST_TEST_GREETING\" } }",
        ),
    );
    let node = Node::start_with_env(dir, &config, addr, &[("OUTPOST_TEST_GREETING", SECRET)]).await;
    let reply = node.get("x.test", "/").await;
    assert_eq!(reply.json()["greeting"], SECRET, "{}", reply.body);
    assert!(!node.logs().contains(SECRET), "the secret is in the log");
}

#[tokio::test]
async fn a_secret_from_a_file_reaches_the_guest() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("greeting.txt"), format!("{SECRET}\n")).expect("write");
    let (config, addr) = write_config(
        dir.path(),
        &tenant(
            "echo",
            "echo",
            &["/"],
            "secrets = { GREETING = { file = \"greeting.txt\" } }",
        ),
    );
    let node = Node::start_with(dir, &config, addr).await;
    let reply = node.get("x.test", "/").await;
    assert_eq!(
        reply.json()["greeting"],
        SECRET,
        "the trailing newline is dropped"
    );
}
