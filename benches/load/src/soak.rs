//! soak: one node, 41 tenants, mixed load for a set time (`--soak SECONDS`): hello, KV
//! reads and fsynced writes, SQL inserts and reads, blob uploads and downloads, guests
//! hitting their CPU and memory limits and trapping, and a deploy every few seconds.
//! Every response is checked against what that request should get; each interval
//! reports requests, unexpected answers, p50/p99 of the requests served (limit hits are
//! reported apart, by kind) and the node's RSS, so a leak or a tail that grows over
//! time shows.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::Harness;
use crate::servers::free_addr;

/// Tenants of each kind (hello, kv, sql, blob, limits), plus one that is redeployed.
const PER_KIND: usize = 8;
/// Requests in flight at once.
const CLIENTS: usize = 32;
/// How often a sample is taken.
const INTERVAL: Duration = Duration::from_secs(10);
/// How often the `app` tenant is redeployed (hello and echo in turn).
const DEPLOY_EVERY: Duration = Duration::from_secs(3);
const TOKEN: &str = "soak-admin-token-0123456789";

/// One interval of the soak.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSample {
    pub at_s: f64,
    pub requests: u64,
    pub rps: f64,
    /// Answers other than the one the request should get (a limit hit is expected).
    pub unexpected: u64,
    pub limit_hits: u64,
    pub deploys: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub rss_mib: f64,
    /// Of the RSS, what the instance pool's warm slots keep resident.
    pub pool_mib: f64,
    /// Of the RSS, anonymous memory (heap, stacks, the pool) and mapped files (the
    /// binary, compiled components).
    pub anon_mib: f64,
    pub file_mib: f64,
    /// What the stores hold on disk (sled, SQLite, blobs), to set RSS against.
    pub data_mib: f64,
}

/// A request of the mix and the statuses it may get.
struct Call {
    host: String,
    method: &'static str,
    path: String,
    body: Bytes,
    expect: &'static [u16],
    /// The answer is a limit being enforced (counted apart).
    limit: bool,
    /// What it is, for the latency by kind.
    kind: &'static str,
}

