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
//! - `/scribble?kib=N&stride=S&hold=URL` fills one 4 KiB page in every S (default 1) of
//!   the first N KiB of a static buffer with a marker (S = 2 leaves N/8 separate dirty
//!   runs), then fetches
//!   `URL` (an origin in `outbound`) and answers when it does: while the origin holds the
//!   request, the dirty pages exist and can be swapped out from under the instance
//! - `/sniff` answers how many bytes of that buffer are not zero: 0 in a fresh instance,
//!   whatever ran in its pool slot before (see docs/security.md, "Fresh means fresh")
//! - `/resources?n=N` holds N WASI resources (`wasi:http/types.fields`) at once: over
//!   the node's cap per instance it traps (500), and the host's memory stays bounded
//! - `/shout?kib=N` writes N KiB to stderr in 1 KiB lines: past the node's log allowance
//!   per request the rest is dropped
//! - `/recurse` recurses without end: the stack overflow traps this request only (500)
//! - anything else answers `ok`
//!
//! Routes do not strip their prefix, so it looks only at the last path segment: mounted at
//! `/limits`, `/limits/spin` spins.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use outpost_sdk::{Env, Error, Method, Request, Response, Result};

static REQUESTS_SEEN: AtomicU64 = AtomicU64::new(0);

/// Zero in every fresh instance (it is in the module's zero-initialised data).
const SCRATCH_BYTES: usize = 1 << 20;
static mut SCRATCH: [u8; SCRATCH_BYTES] = [0; SCRATCH_BYTES];

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
        "resources" => {
            let n = number_param(&req, "n")?;
            let held: Vec<_> = (0..n).map(|_| wasip2::http::types::Fields::new()).collect();
            Ok(Response::text(format!("holding {} resources", held.len())))
        }
        "shout" => {
            let kib = number_param(&req, "kib")?;
            let line = "x".repeat(1023);
            for _ in 0..kib {
                eprintln!("{line}");
            }
            Ok(Response::text(format!("wrote {kib} KiB to stderr")))
        }
        "recurse" => Ok(Response::text(format!("depth {}", recurse(0)))),
        "scribble" => {
            let bytes = (number_param(&req, "kib")? as usize * 1024).min(SCRATCH_BYTES);
            let stride = number_param(&req, "stride").unwrap_or(1).max(1) as usize;
            let scratch = &raw mut SCRATCH;
            let mut written = 0;
            for page in (0..bytes / 4096).step_by(stride) {
                for i in page * 4096..(page + 1) * 4096 {
                    // SAFETY: in bounds of the static; one request at a time per instance.
                    unsafe { std::ptr::write_volatile(scratch.cast::<u8>().add(i), b'S') };
                }
                written += 4096;
            }
            if let Some(hold) = req.query_param("hold") {
                env.fetch(Request::new(Method::GET, &hold)?).await?;
            }
            Ok(Response::text(format!("scribbled {written} bytes")))
        }
        "sniff" => {
            let scratch = &raw const SCRATCH;
            let dirty = (0..SCRATCH_BYTES)
                // SAFETY: in bounds of the static; volatile so the read is really made.
                .filter(|&i| unsafe { std::ptr::read_volatile(scratch.cast::<u8>().add(i)) } != 0)
                .count();
            Ok(Response::text(dirty.to_string()))
        }
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

/// Never returns: every call goes one deeper (black_box keeps it from becoming a loop).
#[allow(unconditional_recursion, reason = "the point of /recurse")]
fn recurse(depth: u64) -> u64 {
    let mut frame = [depth; 16];
    std::hint::black_box(&mut frame);
    recurse(std::hint::black_box(depth + 1)) + frame[3]
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
