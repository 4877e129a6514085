//! `outpost new` makes a guest crate that builds and serves as it is.

mod support;

use std::process::Command;

use support::{Node, write_config};

#[tokio::test]
async fn a_new_guest_builds_checks_and_serves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let crate_dir = dir.path().join("my-guest");
    let (code, output) = support::run_outpost(&[
        "new",
        "my-guest",
        "--path",
        &crate_dir.display().to_string(),
    ]);
    assert_eq!(code, 0, "{output}");
    for file in [
        "Cargo.toml",
        "src/main.rs",
        "outpost.toml",
        "README.md",
        ".gitignore",
    ] {
        assert!(crate_dir.join(file).exists(), "{file} missing");
    }
    // A second time is refused rather than overwriting.
    let (code, output) = support::run_outpost(&[
        "new",
        "my-guest",
        "--path",
        &crate_dir.display().to_string(),
    ]);
    assert_ne!(code, 0);
    assert!(output.contains("already exists"), "{output}");

    // Built with the examples' target dir, so the SDK's dependencies compile once.
    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/target");
    let build = Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("run cargo");
    assert!(
        build.status.success(),
        "the new guest does not build:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = std::path::Path::new(target).join("wasm32-wasip2/release/my-guest.wasm");
    assert!(wasm.exists());

    // Its own outpost.toml checks clean once the component is where it says.
    let local = crate_dir.join("target/wasm32-wasip2/release");
    std::fs::create_dir_all(&local).expect("dir");
    std::fs::copy(&wasm, local.join("my-guest.wasm")).expect("copy");
    let config = crate_dir.join("outpost.toml").display().to_string();
    let (code, output) = support::run_outpost(&["check", "--config", &config]);
    assert_eq!(code, 0, "{output}");

    let tenant = format!(
        "[[tenant]]\nname = \"my-guest\"\ncomponent = {:?}\nroutes = [\"/\"]\nvars = {{ GREETING = \"hi\" }}\n",
        wasm.display().to_string()
    );
    let (config, addr) = write_config(dir.path(), &tenant);
    let node = Node::start_with(tempfile::tempdir().expect("dir"), &config, addr).await;
    assert_eq!(node.get("x.test", "/").await.body, "hi from my-guest\n");
    assert_eq!(node.get("x.test", "/hello/you").await.body, "hi, you\n");
    assert_eq!(node.get("x.test", "/nope").await.status, 404);
}