/// The `n`-th request of the mix.
fn call(n: u64) -> Call {
    let tenant = (n / 16) as usize % PER_KIND;
    let small = Bytes::from_static(b"soak value");
    let hit = (n / 16).is_multiple_of(4);
    let plain = |host: String, path: &str, expect: &'static [u16]| Call {
        host,
        method: "GET",
        path: path.to_string(),
        body: Bytes::new(),
        expect,
        limit: false,
        kind: "hello",
    };
    match n % 16 {
        0..=3 => plain(format!("hello-{tenant}.test"), "/", &[200]),
        4 => Call {
            kind: "KV increment",
            ..plain(format!("kv-{tenant}.test"), "/", &[200])
        },
        5 => Call {
            method: "PUT",
            path: format!("/put?key=k{}", n % 100),
            body: small,
            kind: "KV put",
            ..plain(format!("kv-{tenant}.test"), "", &[200])
        },
        6 => Call {
            kind: "KV get",
            ..plain(
                format!("kv-{tenant}.test"),
                &format!("/get?key=k{}", n % 100),
                &[200, 404],
            )
        },
        7 => Call {
            method: "POST",
            path: "/todos".into(),
            body: Bytes::from(format!(r#"{{"title":"soak {n}"}}"#)),
            kind: "SQL insert",
            ..plain(format!("sql-{tenant}.test"), "", &[201])
        },
        8 => Call {
            kind: "SQL select",
            ..plain(
                format!("sql-{tenant}.test"),
                &format!("/todos/{}", n % 50 + 1),
                &[200, 404],
            )
        },
        9 => Call {
            method: "PUT",
            path: format!("/files/f{}", n % 20),
            body: Bytes::from(vec![b'b'; 64 * 1024]),
            kind: "blob put 64 KiB",
            ..plain(format!("blob-{tenant}.test"), "", &[201])
        },
        10 => Call {
            kind: "blob get",
            ..plain(
                format!("blob-{tenant}.test"),
                &format!("/files/f{}", n % 20),
                &[200, 404],
            )
        },
        // Limits hit in 3 of every 64 requests: a spin costs the node its CPU budget.
        11 if hit => Call {
            limit: true,
            kind: "CPU limit hit",
            ..plain(format!("limits-{tenant}.test"), "/spin", &[503])
        },
        12 if hit => Call {
            limit: true,
            kind: "memory limit hit",
            ..plain(format!("limits-{tenant}.test"), "/alloc", &[503])
        },
        13 if hit => Call {
            limit: true,
            kind: "stack overflow",
            ..plain(format!("limits-{tenant}.test"), "/recurse", &[500])
        },
        11..=14 => plain(format!("limits-{tenant}.test"), "/ok", &[200]),
        _ => Call {
            kind: "redeployed tenant",
            ..plain("app.test".into(), "/", &[200])
        },
    }
}

#[derive(Default)]
struct Tally {
    latencies_ms: Mutex<Vec<f64>>,
    /// Every latency of the run by kind of request.
    by_kind: Mutex<std::collections::BTreeMap<&'static str, Vec<f64>>>,
    requests: AtomicU64,
    unexpected: AtomicU64,
    limit_hits: AtomicU64,
    deploys: AtomicU64,
    /// The first few unexpected answers, for the report.
    examples: Mutex<Vec<String>>,
}

impl Harness {
    pub(crate) fn soak(&mut self, seconds: u64) -> anyhow::Result<()> {
        println!(
            "soak: {} tenants, {CLIENTS} clients, a deploy every {} s, for {seconds} s",
            PER_KIND * 5 + 1,
            DEPLOY_EVERY.as_secs()
        );
        let wasm = |name: &str| self.wasm(name).display().to_string();
        let admin = free_addr()?;
        let mut tenants = format!(
            "[server.admin]\nlisten = \"{admin}\"\ntoken_env = \"OUTPOST_SOAK_ADMIN_TOKEN\"\n\n\
             [[tenant]]\nname = \"app\"\ncomponent = {:?}\nroutes = [\"app.test\"]\n\n",
            wasm("hello")
        );
        for i in 0..PER_KIND {
            tenants.push_str(&format!(
                "[[tenant]]\nname = \"hello-{i}\"\ncomponent = {:?}\nroutes = [\"hello-{i}.test\"]\n\n\
                 [[tenant]]\nname = \"kv-{i}\"\ncomponent = {:?}\nroutes = [\"kv-{i}.test\"]\nkv = [\"COUNTS\"]\n\n\
                 [[tenant]]\nname = \"sql-{i}\"\ncomponent = {:?}\nroutes = [\"sql-{i}.test\"]\nsql = [\"DB\"]\n\n\
                 [[tenant]]\nname = \"blob-{i}\"\ncomponent = {:?}\nroutes = [\"blob-{i}.test\"]\nblob = {{ FILES = {{}} }}\n\n\
                 [[tenant]]\nname = \"limits-{i}\"\ncomponent = {:?}\nroutes = [\"limits-{i}.test\"]\n\
                 limits = {{ cpu = \"5ms\", memory = \"16MiB\", timeout = \"2s\" }}\n\n",
                wasm("hello"),
                wasm("kv-counter"),
                wasm("sql-todo"),
                wasm("blob-files"),
                wasm("limits"),
            ));
        }
        let data = self.work.join("soak/data");
        let _ = std::fs::remove_dir_all(&data);
        let (config, addr) = self.outpost_config("soak", &data, &tenants)?;
        // SAFETY: the harness has no other threads here (load runs in processes, and this
        // scenario's runtime starts below); the node reads the token from its environment.
        unsafe { std::env::set_var("OUTPOST_SOAK_ADMIN_TOKEN", TOKEN) };
        let (server, _) = self.start_outpost("outpost-soak", &config, addr, "app.test")?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let components = [
            Bytes::from(std::fs::read(self.wasm("echo"))?),
            Bytes::from(std::fs::read(self.wasm("hello"))?),
        ];
        let started = Instant::now();
        let mut samples: Vec<SoakSample> = Vec::new();
        runtime.block_on(async {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(CLIENTS)
                .build_http();
            let next = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for _ in 0..CLIENTS {
                let (client, tally, stop, next) =
                    (client.clone(), tally.clone(), stop.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let call = call(next.fetch_add(1, Ordering::Relaxed));
                        send_to(&client, addr, &call, &tally, false).await;
                    }
                }));
            }
            let deployer = {
                let (client, tally, stop) = (client.clone(), tally.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut turn = 0;
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(DEPLOY_EVERY).await;
                        let deploy = Call {
                            host: "admin".into(),
                            method: "PUT",
                            path: "/tenants/app/component".into(),
                            body: components[turn % 2].clone(),
                            expect: &[200],
                            limit: false,
                            kind: "deploy",
                        };
                        turn += 1;
                        if send_to(&client, admin, &deploy, &tally, true).await {
                            tally.deploys.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            };
            let mut last = Instant::now();
            while started.elapsed() < Duration::from_secs(seconds) {
                tokio::time::sleep(INTERVAL).await;
                let mut latencies = std::mem::take(&mut *tally.latencies_ms.lock().expect("tally"));
                let took = last.elapsed().as_secs_f64();
                last = Instant::now();
                latencies.sort_by(f64::total_cmp);
                let at = |q: f64| {
                    latencies
                        .get(((latencies.len().max(1) - 1) as f64 * q).round() as usize)
                        .copied()
                        .unwrap_or(0.0)
                };
                let requests = tally.requests.swap(0, Ordering::Relaxed);
                let sample = SoakSample {
                    at_s: started.elapsed().as_secs_f64().round(),
                    requests,
                    rps: requests as f64 / took,
                    unexpected: tally.unexpected.swap(0, Ordering::Relaxed),
                    limit_hits: tally.limit_hits.swap(0, Ordering::Relaxed),
                    deploys: tally.deploys.swap(0, Ordering::Relaxed),
                    p50_ms: at(0.5),
                    p99_ms: at(0.99),
                    rss_mib: server.rss_mib(),
                    pool_mib: pool_resident_mib(&client, admin).await,
                    anon_mib: server.memory_mib("RssAnon:"),
                    file_mib: server.memory_mib("RssFile:"),
                    data_mib: disk_bytes(&data) as f64 / (1024.0 * 1024.0),
                };
                println!(
                    "  soak {:>5.0} s {:>7.0} req/s  unexpected {:>3}  limits {:>5}  deploys {:>2}  p50 {:>6.2} ms  p99 {:>7.2} ms  RSS {:>6.1} MiB (anon {:>6.1}, files {:>5.1}, pool {:>5.1})  data {:>6.1} MiB",
                    sample.at_s,
                    sample.rps,
                    sample.unexpected,
                    sample.limit_hits,
                    sample.deploys,
                    sample.p50_ms,
                    sample.p99_ms,
                    sample.rss_mib,
                    sample.anon_mib,
                    sample.file_mib,
                    sample.pool_mib,
                    sample.data_mib
                );
                samples.push(sample);
            }
            stop.store(true, Ordering::Relaxed);
            for task in tasks {
                let _ = task.await;
            }
            let _ = deployer.await;
        });
        if samples.len() < 3 {
            bail!("the soak needs at least three intervals: run it for 30 s or more");
        }
        let examples = tally.examples.lock().expect("tally").clone();
        self.notes.push(soak_note(&samples, &examples));
        let mut kinds = Vec::new();
        for (kind, latencies) in tally.by_kind.lock().expect("tally").iter_mut() {
            latencies.sort_by(f64::total_cmp);
            let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
            kinds.push(format!("{kind} {:.1}/{:.1}", at(0.5), at(0.99)));
        }
        self.notes.push(format!(
            "soak: p50/p99 ms over the whole run, by kind of request: {}.",
            kinds.join(", ")
        ));
        self.soak = samples;
        Ok(())
    }
}

