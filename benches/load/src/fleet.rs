//! The fleet scenario: three outpost nodes on a three-server NATS JetStream cluster
//! (`sync_interval: always`). Deploy propagation (admin call on one node → all three
//! serve the new version), global KV write latency beside a local sled write, global
//! cached reads beside local sled reads under load, how stale another node's read is
//! after a write, and the node's memory with the fleet on.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use outpost_fleet::testing::NatsCluster;

use crate::servers::{Server, free_addr, request};
use crate::{ADMIN_TOKEN, ADMIN_TOKEN_ENV, Harness};

const DEPLOYS: usize = 22;
const WRITES: usize = 300;
const STALENESS_SAMPLES: usize = 100;

struct FleetNode {
    server: Server,
    admin: SocketAddr,
}

impl Harness {
    pub(crate) fn fleet(&mut self) -> anyhow::Result<()> {
        println!("fleet: three nodes on a three-server NATS JetStream cluster");
        let runtime = tokio::runtime::Runtime::new()?;
        let cluster = runtime.block_on(NatsCluster::start(3));
        let nodes = (0..3)
            .map(|i| self.start_fleet_node(&cluster, i))
            .collect::<anyhow::Result<Vec<_>>>()?;

        // Deploy propagation: the admin call on node 0 until all three serve it.
        let (hello, echo) = (
            std::fs::read(self.wasm("hello"))?,
            std::fs::read(self.wasm("echo"))?,
        );
        let mut propagation = Vec::new();
        for i in 0..DEPLOYS {
            let (wasm, marker): (&[u8], &[u8]) = if i % 2 == 0 {
                (&echo, b"\"method\"")
            } else {
                (&hello, b"hello from outpost")
            };
            let started = Instant::now();
            let (status, body) = request(
                nodes[0].admin,
                "PUT",
                "admin",
                "/tenants/app/component",
                &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
                wasm,
            )?;
            if status != 200 {
                bail!(
                    "deploy {i} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            for node in &nodes {
                wait_for(node.server.addr, "app.test", "/", marker)?;
            }
            propagation.push(started.elapsed().as_secs_f64() * 1e3);
        }
        // The first deploy of each of the two components compiles it on every node; the
        // rest hit each node's compile cache, as redeploys and rollbacks do.
        let cold: Vec<f64> = propagation.drain(..2).collect();
        let (p50, p99) = percentiles(&mut propagation);
        self.notes.push(format!(
            "fleet: deploy propagation (admin call on one node → all three serving the new version) over {} deploys of already-compiled components: p50 {p50:.0} ms, p99 {p99:.0} ms; the first deploy of each new component, which compiles it on all three nodes sharing one core: {:.0} and {:.0} ms.",
            propagation.len(),
            cold[0],
            cold[1]
        ));

        // Write latency, one write at a time: global (acknowledged by the hub's quorum,
        // fsynced) beside local sled (fsynced).
        let a = nodes[0].server.addr;
        for (label, host) in [("global", "global.test"), ("sled", "local.test")] {
            let mut latencies = Vec::new();
            for i in 0..WRITES {
                let started = Instant::now();
                let (status, _) =
                    request(a, "PUT", host, &format!("/put?key=w{i}"), &[], b"value")?;
                if status != 200 {
                    bail!("{label} write {i} answered {status}");
                }
                latencies.push(started.elapsed().as_secs_f64() * 1e3);
            }
            let (p50, p99) = percentiles(&mut latencies);
            self.notes.push(format!(
                "fleet: {label} KV write (HTTP request through the guest, one at a time, {WRITES} writes): p50 {p50:.2} ms, p99 {p99:.2} ms."
            ));
        }

        // Reads under load: a cached global key beside a local sled key, same node.
        for host in ["global.test", "local.test"] {
            let (status, _) = request(a, "PUT", host, "/put?key=hot", &[], b"hot value")?;
            if status != 200 {
                bail!("seeding {host} answered {status}");
            }
        }
        let global = self.measure(&nodes[0].server, "global.test", "/get?key=hot")?;
        self.record_load(
            "fleet",
            "outpost: global KV read (cached)",
            &nodes[0].server,
            global,
        );
        let local = self.measure(&nodes[0].server, "local.test", "/get?key=hot")?;
        self.record_load("fleet", "outpost: sled KV read", &nodes[0].server, local);

        // Staleness: a write acknowledged on node 0, polled on node 2 until it shows.
        let c = nodes[2].server.addr;
        let (status, _) = request(c, "GET", "global.test", "/get?key=stale", &[], b"")?;
        if status != 404 && status != 200 {
            bail!("reading the staleness key answered {status}");
        }
        let mut staleness = Vec::new();
        for i in 0..STALENESS_SAMPLES {
            let value = format!("v{i}");
            let (status, _) = request(
                a,
                "PUT",
                "global.test",
                "/put?key=stale",
                &[],
                value.as_bytes(),
            )?;
            if status != 200 {
                bail!("staleness write {i} answered {status}");
            }
            let acked = Instant::now();
            wait_for(c, "global.test", "/get?key=stale", value.as_bytes())?;
            staleness.push(acked.elapsed().as_secs_f64() * 1e3);
        }
        let (p50, p99) = percentiles(&mut staleness);
        self.notes.push(format!(
            "fleet: staleness on another node (write acknowledged on node 0 → node 2's read returns it; the key is cached on node 2 with a 60 s TTL, so the watch is what updates it; {STALENESS_SAMPLES} samples): p50 {p50:.1} ms, p99 {p99:.1} ms."
        ));
        self.notes.push(format!(
            "fleet: node RSS with the fleet on (3 tenants, after the runs above): {:.1} MiB.",
            nodes[0].server.rss_mib()
        ));
        drop(nodes);
        drop(cluster);
        Ok(())
    }

    fn start_fleet_node(&self, cluster: &NatsCluster, i: usize) -> anyhow::Result<FleetNode> {
        let admin = free_addr()?;
        let mut urls = cluster.urls();
        urls.rotate_left(i);
        let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
        let wasm = |name: &str| self.wasm(name).display().to_string();
        let data = self.work.join(format!("fleet/node{i}/data"));
        let _ = std::fs::remove_dir_all(&data);
        let tenants = format!(
            "[server.admin]\nlisten = \"{admin}\"\ntoken_env = \"{ADMIN_TOKEN_ENV}\"\n\n\
             [fleet]\nnats = [{urls}]\nname = \"bench\"\nreplicas = 3\n\n\
             [[tenant]]\nname = \"app\"\ncomponent = {hello:?}\nroutes = [\"app.test\"]\n\n\
             [[tenant]]\nname = \"global\"\ncomponent = {counter:?}\nroutes = [\"global.test\"]\n\
             kv = {{ COUNTS = {{ backend = \"global\", cache_ttl = \"60s\" }} }}\n\n\
             [[tenant]]\nname = \"local\"\ncomponent = {counter:?}\nroutes = [\"local.test\"]\n\
             kv = {{ COUNTS = \"sled\" }}\n",
            urls = urls.join(", "),
            hello = wasm("hello"),
            counter = wasm("kv-counter"),
        );
        let (config, addr) = self.outpost_config(&format!("fleet/node{i}"), &data, &tenants)?;
        // Each node its own id: the fleet's status is by node.
        let text = std::fs::read_to_string(&config)?;
        std::fs::write(
            &config,
            text.replacen("[node]\n", &format!("[node]\nid = \"node-{i}\"\n"), 1),
        )?;
        let (server, _) = self
            .start_outpost(&format!("outpost-fleet-{i}"), &config, addr, "app.test")
            .with_context(|| format!("fleet node {i}"))?;
        Ok(FleetNode { server, admin })
    }
}

/// Polls `path` until its body contains `marker` (up to 30 s).
fn wait_for(addr: SocketAddr, host: &str, path: &str, marker: &[u8]) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let (status, body) = request(addr, "GET", host, path, &[], b"")?;
        if status == 200 && body.windows(marker.len()).any(|w| w == marker) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "{host}{path} on {addr} did not show {:?} within 30 s",
                String::from_utf8_lossy(marker)
            );
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// p50 and p99 of `samples` (sorted in place).
fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}
