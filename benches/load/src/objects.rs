//! The objects scenario: Durable Objects under load. Requests/s to one hot counter (reads
//! and increments) and spread over 1,000 counters, the exact rate limiter over 1,000 keys,
//! what one object at full load costs the other objects' latency, the p99 of a WebSocket
//! broadcast in a room of 100 sockets, and the host memory per live idle object and per
//! hibernated socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::load::{self, Shape};
use crate::servers::{LOAD_CORE, Server, free_addr, request, request_status};
use crate::{ADMIN_TOKEN, ADMIN_TOKEN_ENV, Harness, WARMUP};

/// Objects the spread measurements reach, as in the issue.
const SPREAD: u32 = 1000;
/// Sockets in the broadcast room, and broadcasts timed in it.
const ROOM_SOCKETS: usize = 100;
const BROADCASTS: usize = 200;
/// Hibernated sockets whose memory is measured, in rooms of `ROOM_SOCKETS`.
const IDLE_SOCKETS: usize = 2000;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl Harness {
    pub(crate) fn objects(&mut self) -> anyhow::Result<()> {
        println!(
            "objects: one hot counter, {SPREAD} counters, the limiter, a room of {ROOM_SOCKETS} sockets"
        );
        let wasm = |name: &str| self.wasm(name).display().to_string();
        let data = self.work.join("objects/data");
        let _ = std::fs::remove_dir_all(&data);
        let admin = free_addr()?;
        let tenants = format!(
            "[server.admin]\nlisten = \"{admin}\"\ntoken_env = \"{ADMIN_TOKEN_ENV}\"\n\n\
             [[tenant]]\nname = \"hello\"\ncomponent = {hello:?}\nroutes = [\"hello.test\"]\n\n\
             [[tenant]]\nname = \"counters\"\ncomponent = {counter:?}\nroutes = [\"counter.test\"]\n\
             durable_objects = {{ COUNTERS = {{ class = \"Counter\", idle_timeout = \"10m\" }} }}\n\
             limits = {{ live_objects = {SPREAD} }}\n\n\
             [[tenant]]\nname = \"limiter\"\ncomponent = {limiter:?}\nroutes = [\"limiter.test\"]\n\
             durable_objects = {{ LIMITERS = {{ class = \"RateLimiter\", idle_timeout = \"5s\" }} }}\n\
             limits = {{ live_objects = {SPREAD} }}\n\n\
             [[tenant]]\nname = \"rooms\"\ncomponent = {room:?}\nroutes = [\"rooms.test\"]\n\
             durable_objects = {{ ROOMS = {{ class = \"DocRoom\", idle_timeout = \"1s\" }} }}\n",
            hello = wasm("hello"),
            counter = wasm("counter-object"),
            limiter = wasm("rate-limiter-object"),
            room = wasm("doc-room"),
        );
        let (config, addr) = self.outpost_config("objects", &data, &tenants)?;
        // Each live object holds an instance slot: room for both tenants' 1,000 and the
        // requests in front of them.
        let text = std::fs::read_to_string(&config)?;
        std::fs::write(
            &config,
            text.replacen("max_instances = 1000", "max_instances = 2500", 1),
        )?;
        let (outpost, _) = self.start_outpost("outpost (objects)", &config, addr, "hello.test")?;
        let live = || objects_live(admin);

        // WebSockets first, while no other object is live (hibernation is seen in the
        // node-wide count of live objects), from a client thread on the load core.
        let (broadcast, idle) = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    pin_to_load_core();
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(websockets(addr, admin, &outpost))
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the WebSocket client thread panicked"))?
        })?;
        println!(
            "  {:>6} broadcast to {} sockets: p50 {:.2} ms  p99 {:.2} ms  ({BROADCASTS} messages)",
            "objects",
            ROOM_SOCKETS - 1,
            broadcast.p50_ms,
            broadcast.p99_ms
        );
        self.notes.push(format!(
            "objects: a WebSocket broadcast in a room of {ROOM_SOCKETS} sockets (one sender, {BROADCASTS} operations, each persisted, then sent to the other {}): p50 {:.2} ms, p99 {:.2} ms from send to arrival at a receiver, over {} arrivals.",
            ROOM_SOCKETS - 1,
            broadcast.p50_ms,
            broadcast.p99_ms,
            broadcast.samples
        ));
        self.notes.push(format!(
            "objects: {IDLE_SOCKETS} open idle WebSockets in {} rooms whose objects all left memory (hibernated) grew RSS by {:.1} MiB: {:.1} KiB per hibernated socket.",
            IDLE_SOCKETS / ROOM_SOCKETS,
            idle,
            idle * 1024.0 / IDLE_SOCKETS as f64
        ));

        // One hot object: reads, then increments (each a durable write).
        if request_status(addr, "POST", "counter.test", "/counter/hot", b"")? != 200 {
            bail!("the hot counter does not answer 200");
        }
        let read = self.measure(&outpost, "counter.test", "/counter/hot")?;
        self.record_load("objects", "one hot object: read", &outpost, read);
        let post = Shape {
            method: Some("POST"),
            spread: None,
        };
        let increments = self.measure_shaped(&outpost, "counter.test", "/counter/hot", post)?;
        self.record_load("objects", "one hot object: increment", &outpost, increments);

        // A live idle object's memory: RSS as 1,000 objects start, one request each.
        let (rss_before, live_before) = (outpost.rss_mib(), live()?);
        for i in 1..=SPREAD {
            let status =
                request_status(addr, "GET", "counter.test", &format!("/counter/o{i}"), b"")?;
            if status != 200 {
                bail!("counter o{i} answered {status}");
            }
        }
        let (rss_after, live_after) = (outpost.rss_mib(), live()?);
        let started = live_after.saturating_sub(live_before).max(1);
        self.notes.push(format!(
            "objects: starting {started} idle counter objects (each an instance kept in memory, its SQLite storage open) grew RSS by {:.1} MiB: {:.0} KiB per live idle object.",
            rss_after - rss_before,
            (rss_after - rss_before) * 1024.0 / started as f64
        ));

        let spread = Shape {
            method: None,
            spread: Some(SPREAD),
        };
        let alone = self.measure_shaped(&outpost, "counter.test", "/counter/o", spread)?;
        self.record_load("objects", "1,000 objects: read", &outpost, alone);
        let spread_post = Shape {
            method: Some("POST"),
            spread: Some(SPREAD),
        };
        let spread_increments =
            self.measure_shaped(&outpost, "counter.test", "/counter/o", spread_post)?;
        self.record_load(
            "objects",
            "1,000 objects: increment",
            &outpost,
            spread_increments,
        );

        // One object at full load beside reads of the others.
        let hot = load::spawn(
            &self.wrk_script,
            &format!("http://{addr}/counter/hot"),
            "counter.test",
            16,
            self.duration + WARMUP + Duration::from_secs(2),
            post,
        )?;
        std::thread::sleep(Duration::from_secs(1));
        let beside = self.measure_shaped(&outpost, "counter.test", "/counter/o", spread)?;
        self.record_load(
            "objects",
            "1,000 objects: read beside a hot one",
            &outpost,
            beside,
        );
        let hot = load::finish(hot)?;
        self.record_load("objects", "the hot object (16 connections)", &outpost, hot);

        // The limiter: a key per request from 1,000 (each key its own object).
        let keys = Shape {
            method: None,
            spread: Some(SPREAD),
        };
        let limited = self.measure_shaped(&outpost, "limiter.test", "/exact-limit?key=k", keys)?;
        self.record_load(
            "objects",
            "rate limiter, 1,000 keys (429s count as errors)",
            &outpost,
            limited,
        );

        Ok(())
    }
}

