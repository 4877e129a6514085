//! outpost's load harness: outpost beside `wasmtime serve`, workerd and a native hyper
//! server, on one machine, in one run, each server pinned to core 0 and wrk to core 1.
//!
//! `cargo xtask bench` builds everything in release mode, installs the peers into
//! `benches/.tools/` and runs this. Results go to `target/bench/results.json` and, as
//! Markdown tables, into `docs/benchmarks.md`. See that page for what each scenario means.
//!
//! `outpost-bench native-hello ADDR` is the floor server itself (started by the harness).

mod load;
mod native;
mod servers;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use load::{CONNECTIONS, Measured};
use servers::{Server, free_addr, request_status};

/// The wasmtime release `wasmtime serve` comes from: the one outpost embeds.
const WASMTIME_VERSION: &str = "48.0.8";
/// The workerd release from npm.
const WORKERD_VERSION: &str = "1.20261117.1";
/// Miniflare runs workerd with local KV and D1 (the stores scenario's peer); it brings
/// the workerd release it was built with.
const MINIFLARE_VERSION: &str = "4.20260730.0";
/// Load before each measurement, so JIT-warm peers and cold caches are not compared.
const WARMUP: Duration = Duration::from_secs(2);
/// Runs per start-up measurement; the median is reported.
const START_RUNS: usize = 5;

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
    notes: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("native-hello") {
        let addr = args
            .get(1)
            .context("usage: outpost-bench native-hello ADDR")?;
        return native::serve(addr.parse()?);
    }
    let mut only: Option<Vec<String>> = None;
    let mut duration = Duration::from_secs(10);
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--only" => {
                only = Some(
                    iter.next()
                        .context("--only needs a list")?
                        .split(',')
                        .map(String::from)
                        .collect(),
                )
            }
            "--duration" => {
                duration =
                    Duration::from_secs(iter.next().context("--duration needs seconds")?.parse()?)
            }
            other => bail!(
                "unknown argument {other}; use --only hello,stores,router,cold,density,noisy and --duration SECONDS"
            ),
        }
    }
    let wants = |name: &str| {
        only.as_ref()
            .is_none_or(|list| list.iter().any(|s| s == name))
    };

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()?;
    let mut harness = Harness::new(root, duration)?;
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
    harness.notes.push(format!(
        "The whole run took {:.0} s.",
        started.elapsed().as_secs_f64()
    ));
    harness.report()
}

