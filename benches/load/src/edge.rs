//! The edge scenario: cache hits and static files beside a guest-served hello on the same
//! node, nginx serving the same 10 KiB file on the same core, and the cache's memory per
//! cached byte.

use std::path::Path;

use anyhow::bail;

use crate::Harness;
use crate::servers::{Server, free_addr, request_status};
use crate::tools::ensure_nginx;

/// The static file measured, as in the issue: 10 KiB.
const FILE_BYTES: usize = 10 * 1024;
/// Distinct keys filled to measure memory per cached byte.
const FILL_KEYS: usize = 4000;

impl Harness {
    pub(crate) fn edge(&mut self) -> anyhow::Result<()> {
        println!("edge: cache hits and a 10 KiB static file beside hello; nginx on the same file");
        let public = self.work.join("edge/public");
        std::fs::create_dir_all(&public)?;
        let file: Vec<u8> = (0..FILE_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(public.join("file10k.txt"), &file)?;
        std::fs::write(public.join("index.html"), "<h1>bench</h1>")?;

        let (origin, _) = self.start_native()?;
        let wasm = |name: &str| self.wasm(name).display().to_string();
        let data = self.work.join("edge/data");
        let _ = std::fs::remove_dir_all(&data);
        let tenants = format!(
            "[[tenant]]\nname = \"hello\"\ncomponent = {hello:?}\nroutes = [\"hello.test\"]\n\n\
             [[tenant]]\nname = \"cached\"\ncomponent = {proxy:?}\nroutes = [\"cached.test\"]\n\
             outbound = [\"http://{origin}\"]\n\
             vars = {{ ORIGIN = \"http://{origin}\", CACHE_CONTROL = \"public, max-age=3600\" }}\n\
             cache = {{ enabled = true }}\n\n\
             [[tenant]]\nname = \"assets\"\ncomponent = {hello:?}\nroutes = [\"assets.test\"]\n\
             assets = {public:?}\n\n\
             [[tenant]]\nname = \"filler\"\ncomponent = {proxy:?}\nroutes = [\"filler.test\"]\n\
             outbound = [\"http://{origin}\"]\n\
             vars = {{ ORIGIN = \"http://{origin}\", CACHE_CONTROL = \"public, max-age=3600\" }}\n\
             cache = {{ enabled = true, max_size = \"128MiB\" }}\n",
            hello = wasm("hello"),
            proxy = wasm("cached-proxy"),
            origin = origin.addr,
            public = public.display().to_string(),
        );
        let (config, addr) = self.outpost_config("edge", &data, &tenants)?;
        let (outpost, _) = self.start_outpost("outpost (edge)", &config, addr, "hello.test")?;
        if request_status(addr, "GET", "cached.test", "/", b"")? != 200 {
            bail!("the cached proxy does not answer 200");
        }
        for (label, host, path) in [
            ("outpost: hello (guest)", "hello.test", "/"),
            ("outpost: cache hit", "cached.test", "/"),
            ("outpost: 10 KiB static file", "assets.test", "/file10k.txt"),
        ] {
            let measured = self.measure(&outpost, host, path)?;
            self.record_load("edge", label, &outpost, measured);
        }

        // Memory per cached byte: RSS before and after filling distinct 10 KiB keys.
        let before = outpost.rss_mib();
        for i in 0..FILL_KEYS {
            let status = request_status(addr, "GET", "filler.test", &format!("/10k?k={i}"), b"")?;
            if status != 200 {
                bail!("filling the cache: key {i} answered {status}");
            }
        }
        let after = outpost.rss_mib();
        let cached = (FILL_KEYS * FILE_BYTES) as f64;
        self.notes.push(format!(
            "edge: filling {FILL_KEYS} keys of 10 KiB ({:.1} MiB of bodies) grew outpost's RSS by {:.1} MiB: {:.2} bytes of memory per cached body byte.",
            cached / (1 << 20) as f64,
            after - before,
            (after - before) * (1 << 20) as f64 / cached
        ));
        drop(outpost);
        drop(origin);

        match ensure_nginx() {
            Ok(nginx) => {
                let (server, _) = self.start_nginx(&nginx, &public)?;
                let measured = self.measure(&server, "localhost", "/file10k.txt")?;
                self.record_load("edge", "nginx: 10 KiB static file", &server, measured);
            }
            Err(reason) => self.notes.push(format!("edge: no nginx row: {reason}")),
        }
        Ok(())
    }

    /// nginx with one worker on the server core, serving `root`.
    fn start_nginx(
        &self,
        nginx: &Path,
        root: &Path,
    ) -> anyhow::Result<(Server, std::time::Duration)> {
        let addr = free_addr()?;
        let dir = self.work.join("edge/nginx");
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\ndaemon off;\nuser root;\npid {pid};\nerror_log stderr warn;\n\
                 events {{ worker_connections 4096; }}\n\
                 http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  open_file_cache max=1000;\n\
                 client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fastcgi;\n\
                 uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
                 server {{ listen {addr}; root {root}; }}\n}}\n",
                pid = dir.join("nginx.pid").display(),
                dir = dir.display(),
                root = root.display(),
            ),
        )?;
        Server::start(
            "nginx",
            addr,
            "localhost",
            nginx,
            &[
                "-c".into(),
                conf.display().to_string(),
                "-e".into(),
                "stderr".into(),
            ],
            &self.work.join("nginx.log"),
        )
    }
}
