//! Driving load with wrk pinned to the load core, and reading its numbers.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::servers::LOAD_CORE;

/// Connections, as in the targets (`wrk -t1 -c32`).
pub const CONNECTIONS: u32 = 32;

/// What one load run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub errors: u64,
}

#[derive(Deserialize)]
struct WrkJson {
    requests: u64,
    duration_us: u64,
    errors: u64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
}

/// How each request differs from wrk's default `GET url` (read by `report.lua`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape {
    /// Another method than GET.
    pub method: Option<&'static str>,
    /// Append a random number from 1 to this to the path of each request.
    pub spread: Option<u32>,
}

/// A wrk command for `url` with `Host: host`.
fn wrk(
    script: &Path,
    url: &str,
    host: &str,
    connections: u32,
    duration: Duration,
    shape: Shape,
) -> Command {
    let mut command = Command::new("taskset");
    if let Some(method) = shape.method {
        command.env("OUTPOST_BENCH_METHOD", method);
    }
    if let Some(spread) = shape.spread {
        command.env("OUTPOST_BENCH_SPREAD", spread.to_string());
    }
    command
        .args(["-c", LOAD_CORE, "wrk", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("-s")
        .arg(script)
        .args(["-H", &format!("Host: {host}"), url])
        .env_remove("RUST_BACKTRACE");
    command
}

/// Runs wrk against `url` and returns its numbers.
pub fn run(
    script: &Path,
    url: &str,
    host: &str,
    connections: u32,
    duration: Duration,
    shape: Shape,
) -> anyhow::Result<Measured> {
    let output = wrk(script, url, host, connections, duration, shape)
        .output()
        .context("cannot run wrk")?;
    parse(&String::from_utf8_lossy(&output.stdout))
}

/// Starts wrk in the background (for the noisy neighbour's load).
pub fn spawn(
    script: &Path,
    url: &str,
    host: &str,
    connections: u32,
    duration: Duration,
    shape: Shape,
) -> anyhow::Result<Child> {
    wrk(script, url, host, connections, duration, shape)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run wrk")
}

/// Waits for a background wrk and returns its numbers.
pub fn finish(child: Child) -> anyhow::Result<Measured> {
    let output = child.wait_with_output()?;
    parse(&String::from_utf8_lossy(&output.stdout))
}

fn parse(stdout: &str) -> anyhow::Result<Measured> {
    let Some(json) = stdout.lines().find_map(|l| l.strip_prefix("JSON ")) else {
        bail!("wrk printed no result:\n{stdout}");
    };
    let wrk: WrkJson = serde_json::from_str(json)?;
    Ok(Measured {
        rps: wrk.requests as f64 / (wrk.duration_us as f64 / 1e6),
        p50_ms: wrk.p50_us as f64 / 1e3,
        p99_ms: wrk.p99_us as f64 / 1e3,
        p999_ms: wrk.p999_us as f64 / 1e3,
        errors: wrk.errors,
    })
}