impl Harness {
    fn new(root: PathBuf, duration: Duration) -> anyhow::Result<Harness> {
        let tools = root.join("benches/.tools");
        let work = root.join("target/bench");
        std::fs::create_dir_all(&work)?;
        let mut notes = Vec::new();
        ensure_wrk()?;
        let wasmtime = tools.join("bin/wasmtime");
        if !wasmtime.exists() {
            println!(
                "installing wasmtime-cli {WASMTIME_VERSION} into {} (a few minutes, once)",
                tools.display()
            );
            run(Command::new("cargo")
                .args(["install", "--locked", "--root"])
                .arg(&tools)
                .arg(format!("wasmtime-cli@{WASMTIME_VERSION}")))?;
        }
        let mut workerd = Some(tools.join("node_modules/.bin/workerd"));
        if !workerd.as_ref().is_some_and(|w| w.exists()) {
            println!(
                "installing workerd {WORKERD_VERSION} from npm into {}",
                tools.display()
            );
            let installed = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&tools)
                .arg(format!("workerd@{WORKERD_VERSION}"))
                .status();
            if !installed.is_ok_and(|s| s.success())
                || !workerd.as_ref().is_some_and(|w| w.exists())
            {
                notes.push(
                    "workerd could not be installed (is npm on PATH?); its rows are missing."
                        .into(),
                );
                workerd = None;
            }
        }
        let mut miniflare = Some(tools.join("node_modules/miniflare/package.json"));
        if !miniflare.as_ref().is_some_and(|m| m.exists()) {
            println!(
                "installing miniflare {MINIFLARE_VERSION} from npm into {}",
                tools.display()
            );
            let installed = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&tools)
                .arg(format!("miniflare@{MINIFLARE_VERSION}"))
                .status();
            if !installed.is_ok_and(|s| s.success())
                || !miniflare.as_ref().is_some_and(|m| m.exists())
            {
                notes.push(
                    "miniflare could not be installed (is npm on PATH?); the stores scenario has no workerd rows."
                        .into(),
                );
                miniflare = None;
            }
        }
        Ok(Harness {
            miniflare: miniflare.map(|_| tools.clone()),
            outpost: root.join("target/release/outpost"),
            wrk_script: root.join("benches/load/report.lua"),
            root,
            work,
            duration,
            wasmtime,
            workerd,
            rows: Vec::new(),
            notes,
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
        let url = format!("http://{}{path}", server.addr);
        load::run(&self.wrk_script, &url, host, CONNECTIONS, WARMUP)?;
        load::run(&self.wrk_script, &url, host, CONNECTIONS, self.duration)
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

    /// hello: `GET /` → 200 text, every server.
    fn hello(&mut self) -> anyhow::Result<()> {
        println!(
            "hello: {} s per server after {} s warm-up, {CONNECTIONS} connections",
            self.duration.as_secs(),
            WARMUP.as_secs()
        );
        let hello = self.wasm("hello").display().to_string();
        let (config, addr) = self.outpost_config(
            "hello",
            &self.work.join("hello/data"),
            &format!(
                "[[tenant]]\nname = \"hello\"\ncomponent = {hello:?}\nroutes = [\"/\"]\n\n\
                 [[tenant]]\nname = \"hello-reuse\"\ncomponent = {hello:?}\nroutes = [\"reuse.test\"]\nreuse = true\n"
            ),
        )?;
        {
            let (outpost, _) = self.start_outpost("outpost", &config, addr, "localhost")?;
            let fresh = self.measure(&outpost, "localhost", "/")?;
            self.record_load("hello", "outpost", &outpost, fresh);
            let reuse = self.measure(&outpost, "reuse.test", "/")?;
            self.record_load("hello", "outpost (reuse)", &outpost, reuse);
        }
        for (label, reuse) in [
            ("wasmtime serve", None),
            ("wasmtime serve (reuse 128)", Some(128)),
        ] {
            let (server, _) = self.start_wasmtime(label, reuse)?;
            let measured = self.measure(&server, "localhost", "/")?;
            self.record_load("hello", label, &server, measured);
        }
        if let Some(workerd) = self.workerd.clone() {
            let (server, _) = self.start_workerd(&workerd)?;
            let measured = self.measure(&server, "localhost", "/")?;
            self.record_load("hello", "workerd", &server, measured);
        }
        let (native, _) = self.start_native()?;
        let measured = self.measure(&native, "localhost", "/")?;
        self.record_load("hello", "native hyper (floor)", &native, measured);
        Ok(())
    }

    /// stores: a KV read, a SQL point query and a 1 MiB blob download, beside hello on
    /// the same node, with the embedded stores (sled, SQLite, a directory).
    fn stores(&mut self) -> anyhow::Result<()> {
        println!("stores: KV read, SQL point query, 1 MiB blob download, beside hello");
        let wasm = |name: &str| self.wasm(name).display().to_string();
        let tenants = format!(
            "[[tenant]]\nname = \"hello\"\ncomponent = {:?}\nroutes = [\"hello.test\"]\n\n\
             [[tenant]]\nname = \"kv\"\ncomponent = {:?}\nroutes = [\"kv.test\"]\nkv = [\"COUNTS\"]\n\n\
             [[tenant]]\nname = \"sql\"\ncomponent = {:?}\nroutes = [\"sql.test\"]\nsql = [\"DB\"]\n\n\
             [[tenant]]\nname = \"blob\"\ncomponent = {:?}\nroutes = [\"blob.test\"]\nblob = {{ FILES = {{}} }}\n",
            wasm("hello"),
            wasm("kv-counter"),
            wasm("sql-todo"),
            wasm("blob-files"),
        );
        let data = self.work.join("stores/data");
        let _ = std::fs::remove_dir_all(&data);
        let (config, addr) = self.outpost_config("stores", &data, &tenants)?;
        let (outpost, _) = self.start_outpost("outpost (stores)", &config, addr, "hello.test")?;
        let seed = |method, host, path, body: &[u8], expect: u16| -> anyhow::Result<()> {
            let status = request_status(addr, method, host, path, body)?;
            if status != expect {
                bail!("seeding {host}{path} answered {status}, expected {expect}");
            }
            Ok(())
        };
        seed("PUT", "kv.test", "/put?key=greeting", b"hello from kv", 200)?;
        for i in 0..100 {
            seed(
                "POST",
                "sql.test",
                "/todos",
                format!(r#"{{"title":"todo {i}"}}"#).as_bytes(),
                201,
            )?;
        }
        let mebibyte: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        seed("PUT", "blob.test", "/files/one-mib.bin", &mebibyte, 201)?;
        for (label, host, path) in [
            ("outpost: hello", "hello.test", "/"),
            ("outpost: KV read", "kv.test", "/get?key=greeting"),
            ("outpost: SQL point query", "sql.test", "/todos/42"),
            (
                "outpost: 1 MiB blob download",
                "blob.test",
                "/files/one-mib.bin",
            ),
        ] {
            let measured = self.measure(&outpost, host, path)?;
            self.record_load("stores", label, &outpost, measured);
        }
        drop(outpost);
        if let Some(tools) = self.miniflare.clone() {
            // Node resolves `miniflare` from the script's folder, so the script runs there.
            let script = tools.join("stores.mjs");
            std::fs::copy(self.root.join("benches/workerd/stores.mjs"), &script)?;
            let addr = free_addr()?;
            let (server, _) = Server::start(
                "miniflare",
                addr,
                "localhost",
                Path::new("node"),
                &[script.display().to_string(), addr.to_string()],
                &self.work.join("miniflare.log"),
            )?;
            for (label, path) in [
                ("workerd (miniflare): hello", "/hello"),
                ("workerd (miniflare): KV read", "/get?key=greeting"),
                ("workerd (miniflare): SQL point query", "/todos/42"),
            ] {
                let measured = self.measure(&server, "localhost", path)?;
                self.record_load("stores", label, &server, measured);
            }
        }
        Ok(())
    }

    /// router: `examples/router` proxying to a local origin (the native hyper server, on
    /// the same core), beside that origin served directly.
    fn router(&mut self) -> anyhow::Result<()> {
        println!("router: examples/router in front of a local origin, beside the origin alone");
        let (origin, _) = self.start_native()?;
        let origin_url = format!("http://{}", origin.addr);
        let router = self.wasm("router").display().to_string();
        let tenants = format!(
            "[[tenant]]\nname = \"router\"\ncomponent = {router:?}\nroutes = [\"/\"]\n\
             outbound = [{origin_url:?}]\nvars = {{ ROUTES = \"/={origin_url}\" }}\n"
        );
        let (config, addr) =
            self.outpost_config("router", &self.work.join("router/data"), &tenants)?;
        {
            let (outpost, _) =
                self.start_outpost("outpost (router)", &config, addr, "localhost")?;
            let measured = self.measure(&outpost, "localhost", "/")?;
            self.record_load("router", "outpost router → origin", &outpost, measured);
        }
        let measured = self.measure(&origin, "localhost", "/")?;
        self.record_load("router", "origin directly", &origin, measured);
        Ok(())
    }

    /// cold start: process start to first 200, with warm caches, median of several runs.
    fn cold_start(&mut self) -> anyhow::Result<()> {
        println!("cold start: process start to first 200, median of {START_RUNS}");
        let hello = self.wasm("hello").display().to_string();
        let data = self.work.join("cold/data");
        let (config, _) = self.outpost_config(
            "cold",
            &data,
            &format!("[[tenant]]\nname = \"hello\"\ncomponent = {hello:?}\nroutes = [\"/\"]\n"),
        )?;
        let mut peers = vec![
            ("outpost (warm compile cache)", Peer::Outpost(config)),
            ("wasmtime serve (-C cache=y)", Peer::Wasmtime),
        ];
        if let Some(workerd) = &self.workerd {
            peers.push(("workerd", Peer::Workerd(workerd.clone())));
        }
        let mut rows = Vec::new();
        for (label, peer) in &peers {
            drop(self.start_peer(peer)?); // fills compile caches
            let mut times = Vec::new();
            let mut rss = 0.0;
            for _ in 0..START_RUNS {
                let (server, took) = self.start_peer(peer)?;
                rss = server.rss_mib();
                times.push(took.as_secs_f64() * 1e3);
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            println!("  {label:<30} {median:>7.1} ms");
            rows.push(Row {
                scenario: "cold",
                server: label.to_string(),
                load: None,
                startup_ms: Some(median),
                rss_mib: rss,
            });
        }
        self.rows.extend(rows);
        Ok(())
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

    /// density: start-up time and memory with 1, 100 and 1,000 distinct tenants.
    fn density(&mut self) -> anyhow::Result<()> {
        println!("density: distinct tenants (hello.wasm, each made unique by a custom section)");
        let base = std::fs::read(self.wasm("hello"))?;
        let wasm_dir = self.work.join("density/wasm");
        std::fs::create_dir_all(&wasm_dir)?;
        for i in 0..1000 {
            let path = wasm_dir.join(format!("t{i}.wasm"));
            if !path.exists() {
                std::fs::write(&path, with_custom_section(&base, i))?;
            }
        }
        for count in [1usize, 100, 1000] {
            let tenants: String = (0..count)
                .map(|i| format!("[[tenant]]\nname = \"t{i}\"\ncomponent = {:?}\nroutes = [\"t{i}.test\"]\n\n", wasm_dir.join(format!("t{i}.wasm")).display().to_string()))
                .collect();
            let last_host = format!("t{}.test", count - 1);
            // 1,000 cold compiles take minutes on 2 cores: that cache is kept between runs.
            let cold_data = self.work.join(format!("density/data-{count}"));
            let cold_run = count <= 100 || !cold_data.exists();
            if count <= 100 {
                let _ = std::fs::remove_dir_all(&cold_data);
            }
            let (config, addr) =
                self.outpost_config(&format!("density-{count}"), &cold_data, &tenants)?;
            if cold_run {
                let (server, took) = self.start_outpost("density", &config, addr, &last_host)?;
                let row = Row {
                    scenario: "density",
                    server: format!("{count} tenants, cold cache"),
                    load: None,
                    startup_ms: Some(took.as_secs_f64() * 1e3),
                    rss_mib: server.rss_mib(),
                };
                println!(
                    "  {:<28} {:>8.0} ms  {:>6.0} MiB",
                    row.server,
                    took.as_secs_f64() * 1e3,
                    row.rss_mib
                );
                self.rows.push(row);
            }
            let (server, took) = self.start_outpost("density", &config, addr, &last_host)?;
            let row = Row {
                scenario: "density",
                server: format!("{count} tenants, warm cache"),
                load: None,
                startup_ms: Some(took.as_secs_f64() * 1e3),
                rss_mib: server.rss_mib(),
            };
            println!(
                "  {:<28} {:>8.0} ms  {:>6.0} MiB",
                row.server,
                took.as_secs_f64() * 1e3,
                row.rss_mib
            );
            self.rows.push(row);
        }
        Ok(())
    }

    /// noisy neighbour: hello's throughput while another tenant's `/spin` takes all it can.
    fn noisy_neighbour(&mut self) -> anyhow::Result<()> {
        println!(
            "noisy neighbour: hello alone, then beside 8 connections looping on another tenant's /spin"
        );
        let (hello, limits) = (
            self.wasm("hello").display().to_string(),
            self.wasm("limits").display().to_string(),
        );
        let (config, addr) = self.outpost_config(
            "noisy",
            &self.work.join("noisy/data"),
            &format!(
                "[[tenant]]\nname = \"hello\"\ncomponent = {hello:?}\nroutes = [\"hello.test\"]\n\n\
                 [[tenant]]\nname = \"spin\"\ncomponent = {limits:?}\nroutes = [\"spin.test\"]\nlimits = {{ cpu = \"50ms\" }}\n"
            ),
        )?;
        let (server, _) = self.start_outpost("outpost-noisy", &config, addr, "hello.test")?;
        let alone = self.measure(&server, "hello.test", "/")?;
        self.record_load("noisy", "hello alone", &server, alone);
        let spin_url = format!("http://{addr}/spin");
        let spinner = load::spawn(
            &self.wrk_script,
            &spin_url,
            "spin.test",
            8,
            self.duration + WARMUP + Duration::from_secs(2),
        )?;
        std::thread::sleep(Duration::from_secs(1));
        let beside = self.measure(&server, "hello.test", "/")?;
        self.record_load("noisy", "hello beside /spin", &server, beside);
        let spin = load::finish(spinner)?;
        self.record_load("noisy", "the /spin neighbour (503s)", &server, spin);
        Ok(())
    }

    fn report(&self) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(&serde_json::json!({
            "date": command_text("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            "machine": machine(),
            "rows": self.rows,
            "notes": self.notes,
        }))?;
        std::fs::write(self.work.join("results.json"), json)?;
        let markdown = self.markdown();
        println!("\n{markdown}");
        let page = self.root.join("docs/benchmarks.md");
        let text = std::fs::read_to_string(&page).unwrap_or_default();
        let (start, end) = ("<!-- results:start -->", "<!-- results:end -->");
        let updated = match (text.find(start), text.find(end)) {
            (Some(s), Some(e)) if s < e => {
                format!("{}{start}\n{markdown}{}", &text[..s], &text[e..])
            }
            _ => format!("{text}\n{start}\n{markdown}{end}\n"),
        };
        std::fs::write(&page, updated)?;
        println!(
            "results: {} and {}",
            self.work.join("results.json").display(),
            page.display()
        );
        Ok(())
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "Run on {}: {}.\n",
            command_text("date", &["-u", "+%Y-%m-%d"]),
            machine()
        );
        let rows = |scenario| self.rows.iter().filter(move |r| r.scenario == scenario);
        let outpost_rps = rows("hello")
            .find(|r| r.server == "outpost")
            .and_then(|r| r.load.as_ref())
            .map(|l| l.rps);
        if rows("hello").next().is_some() {
            let _ = writeln!(
                md,
                "### hello: `GET /` → 200, {CONNECTIONS} connections, {} s\n",
                self.duration.as_secs()
            );
            let _ = writeln!(
                md,
                "| server | req/s | p50 ms | p99 ms | p99.9 ms | errors | peak RSS MiB | outpost (fresh) ÷ this |\n|---|---:|---:|---:|---:|---:|---:|---:|"
            );
            for row in rows("hello") {
                let load = row.load.as_ref().expect("hello rows carry load");
                let ratio = outpost_rps.map_or("-".into(), |o| format!("{:.2}x", o / load.rps));
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.0} | {ratio} |",
                    row.server,
                    load.rps,
                    load.p50_ms,
                    load.p99_ms,
                    load.p999_ms,
                    load.errors,
                    row.rss_mib
                );
            }
            md.push('\n');
        }
        if rows("stores").next().is_some() {
            // Labels are "server: request".
            let split = |label: &str| -> (String, String) {
                let (server, request) = label.split_once(": ").unwrap_or(("", label));
                (server.to_string(), request.to_string())
            };
            let rps_of = |server: &str, request: &str| {
                rows("stores")
                    .find(|r| split(&r.server) == (server.to_string(), request.to_string()))
                    .and_then(|r| r.load.as_ref())
                    .map(|l| l.rps)
            };
            let _ = writeln!(
                md,
                "### stores: embedded stores (outpost: sled, SQLite, a directory; workerd: Miniflare's local KV and D1), {CONNECTIONS} connections, {} s\n\n\
                 | server | request | req/s | p50 ms | p99 ms | p99.9 ms | errors | ÷ its hello | outpost ÷ this | peak RSS MiB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
                self.duration.as_secs()
            );
            for row in rows("stores") {
                let load = row.load.as_ref().expect("stores rows carry load");
                let (server, request) = split(&row.server);
                let of_hello = rps_of(&server, "hello")
                    .map_or("-".into(), |h| format!("{:.0}%", 100.0 * load.rps / h));
                let versus = match (server.as_str(), rps_of("outpost", &request)) {
                    ("outpost", _) | (_, None) => "-".to_string(),
                    (_, Some(ours)) => format!("{:.2}x", ours / load.rps),
                };
                let _ = writeln!(
                    md,
                    "| {server} | {request} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {of_hello} | {versus} | {:.0} |",
                    load.rps, load.p50_ms, load.p99_ms, load.p999_ms, load.errors, row.rss_mib
                );
            }
            md.push('\n');
        }
        if rows("router").next().is_some() {
            let _ = writeln!(
                md,
                "### router: `examples/router` proxying `GET /` to a local origin (native hyper, same core), {CONNECTIONS} connections, {} s\n\n\
                 | server | req/s | p50 ms | p99 ms | p99.9 ms | errors | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|",
                self.duration.as_secs()
            );
            for row in rows("router") {
                let load = row.load.as_ref().expect("router rows carry load");
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.0} |",
                    row.server,
                    load.rps,
                    load.p50_ms,
                    load.p99_ms,
                    load.p999_ms,
                    load.errors,
                    row.rss_mib
                );
            }
            md.push('\n');
        }
        if rows("cold").next().is_some() {
            let _ = writeln!(
                md,
                "### cold start: process start to first 200 (median of {START_RUNS})\n\n| server | ms | RSS MiB | this ÷ outpost |\n|---|---:|---:|---:|"
            );
            let outpost_ms = rows("cold").next().and_then(|r| r.startup_ms);
            for row in rows("cold") {
                let ms = row.startup_ms.unwrap_or(0.0);
                let ratio = outpost_ms.map_or("-".into(), |o| format!("{:.2}x", ms / o));
                let _ = writeln!(
                    md,
                    "| {} | {ms:.1} | {:.0} | {ratio} |",
                    row.server, row.rss_mib
                );
            }
            md.push('\n');
        }
        if rows("density").next().is_some() {
            let _ = writeln!(
                md,
                "### density: outpost start to the last tenant's first 200\n\n| tenants | ms | RSS MiB |\n|---|---:|---:|"
            );
            for row in rows("density") {
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.0} |",
                    row.server,
                    row.startup_ms.unwrap_or(0.0),
                    row.rss_mib
                );
            }
            md.push('\n');
        }
        if rows("noisy").next().is_some() {
            let _ = writeln!(
                md,
                "### noisy neighbour: hello while 8 connections loop on another tenant's `/spin` (cpu = 50ms)\n\n| load | req/s | p50 ms | p99 ms | p99.9 ms | errors | node peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|"
            );
            for row in rows("noisy") {
                let load = row.load.as_ref().expect("noisy rows carry load");
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.0} |",
                    row.server,
                    load.rps,
                    load.p50_ms,
                    load.p99_ms,
                    load.p999_ms,
                    load.errors,
                    row.rss_mib
                );
            }
            md.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(md, "{note}");
        }
        md
    }
}

/// `wasm` with a custom section appended, so each tenant's component hashes differently.
fn with_custom_section(wasm: &[u8], index: usize) -> Vec<u8> {
    fn leb128(mut value: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            out.push(if value == 0 { byte } else { byte | 0x80 });
            if value == 0 {
                return;
            }
        }
    }
    let name = b"outpost-bench";
    let payload = index.to_string();
    let mut section = Vec::new();
    leb128(name.len(), &mut section);
    section.extend_from_slice(name);
    section.extend_from_slice(payload.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    leb128(section.len(), &mut out);
    out.extend_from_slice(&section);
    out
}

fn ensure_wrk() -> anyhow::Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    println!("installing wrk from Debian's packages");
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get").args(["install", "-y", "-qq", "wrk"]))
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

fn command_text(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cores} cores ({cpu}), Linux {}, server on core 0, wrk on core 1",
        command_text("uname", &["-r"])
    )
}