/// Sends `call` to `addr`; records its latency (unless it is an admin call) and
/// whether its answer was expected, which it answers.
async fn send_to(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    call: &Call,
    tally: &Tally,
    admin: bool,
) -> bool {
    let mut request = hyper::Request::builder()
        .method(call.method)
        .uri(format!("http://{addr}{}", call.path))
        .header("host", &call.host);
    if admin {
        request = request.header("authorization", format!("Bearer {TOKEN}"));
    }
    let Ok(request) = request.body(Full::new(call.body.clone())) else {
        return false;
    };
    let started = Instant::now();
    let mut said = Bytes::new();
    let answer = match client.request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.into_body().collect().await {
                Ok(body) => {
                    said = body.to_bytes();
                    Ok(status)
                }
                Err(e) => Err(format!("reading the body: {e}")),
            }
        }
        Err(e) => Err(format!("{e:?}")),
    };
    if !admin {
        let ms = started.elapsed().as_secs_f64() * 1e3;
        // A limit hit takes as long as its budget stretched over a busy core: it is
        // reported by kind, and left out of the interval's p50/p99 of served requests.
        if !call.limit {
            tally.latencies_ms.lock().expect("tally").push(ms);
        }
        let mut by_kind = tally.by_kind.lock().expect("tally");
        by_kind.entry(call.kind).or_default().push(ms);
        tally.requests.fetch_add(1, Ordering::Relaxed);
    }
    let expected = matches!(answer, Ok(status) if call.expect.contains(&status));
    if expected && call.limit {
        tally.limit_hits.fetch_add(1, Ordering::Relaxed);
    }
    if !expected {
        tally.unexpected.fetch_add(1, Ordering::Relaxed);
        let mut examples = tally.examples.lock().expect("tally");
        if examples.len() < 5 {
            let said = String::from_utf8_lossy(&said[..said.len().min(80)]).into_owned();
            examples.push(format!(
                "{} {}{} answered {answer:?} {said:?}, expected {:?}",
                call.method, call.host, call.path, call.expect
            ));
        }
    }
    expected
}

