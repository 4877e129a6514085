//! The report: `target/bench/results.json` and the Markdown tables in
//! `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::process::Command;

use crate::load::CONNECTIONS;
use crate::soak::SoakSample;
use crate::{Harness, START_RUNS};

impl Harness {
    /// Writes the results (JSON) and the tables (into docs/benchmarks.md).
    pub(crate) fn report(&self) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(&serde_json::json!({
            "date": command_text("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            "machine": machine(),
            "rows": self.rows,
            "soak": self.soak,
            "h2_attacks": self.h2_attacks,
            "notes": self.notes,
        }))?;
        std::fs::write(self.work.join("results.json"), json)?;
        let markdown = self.markdown();
        println!("\n{markdown}");
        if self.partial {
            println!(
                "results: {} (a partial run: docs/benchmarks.md keeps the last full run)",
                self.work.join("results.json").display()
            );
            return Ok(());
        }
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
        if !self.soak.is_empty() {
            // A long soak is shown one row per few intervals, counts summed and p99 the
            // worst of them, memory as at the row's end (the JSON has every interval).
            let step = self.soak.len().div_ceil(60);
            let _ = writeln!(
                md,
                "### soak: 41 tenants, mixed load (hello, KV, SQL, blob, limits hit), a deploy every 3 s\n\n\
                 | s (end of row) | req/s | unexpected | limits hit | deploys | p50 ms (served) | p99 ms (served) | RSS MiB | anon | files | warm pool slots | data on disk MiB |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for chunk in self.soak.chunks(step) {
                let Some(s) = chunk.last() else { continue };
                let sum = |f: fn(&SoakSample) -> u64| chunk.iter().map(f).sum::<u64>();
                let rps = chunk.iter().map(|c| c.rps).sum::<f64>() / chunk.len() as f64;
                let p99 = chunk.iter().map(|c| c.p99_ms).fold(0.0, f64::max);
                let _ = writeln!(
                    md,
                    "| {:.0} | {rps:.0} | {} | {} | {} | {:.2} | {p99:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    s.at_s,
                    sum(|c| c.unexpected),
                    sum(|c| c.limit_hits),
                    sum(|c| c.deploys),
                    s.p50_ms,
                    s.rss_mib,
                    s.anon_mib,
                    s.file_mib,
                    s.pool_mib,
                    s.data_mib
                );
            }
            md.push('\n');
        }
        if !self.h2_attacks.is_empty() {
            let _ = writeln!(
                md,
                "### h2-attacks: each HTTP/2 attack for 15 s from another network namespace, beside a probe of 200 req/s\n\n\
                 | attack | probe ok / sent | probe p50 ms | p99 ms | max ms | attacker connections | closed by the node | attacker MB sent | node core % | node RSS MiB before → peak → after | served after |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
            );
            for row in &self.h2_attacks {
                let _ = writeln!(md, "{}", row.markdown());
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
            load_table(
                &mut md,
                "noisy neighbour: hello while 8 connections loop on another tenant's `/spin` (cpu = 50ms)",
                rows("noisy"),
            );
        }
        if rows("objects").next().is_some() {
            let title = format!(
                "objects: Durable Objects (examples/counter-object, rate-limiter-object), {CONNECTIONS} connections, {} s",
                self.duration.as_secs()
            );
            load_table(&mut md, &title, rows("objects"));
        }
        if rows("edge").next().is_some() {
            let _ = writeln!(
                md,
                "### edge: cache hits and a 10 KiB static file beside a guest-served hello (one node), nginx on the same file, {CONNECTIONS} connections, {} s\n",
                self.duration.as_secs()
            );
            let _ = writeln!(
                md,
                "| server: request | req/s | p50 ms | p99 ms | p99.9 ms | errors | ÷ hello (guest) |\n|---|---:|---:|---:|---:|---:|---:|"
            );
            let hello = rows("edge")
                .find(|r| r.server.contains("hello"))
                .and_then(|r| r.load.as_ref())
                .map(|l| l.rps);
            for row in rows("edge") {
                let load = row.load.as_ref().expect("edge rows carry load");
                let ratio = hello.map_or("-".into(), |h| format!("{:.1}x", load.rps / h));
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {ratio} |",
                    row.server, load.rps, load.p50_ms, load.p99_ms, load.p999_ms, load.errors
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

/// A section `title` with a table of load runs: label, req/s, p50, p99, p99.9, errors,
/// peak RSS.
fn load_table<'a>(md: &mut String, title: &str, rows: impl Iterator<Item = &'a crate::Row>) {
    let _ = writeln!(
        md,
        "### {title}\n\n| load | req/s | p50 ms | p99 ms | p99.9 ms | errors | node peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for row in rows {
        let Some(load) = row.load.as_ref() else {
            continue;
        };
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.0} |",
            row.server, load.rps, load.p50_ms, load.p99_ms, load.p999_ms, load.errors, row.rss_mib
        );
    }
    md.push('\n');
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
