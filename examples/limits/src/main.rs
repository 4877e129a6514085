//! Misbehaves on purpose, so the node's limits can be seen working:
//!
//! - `/spin` loops forever (fuel or CPU limit)
//! - `/alloc` grows memory until it fails (memory limit)
//! - `/trap` panics (500, trap details only in the node's log)
//! - `/sleep?ms=N` waits N ms (wall-clock timeout)
//! - `/after?ms=N` answers at once, then burns N ms of CPU in `wait_until`;
//!   `/after?spin=1` loops forever after answering (limits still apply)
//! - `/work?n=N` does N rounds of deterministic work (a fixed amount of fuel) and says
//!   which request of its instance it was
//! - `/count` answers how many requests this instance has served (1 unless `reuse`)
//! - `POST /sql` runs the body as one SQL statement on the `DB` binding (when the tenant
//!   declares it) and answers the rows as JSON, or 400 with SQLite's message: the way to
//!   see the authorizer, the size cap and the query deadline at work
//! - anything else answers `ok`
//!
//! Routes do not strip their prefix, so it looks only at the last path segment: mounted at
//! `/limits`, `/limits/spin` spins.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use outpost_sdk::{Env, Error, Request, Response, Result};

static REQUESTS_SEEN: AtomicU64 = AtomicU64::new(0);

#[outpost_sdk::fetch]
async fn fetch(req: Request, env: Env) -> Result<Response> {
    let seen = REQUESTS_SEEN.fetch_add(1, Ordering::Relaxed) + 1;
    let action = req.path().rsplit('/').next().unwrap_or("");
    match action {
        "spin" => spin_forever(),
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Touch every page so the memory is really used.
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "trap" => panic!("the /trap route panics on purpose"),
        "sleep" => {
            let ms: u64 = number_param(&req, "ms")?;
            outpost_sdk::sleep(Duration::from_millis(ms)).await;
            Ok(Response::text(format!("slept {ms} ms")))
        }
        "after" => {
            let spin = req.query_param("spin").is_some();
            let ms = number_param(&req, "ms").unwrap_or(10);
            env.wait_until(async move {
                if spin {
                    spin_forever();
                }
                burn(Duration::from_millis(ms));
                eprintln!("after-response work finished ({ms} ms)");
            });
            Ok(Response::text("answered before the work"))
        }
        "work" => {
            let rounds = number_param(&req, "n")?;
            let mut acc = 0u64;
            for i in 0..rounds {
                acc = std::hint::black_box(acc.wrapping_mul(31).wrapping_add(i));
            }
            Ok(Response::text(format!(
                "worked {rounds} rounds ({acc}); request {seen} of this instance"
            )))
        }
        "count" => Ok(Response::text(seen.to_string())),
        "sql" => {
            let db = env.sql("DB")?;
            let statement = req.text().await?;
            let rows = db
                .query(&statement, Vec::new())
                .await
                .map_err(|e| Error::bad_request(e.message().to_string()))?;
            Response::json(&rows.to_json())
        }
        _ => Ok(Response::text("ok")),
    }
}

fn number_param(req: &Request, name: &str) -> Result<u64> {
    req.query_param(name)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::bad_request(format!("give ?{name}=<number>")))
}

fn spin_forever() -> ! {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn burn(duration: Duration) {
    let start = Instant::now();
    let mut counter = 0u64;
    while start.elapsed() < duration {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}
