//! outpost's load harness: outpost beside `wasmtime serve`, workerd and a native hyper
//! server, on one machine, in one run, each server pinned to core 0 and wrk to core 1.
//!
//! `cargo xtask bench` builds everything in release mode, installs the peers into
//! `benches/.tools/` and runs this. Results go to `target/bench/results.json` and, as
//! Markdown tables, into `docs/benchmarks.md`. See that page for what each scenario means.
//!
//! `outpost-bench native-hello ADDR` is the floor server itself (started by the harness).

mod cpuprobe;
mod edge;
mod fleet;
mod h2attack;
// Shared with tests/serve_hostile_h2.rs, which reads the frames the attacks here only send.
#[allow(dead_code)]
mod h2frames;
mod h2scenario;
mod load;
mod native;
mod objects;
mod report;
mod scenarios;
mod servers;
mod soak;
mod tools;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use clap::Parser;
use load::{CONNECTIONS, Measured, Shape};
use servers::{Server, free_addr};
use tools::Tools;

/// Load before each measurement, so JIT-warm peers and cold caches are not compared.
const WARMUP: Duration = Duration::from_secs(2);
/// Runs per start-up measurement; the median is reported.
const START_RUNS: usize = 5;
/// The admin token of the nodes whose admin API a scenario calls, and the variable that
/// carries it to them (set once, before any thread starts).
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
const ADMIN_TOKEN_ENV: &str = "OUTPOST_BENCH_ADMIN_TOKEN";

#[derive(Debug, Serialize)]
struct Row {
    scenario: &'static str,
    server: String,
    #[serde(flatten)]
    load: Option<Measured>,
    startup_ms: Option<f64>,
    rss_mib: f64,
}

/// A server started afresh for each cold-start run.
enum Peer {
    Outpost(PathBuf),
    Wasmtime,
    Workerd(PathBuf),
}

/// The load harness: outpost beside its peers, each server on core 0 and wrk on core 1.
#[derive(Parser)]
struct Args {
    /// Scenarios to run, comma-separated: hello, stores, router, cold, density, noisy, edge,
    /// objects, fleet, h2-attacks, soak.
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// The h2-attacks to run, comma-separated (all when left out).
    #[arg(long, value_delimiter = ',')]
    attacks: Option<Vec<String>>,
    /// Seconds the soak runs.
    #[arg(long, default_value_t = 300)]
    soak: u64,
}

struct Harness {
    root: PathBuf,
    work: PathBuf,
    duration: Duration,
    outpost: PathBuf,
    wasmtime: PathBuf,
    workerd: Option<PathBuf>,
    /// The tools folder when miniflare is installed in it.
    miniflare: Option<PathBuf>,
    wrk_script: PathBuf,
    rows: Vec<Row>,
    /// The soak's intervals, if it ran.
    soak: Vec<soak::SoakSample>,
    /// The HTTP/2 attacks, if they ran.
    h2_attacks: Vec<h2scenario::AttackRow>,
    notes: Vec<String>,
    /// Only some scenarios run (`--only`): the docs' tables are left alone.
    partial: bool,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("native-hello") {
        let addr = args
            .get(1)
            .context("usage: outpost-bench native-hello ADDR")?;
        return native::serve(addr.parse()?);
    }
    if let [probe, seconds] = args.as_slice()
        && probe == "cpu-probe"
    {
        return cpuprobe::run(seconds.parse()?);
    }
    if let [side, rest @ ..] = args.as_slice()
        && side.starts_with("h2-")
    {
        let usage = "usage: outpost-bench h2-attack KIND ADDR SECONDS | h2-probe ADDR SECONDS";
        return match (side.as_str(), rest) {
            ("h2-attack", [kind, addr, seconds]) => {
                h2attack::attack(kind, addr.parse()?, seconds.parse()?)
            }
            ("h2-probe", [addr, seconds]) => h2attack::probe(addr.parse()?, seconds.parse()?),
            _ => anyhow::bail!(usage),
        };
    }
    let args = Args::parse_from(std::iter::once("outpost-bench".to_string()).chain(args));
    // SAFETY: no other thread exists yet; the nodes started later read it.
    unsafe { std::env::set_var(ADMIN_TOKEN_ENV, ADMIN_TOKEN) };
    let duration = Duration::from_secs(args.duration);
    let wants = |name: &str| {
        args.only
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s == name))
    };

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()?;
    // Only the scenarios that run a peer install one (wasmtime-cli builds for minutes).
    let peers = ["hello", "stores", "cold"].into_iter().any(wants);
    let mut harness = Harness::new(root, duration, peers)?;
    harness.partial = args.only.is_some();
    let started = Instant::now();
    if wants("hello") {
        harness.hello()?;
    }
    if wants("stores") {
        harness.stores()?;
    }
    if wants("router") {
        harness.router()?;
    }
    if wants("cold") {
        harness.cold_start()?;
    }
    if wants("density") {
        harness.density()?;
    }
    if wants("noisy") {
        harness.noisy_neighbour()?;
    }
    if wants("edge") {
        harness.edge()?;
    }
    if wants("objects") {
        harness.objects()?;
    }
    if wants("fleet") {
        harness.fleet()?;
    }
    if wants("h2-attacks") {
        harness.h2_attacks(args.attacks.as_deref().unwrap_or_default())?;
    }
    if wants("soak") {
        harness.soak(args.soak)?;
    }
    harness.notes.push(format!(
        "The whole run took {:.0} s.",
        started.elapsed().as_secs_f64()
    ));
    harness.report()
}

