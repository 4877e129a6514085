//! h2-attacks: the HTTP/2 attacks of docs/security.md, run against a release node from
//! another network namespace (another host, as far as the node's network stack can tell),
//! while a probe there sends a fixed 200 requests a second. The node has core 0; the
//! attacker and the probe share core 1, so a control run in which the attacker only
//! spins shows what sharing that core costs the probe.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;

use crate::h2attack::{AttackerReport, KINDS, PROBE_RATE, ProbeReport, parse_report};

const NAMESPACE: &str = "outpost-remote";
const NODE_IP: &str = "10.203.0.1";
const REMOTE_IP: &str = "10.203.0.2";
/// How long each attack (and the probe beside it) runs.
const ATTACK_SECONDS: u64 = 15;

/// One attack as the node and the probe lived through it.
#[derive(Debug, Serialize)]
pub struct AttackRow {
    pub attack: String,
    pub probe: ProbeReport,
    pub attacker: AttackerReport,
    /// Of the node's core, the share the node used while the attack ran.
    pub node_cpu_percent: f64,
    pub rss_before_mib: f64,
    pub rss_peak_mib: f64,
    pub rss_after_mib: f64,
    /// The node still answered 200 after the attack stopped.
    pub served_after: bool,
}

impl AttackRow {
    /// The row of the report's table (also what the harness prints as each attack ends).
    pub fn markdown(&self) -> String {
        format!(
            "| {} | {} / {} | {:.2} | {:.2} | {:.1} | {} | {} | {:.1} | {:.0} | {:.1} → {:.1} → {:.1} | {} |",
            self.attack,
            self.probe.ok,
            self.probe.sent,
            self.probe.p50_ms,
            self.probe.p99_ms,
            self.probe.max_ms,
            self.attacker.connections,
            self.attacker.closed_by_node,
            self.attacker.bytes as f64 / 1e6,
            self.node_cpu_percent,
            self.rss_before_mib,
            self.rss_peak_mib,
            self.rss_after_mib,
            if self.served_after { "yes" } else { "**no**" }
        )
    }
}

/// Another host for the attacker and the probe: a network namespace joined to the
/// node's by a veth pair. Removed on drop.
struct Remote;

impl Remote {
    fn create() -> anyhow::Result<Remote> {
        let _ = run("ip", &["netns", "del", NAMESPACE]);
        let node_cidr = format!("{NODE_IP}/24");
        let remote_cidr = format!("{REMOTE_IP}/24");
        let steps: [&[&str]; 7] = [
            &["netns", "add", NAMESPACE],
            &[
                "link",
                "add",
                "op-node",
                "type",
                "veth",
                "peer",
                "name",
                "op-remote",
            ],
            &["link", "set", "op-remote", "netns", NAMESPACE],
            &["addr", "add", &node_cidr, "dev", "op-node"],
            &["link", "set", "op-node", "up"],
            &[
                "-n",
                NAMESPACE,
                "addr",
                "add",
                &remote_cidr,
                "dev",
                "op-remote",
            ],
            &["-n", NAMESPACE, "link", "set", "op-remote", "up"],
        ];
        let remote = Remote;
        for step in steps {
            run("ip", step)?;
        }
        run("ip", &["-n", NAMESPACE, "link", "set", "lo", "up"])?;
        Ok(remote)
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and so the pair.
        let _ = run("ip", &["netns", "del", NAMESPACE]);
    }
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = std::process::Command::new(program).args(args).output()?;
    if !output.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// CPU seconds `pid` has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the first.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

impl crate::Harness {
    /// Runs `attacks` (all of [`KINDS`] when empty).
    pub(crate) fn h2_attacks(&mut self, attacks: &[String]) -> anyhow::Result<()> {
        let remote = Remote::create();
        let ip = match &remote {
            Ok(_) => NODE_IP,
            Err(e) => {
                self.notes.push(format!(
                    "h2-attacks ran over loopback, not from another network namespace ({e}): run the bench as root for the namespace."
                ));
                "127.0.0.1"
            }
        };
        let port = std::net::TcpListener::bind((ip, 0))?.local_addr()?.port();
        let addr: SocketAddr = format!("{ip}:{port}").parse()?;
        let dir = self.work.join("h2-attacks");
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("node.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\ndata_dir = {:?}\n\n[server]\nlisten = \"{addr}\"\n\n\
                 [[tenant]]\nname = \"hello\"\ncomponent = {:?}\nroutes = [\"/\"]\n",
                dir.join("data").display().to_string(),
                self.wasm("hello").display().to_string()
            ),
        )?;
        let (server, _) = self.start_outpost("outpost-h2-attacks", &config, addr, "x")?;
        println!(
            "h2-attacks: node on {addr} (core 0), attacker and a {PROBE_RATE} req/s probe {} (core 1), {ATTACK_SECONDS} s each",
            if remote.is_ok() {
                "in another network namespace"
            } else {
                "on loopback"
            }
        );
        let me = std::env::current_exe()?;
        let side = |args: &[String]| {
            let mut command = if remote.is_ok() {
                let mut c = std::process::Command::new("ip");
                c.args([
                    "netns",
                    "exec",
                    NAMESPACE,
                    "taskset",
                    "-c",
                    crate::servers::LOAD_CORE,
                ]);
                c
            } else {
                let mut c = std::process::Command::new("taskset");
                c.args(["-c", crate::servers::LOAD_CORE]);
                c
            };
            command
                .arg(&me)
                .args(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::inherit());
            command
        };
        let seconds = ATTACK_SECONDS.to_string();
        for kind in KINDS
            .iter()
            .filter(|k| attacks.is_empty() || attacks.iter().any(|a| a == *k))
        {
            let rss_before = server.rss_mib();
            let cpu_before = cpu_seconds(server.pid());
            let started = Instant::now();
            let attacker = side(&[
                "h2-attack".into(),
                kind.to_string(),
                addr.to_string(),
                seconds.clone(),
            ])
            .spawn()?;
            let probe = side(&["h2-probe".into(), addr.to_string(), seconds.clone()]).spawn()?;
            let mut rss_peak = rss_before;
            let attacker = loop {
                rss_peak = rss_peak.max(server.rss_mib());
                if started.elapsed() >= Duration::from_secs(ATTACK_SECONDS) {
                    break attacker.wait_with_output()?;
                }
                // Sampling the node's memory while the attack runs.
                std::thread::sleep(Duration::from_millis(100));
            };
            let node_cpu =
                (cpu_seconds(server.pid()) - cpu_before) / started.elapsed().as_secs_f64();
            let probe = probe.wait_with_output()?;
            let row = AttackRow {
                attack: kind.to_string(),
                probe: parse_report(&probe.stdout)?,
                attacker: parse_report(&attacker.stdout)?,
                node_cpu_percent: node_cpu * 100.0,
                rss_before_mib: rss_before,
                rss_peak_mib: rss_peak,
                rss_after_mib: server.rss_mib(),
                served_after: crate::servers::first_response_is_200(addr, "x"),
            };
            println!("  {}", row.markdown());
            for failure in &row.probe.failures {
                println!("    probe failure: {failure}");
            }
            self.h2_attacks.push(row);
        }
        drop(server);
        drop(remote);
        Ok(())
    }
}