struct Broadcast {
    p50_ms: f64,
    p99_ms: f64,
    samples: usize,
}

/// The broadcast's latency, then the RSS growth (MiB) of `IDLE_SOCKETS` hibernated sockets.
async fn websockets(
    addr: SocketAddr,
    admin: SocketAddr,
    outpost: &Server,
) -> anyhow::Result<(Broadcast, f64)> {
    let mut room = Vec::with_capacity(ROOM_SOCKETS);
    for i in 0..ROOM_SOCKETS {
        room.push(connect(addr, "broadcast", i).await?);
    }
    let mut sender = room.remove(0);
    // Each receiver notes when each version arrives.
    let receivers: Vec<_> = room
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                let mut arrivals = HashMap::new();
                while arrivals.len() < BROADCASTS {
                    let Some(message) = socket.next().await else {
                        break;
                    };
                    if let Message::Text(text) = message? {
                        let value: serde_json::Value = serde_json::from_str(&text)?;
                        if value["type"] == "operation" {
                            let version = value["version"].as_u64().unwrap_or_default();
                            arrivals.insert(version, Instant::now());
                        }
                    }
                }
                anyhow::Ok((socket, arrivals))
            })
        })
        .collect();
    let mut sent = HashMap::new();
    for i in 0..BROADCASTS {
        let operation = serde_json::json!({
            "type": "operation",
            "operation": { "insert": { "at": 0, "text": format!("{i} ") } },
        });
        let at = Instant::now();
        sender.send(Message::text(operation.to_string())).await?;
        // The ack names the version the others will hear of.
        let version = loop {
            let message = tokio::time::timeout(Duration::from_secs(10), sender.next())
                .await
                .context("no ack within 10 s")?
                .context("the sender's socket closed")??;
            if let Message::Text(text) = message {
                let value: serde_json::Value = serde_json::from_str(&text)?;
                if value["type"] == "ack" {
                    break value["version"].as_u64().unwrap_or_default();
                }
            }
        };
        sent.insert(version, at);
    }
    let mut latencies = Vec::new();
    let mut sockets = vec![sender];
    for receiver in receivers {
        let (socket, arrivals) = tokio::time::timeout(Duration::from_secs(30), receiver)
            .await
            .context("a receiver did not hear every broadcast within 30 s")???;
        for (version, arrived) in arrivals {
            if let Some(at) = sent.get(&version) {
                latencies.push(arrived.duration_since(*at).as_secs_f64() * 1e3);
            }
        }
        sockets.push(socket);
    }
    if latencies.len() != BROADCASTS * (ROOM_SOCKETS - 1) {
        bail!(
            "{} arrivals, expected {}",
            latencies.len(),
            BROADCASTS * (ROOM_SOCKETS - 1)
        );
    }
    latencies.sort_by(f64::total_cmp);
    let broadcast = Broadcast {
        p50_ms: latencies[latencies.len() / 2],
        p99_ms: latencies[latencies.len() * 99 / 100],
        samples: latencies.len(),
    };
    drop(sockets);
    wait_until(admin, 0, 0).await?;

    // Hibernation: every room's object leaves memory (idle_timeout 1 s), its sockets stay.
    let rss_before = outpost.rss_mib();
    let mut idle = Vec::with_capacity(IDLE_SOCKETS);
    for i in 0..IDLE_SOCKETS {
        idle.push(connect(addr, &format!("idle-{}", i / ROOM_SOCKETS), i).await?);
    }
    wait_until(admin, 0, IDLE_SOCKETS as u64).await?;
    let grown = outpost.rss_mib() - rss_before;
    drop(idle);
    Ok((broadcast, grown))
}

