//! Starting the servers under test, pinned to the server core, and reading their memory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The core servers run on; the load generator gets the other.
pub const SERVER_CORE: &str = "0";
pub const LOAD_CORE: &str = "1";

/// A server process under test. Killed on drop.
pub struct Server {
    pub addr: SocketAddr,
    child: Child,
}

impl Server {
    /// Starts `program args…` pinned to the server core and waits for `host` to answer 200.
    pub fn start(
        name: &str,
        addr: SocketAddr,
        host: &str,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> anyhow::Result<(Server, Duration)> {
        let started = Instant::now();
        let child = Command::new("taskset")
            .arg("-c")
            .arg(SERVER_CORE)
            .arg(program)
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let mut server = Server { addr, child };
        loop {
            if first_response_is_200(addr, host) {
                return Ok((server, started.elapsed()));
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("{name} exited with {status}; see {}", log.display());
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!("{name} did not answer within 600 s; see {}", log.display());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far, in MiB, summed over the server's processes.
    pub fn peak_rss_mib(&self) -> f64 {
        self.memory_mib("VmHWM:")
    }

    /// Current resident memory, in MiB, summed over the server's processes.
    pub fn rss_mib(&self) -> f64 {
        self.memory_mib("VmRSS:")
    }

    /// A `/proc/PID/status` memory field (`"RssAnon:"`, say), in MiB, summed over the
    /// server's processes.
    pub fn memory_mib(&self, field: &str) -> f64 {
        process_tree(self.child.id())
            .into_iter()
            .map(|pid| proc_status_kib(pid, field))
            .sum::<u64>() as f64
            / 1024.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Miniflare's node runs workerd as a child, which would outlive node's SIGKILL.
        let below: Vec<String> = process_tree(self.child.id())
            .into_iter()
            .skip(1)
            .map(|pid| pid.to_string())
            .collect();
        if !below.is_empty() {
            let _ = Command::new("kill").arg("-9").args(&below).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pid` and every process below it.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut next = 0;
    while next < all.len() {
        let parent = all[next];
        next += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                all.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    all
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// One plain HTTP/1.1 GET; true when it answers 200.
pub fn first_response_is_200(addr: SocketAddr, host: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

/// One plain HTTP/1.1 request with a body; answers the status code. For seeding data.
pub fn request_status(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<u16> {
    request(addr, method, host, path, &[], body).map(|(status, _)| status)
}

/// One plain HTTP/1.1 request; answers the status code and the body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let status = std::str::from_utf8(response.get(9..12).unwrap_or_default())?.parse()?;
    let body = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or_else(Vec::new, |at| response[at + 4..].to_vec());
    Ok((status, body))
}

/// An unused loopback port.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
