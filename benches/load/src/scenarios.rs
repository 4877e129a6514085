//! The scenarios: hello, stores, router, cold start, density, noisy neighbour. Each
//! starts its servers, measures them one after another and records rows.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;

use crate::load;

use crate::load::CONNECTIONS;
use crate::servers::{Server, free_addr, request_status};
use crate::{Harness, Peer, Row, START_RUNS, WARMUP};

impl Harness {
    /// hello: `GET /` → 200 text, every server.
    pub(crate) fn hello(&mut self) -> anyhow::Result<()> {
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
    pub(crate) fn stores(&mut self) -> anyhow::Result<()> {
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
    pub(crate) fn router(&mut self) -> anyhow::Result<()> {
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
    pub(crate) fn cold_start(&mut self) -> anyhow::Result<()> {
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

    /// density: start-up time and memory with 1, 100 and 1,000 distinct tenants.
    pub(crate) fn density(&mut self) -> anyhow::Result<()> {
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
    pub(crate) fn noisy_neighbour(&mut self) -> anyhow::Result<()> {
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
            load::Shape::default(),
        )?;
        std::thread::sleep(Duration::from_secs(1));
        let beside = self.measure(&server, "hello.test", "/")?;
        self.record_load("noisy", "hello beside /spin", &server, beside);
        let spin = load::finish(spinner)?;
        self.record_load("noisy", "the /spin neighbour (503s)", &server, spin);
        Ok(())
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