/// Waits (up to 60 s) until the node holds `live` objects in memory and `sockets` open.
async fn wait_until(admin: SocketAddr, live: u64, sockets: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    while objects_live(admin)? != live || open_sockets(admin)? != sockets {
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "the node did not reach {live} live objects and {sockets} open sockets within 60 s"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A room's socket, past its `init` message.
async fn connect(addr: SocketAddr, room: &str, user: usize) -> anyhow::Result<Socket> {
    let url = format!("ws://{addr}/rooms/{room}?user=u{user}");
    let request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)?;
    let mut request = request;
    request.headers_mut().insert("host", "rooms.test".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("connecting socket {user} to room {room}"))?;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .context("no init within 10 s")?
            .context("the socket closed before init")??;
        if let Message::Text(text) = message
            && text.contains("\"init\"")
        {
            return Ok(socket);
        }
    }
}

/// Durable Objects in memory, node-wide (the admin API's metrics).
fn objects_live(admin: SocketAddr) -> anyhow::Result<u64> {
    gauge(admin, "outpost_objects_live")
}

fn open_sockets(admin: SocketAddr) -> anyhow::Result<u64> {
    gauge(admin, "outpost_objects_websockets_open")
}

fn gauge(admin: SocketAddr, name: &str) -> anyhow::Result<u64> {
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let (status, body) = request(
        admin,
        "GET",
        "admin",
        "/metrics",
        &[("Authorization", &bearer)],
        b"",
    )?;
    if status != 200 {
        bail!("the admin API's /metrics answered {status}");
    }
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .with_context(|| format!("no {name} in the metrics"))
}

/// Pins the calling thread to the load core, beside wrk, off the server's.
fn pin_to_load_core() {
    let Ok(core) = LOAD_CORE.parse::<usize>() else {
        return;
    };
    // SAFETY: a zeroed cpu_set_t is a valid empty set; pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