impl Harness {
    fn new(root: PathBuf, duration: Duration, peers: bool) -> anyhow::Result<Harness> {
        let tools = root.join("benches/.tools");
        let work = root.join("target/bench");
        std::fs::create_dir_all(&work)?;
        let tools = Tools::install(&tools, peers)?;
        Ok(Harness {
            miniflare: tools.miniflare,
            outpost: root.join("target/release/outpost"),
            wrk_script: root.join("benches/load/report.lua"),
            root,
            work,
            duration,
            wasmtime: tools.wasmtime,
            workerd: tools.workerd,
            rows: Vec::new(),
            soak: Vec::new(),
            h2_attacks: Vec::new(),
            notes: tools.notes,
            partial: false,
        })
    }

    fn wasm(&self, name: &str) -> PathBuf {
        self.root
            .join("examples/target/wasm32-wasip2/release")
            .join(format!("{name}.wasm"))
    }

    /// Writes an outpost config with `tenants` and returns its path and address.
    fn outpost_config(
        &self,
        name: &str,
        data_dir: &Path,
        tenants: &str,
    ) -> anyhow::Result<(PathBuf, std::net::SocketAddr)> {
        let addr = free_addr()?;
        let dir = self.work.join(name);
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("node.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\ndata_dir = {:?}\nmax_instances = 1000\n\n[server]\nlisten = \"{addr}\"\n\n{tenants}",
                data_dir.display().to_string()
            ),
        )?;
        Ok((config, addr))
    }

    fn start_outpost(
        &self,
        name: &str,
        config: &Path,
        addr: std::net::SocketAddr,
        host: &str,
    ) -> anyhow::Result<(Server, Duration)> {
        let args = vec![
            "serve".to_string(),
            "--config".to_string(),
            config.display().to_string(),
        ];
        Server::start(
            name,
            addr,
            host,
            &self.outpost,
            &args,
            &self.work.join(format!("{name}.log")),
        )
    }

    fn start_wasmtime(&self, name: &str, reuse: Option<u32>) -> anyhow::Result<(Server, Duration)> {
        let addr = free_addr()?;
        // `-S cli`: Rust std imports wasi:cli/environment, which the proxy world lacks. The
        // pooling flags are serve's best for fresh instances, and the ones outpost uses.
        let mut args: Vec<String> = [
            "serve",
            "-S",
            "cli",
            "-O",
            "pooling-allocator=y",
            "-O",
            "pooling-memory-keep-resident=4194304",
            "-O",
            "pooling-table-keep-resident=262144",
            "-O",
            "pooling-pagemap-scan=auto",
            "-C",
            "cache=y",
            "--addr",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(addr.to_string());
        if let Some(count) = reuse {
            args.extend(["--max-instance-reuse-count".into(), count.to_string()]);
        }
        args.push(self.wasm("hello").display().to_string());
        Server::start(
            name,
            addr,
            "localhost",
            &self.wasmtime,
            &args,
            &self.work.join("wasmtime.log"),
        )
    }

    fn start_workerd(&self, workerd: &Path) -> anyhow::Result<(Server, Duration)> {
        let addr = free_addr()?;
        let args = vec![
            "serve".to_string(),
            self.root
                .join("benches/workerd/hello.capnp")
                .display()
                .to_string(),
            "--socket-addr".to_string(),
            format!("http={addr}"),
        ];
        Server::start(
            "workerd",
            addr,
            "localhost",
            workerd,
            &args,
            &self.work.join("workerd.log"),
        )
    }

    fn start_native(&self) -> anyhow::Result<(Server, Duration)> {
        let addr = free_addr()?;
        let me = std::env::current_exe()?;
        Server::start(
            "native hyper",
            addr,
            "localhost",
            &me,
            &["native-hello".into(), addr.to_string()],
            &self.work.join("native.log"),
        )
    }

    /// Warms up, then measures `host` on `server`.
    fn measure(&self, server: &Server, host: &str, path: &str) -> anyhow::Result<Measured> {
        self.measure_shaped(server, host, path, Shape::default())
    }

    /// Warms up, then measures `host` on `server` with requests of `shape`.
    fn measure_shaped(
        &self,
        server: &Server,
        host: &str,
        path: &str,
        shape: Shape,
    ) -> anyhow::Result<Measured> {
        let url = format!("http://{}{path}", server.addr);
        load::run(&self.wrk_script, &url, host, CONNECTIONS, WARMUP, shape)?;
        load::run(
            &self.wrk_script,
            &url,
            host,
            CONNECTIONS,
            self.duration,
            shape,
        )
    }

    fn record_load(
        &mut self,
        scenario: &'static str,
        label: &str,
        server: &Server,
        measured: Measured,
    ) {
        println!(
            "  {scenario:>6} {label:<28} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}",
            measured.rps, measured.p50_ms, measured.p99_ms, measured.errors
        );
        self.rows.push(Row {
            scenario,
            server: label.to_string(),
            load: Some(measured),
            startup_ms: None,
            rss_mib: server.peak_rss_mib(),
        });
    }

    fn start_peer(&self, peer: &Peer) -> anyhow::Result<(Server, Duration)> {
        match peer {
            Peer::Outpost(config) => {
                // A fresh port each run, written into the config.
                let text = std::fs::read_to_string(config)?;
                let addr = free_addr()?;
                let listen = text
                    .lines()
                    .find(|l| l.starts_with("listen"))
                    .unwrap_or_default();
                std::fs::write(
                    config,
                    text.replace(listen, &format!("listen = \"{addr}\"")),
                )?;
                self.start_outpost("outpost-cold", config, addr, "localhost")
            }
            Peer::Wasmtime => self.start_wasmtime("wasmtime-cold", None),
            Peer::Workerd(workerd) => self.start_workerd(workerd),
        }
    }
}