/// `outpost_pool_resident_bytes` from the admin API's metrics, in MiB (0 if unread).
async fn pool_resident_mib(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    admin: SocketAddr,
) -> f64 {
    let Ok(request) = hyper::Request::get(format!("http://{admin}/metrics"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
    else {
        return 0.0;
    };
    let Ok(response) = client.request(request).await else {
        return 0.0;
    };
    let Ok(body) = response.into_body().collect().await else {
        return 0.0;
    };
    String::from_utf8_lossy(&body.to_bytes())
        .lines()
        .find_map(|line| line.strip_prefix("outpost_pool_resident_bytes "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0.0, |bytes| bytes / (1024.0 * 1024.0))
}

/// Bytes under `dir` (files only), 0 for what cannot be read.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => disk_bytes(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// The soak in a sentence or two: what RSS did, what the tail did, what failed.
fn soak_note(samples: &[SoakSample], examples: &[String]) -> String {
    // The first interval warms up (pools, caches, SQLite pages); RSS is judged after it.
    let steady = &samples[1..];
    let rss: Vec<f64> = steady.iter().map(|s| s.rss_mib).collect();
    let (low, high) = rss
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
    let third = (steady.len() / 3).max(1);
    let mean = |s: &[SoakSample]| s.iter().map(|x| x.rss_mib).sum::<f64>() / s.len() as f64;
    let (early, late) = (
        mean(&steady[..third]),
        mean(&steady[steady.len() - third..]),
    );
    let outside =
        |s: &[SoakSample]| s.iter().map(|x| x.rss_mib - x.pool_mib).sum::<f64>() / s.len() as f64;
    let (early_outside, late_outside) = (
        outside(&steady[..third]),
        outside(&steady[steady.len() - third..]),
    );
    let p99s: Vec<f64> = steady.iter().map(|s| s.p99_ms).collect();
    let worst_p99 = p99s.iter().copied().fold(0.0, f64::max);
    let unexpected: u64 = samples.iter().map(|s| s.unexpected).sum();
    let requests: u64 = samples.iter().map(|s| s.requests).sum();
    let deploys: u64 = samples.iter().map(|s| s.deploys).sum();
    let limits: u64 = samples.iter().map(|s| s.limit_hits).sum();
    let mut note = format!(
        "soak: {requests} requests over {:.0} s, {limits} of them limits enforced as they should be, {deploys} deploys; {unexpected} unexpected answers. RSS after the first interval stayed between {low:.1} and {high:.1} MiB (mean of the first third {early:.1}, of the last third {late:.1}: {:+.1} MiB; less the pool's warm slots, {early_outside:.1} and {late_outside:.1}: {:+.1} MiB); p99 of served requests per interval at most {worst_p99:.1} ms.",
        samples.last().map_or(0.0, |s| s.at_s),
        late - early,
        late_outside - early_outside
    );
    let field =
        |s: &[SoakSample], f: fn(&SoakSample) -> f64| s.iter().map(f).sum::<f64>() / s.len() as f64;
    let (first, last) = (&steady[..third], &steady[steady.len() - third..]);
    note.push_str(&format!(
        " Of RSS, anonymous memory {:.1} → {:.1} MiB and mapped files {:.1} → {:.1} MiB (first third → last third), while the stores on disk grew {:.1} → {:.1} MiB.",
        field(first, |s| s.anon_mib),
        field(last, |s| s.anon_mib),
        field(first, |s| s.file_mib),
        field(last, |s| s.file_mib),
        field(first, |s| s.data_mib),
        field(last, |s| s.data_mib),
    ));
    if !examples.is_empty() {
        note.push_str(&format!(" First unexpected: {}.", examples.join("; ")));
    }
    note
}
