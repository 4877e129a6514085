//! The peers and the load generator, installed on first use: wasmtime-cli from crates.io,
//! workerd and miniflare from npm (into `benches/.tools/`), wrk and nginx from Debian.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The wasmtime release `wasmtime serve` comes from: the one outpost embeds.
const WASMTIME_VERSION: &str = "48.0.8";
/// The workerd release from npm.
const WORKERD_VERSION: &str = "1.20261117.1";
/// Miniflare runs workerd with local KV and D1 (the stores scenario's peer); it brings
/// the workerd release it was built with.
const MINIFLARE_VERSION: &str = "4.20260730.0";

/// What the harness found or installed.
pub(crate) struct Tools {
    pub(crate) wasmtime: PathBuf,
    pub(crate) workerd: Option<PathBuf>,
    /// The tools folder, when miniflare is installed in it.
    pub(crate) miniflare: Option<PathBuf>,
    /// What could not be installed, for the report.
    pub(crate) notes: Vec<String>,
}

impl Tools {
    /// Installs what is missing into `tools`; wasmtime and wrk are required, the npm
    /// peers are skipped (with a note) when npm cannot install them. Without `peers`,
    /// only wrk: the scenarios to run compare outpost with nothing installed here.
    pub(crate) fn install(tools: &Path, peers: bool) -> anyhow::Result<Tools> {
        let mut notes = Vec::new();
        ensure_wrk()?;
        let wasmtime = tools.join("bin/wasmtime");
        if !peers {
            return Ok(Tools {
                wasmtime,
                workerd: None,
                miniflare: None,
                notes,
            });
        }
        if !wasmtime.exists() {
            println!(
                "installing wasmtime-cli {WASMTIME_VERSION} into {} (a few minutes, once)",
                tools.display()
            );
            run(Command::new("cargo")
                .args(["install", "--locked", "--root"])
                .arg(tools)
                .arg(format!("wasmtime-cli@{WASMTIME_VERSION}")))?;
        }
        let workerd = install_npm(
            tools,
            "workerd",
            WORKERD_VERSION,
            "node_modules/.bin/workerd",
        );
        if workerd.is_none() {
            notes.push(
                "workerd could not be installed (is npm on PATH?); its rows are missing.".into(),
            );
        }
        let miniflare = install_npm(
            tools,
            "miniflare",
            MINIFLARE_VERSION,
            "node_modules/miniflare/package.json",
        )
        .map(|_| tools.to_path_buf());
        if miniflare.is_none() {
            notes.push(
                "miniflare could not be installed (is npm on PATH?); the stores scenario has no workerd rows."
                    .into(),
            );
        }
        Ok(Tools {
            wasmtime,
            workerd,
            miniflare,
            notes,
        })
    }
}

/// `package@version` from npm into `tools`, unless `installed` (a path inside `tools`)
/// is already there; that path, or `None` if npm could not install it.
fn install_npm(tools: &Path, package: &str, version: &str, installed: &str) -> Option<PathBuf> {
    let path = tools.join(installed);
    if !path.exists() {
        println!(
            "installing {package} {version} from npm into {}",
            tools.display()
        );
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(tools)
            .arg(format!("{package}@{version}"))
            .status();
        if !status.is_ok_and(|s| s.success()) {
            return None;
        }
    }
    path.exists().then_some(path)
}

fn ensure_wrk() -> anyhow::Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    println!("installing wrk from Debian's packages");
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get").args(["install", "-y", "-qq", "wrk"]))
}

/// nginx from Debian (the static-file peer), or `None` with the reason.
pub(crate) fn ensure_nginx() -> Result<PathBuf, String> {
    let path = PathBuf::from("/usr/sbin/nginx");
    if path.exists() {
        return Ok(path);
    }
    println!("installing nginx from Debian's packages");
    let installed = run(Command::new("apt-get").arg("update").arg("-qq")).and_then(|()| {
        run(Command::new("apt-get").args(["install", "-y", "-qq", "nginx-light"]))
            .or_else(|_| run(Command::new("apt-get").args(["install", "-y", "-qq", "nginx"])))
    });
    match installed {
        Ok(()) if path.exists() => Ok(path),
        Ok(()) => Err("nginx installed, but not at /usr/sbin/nginx".into()),
        Err(error) => Err(format!("nginx could not be installed: {error}")),
    }
}

pub(crate) fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}
