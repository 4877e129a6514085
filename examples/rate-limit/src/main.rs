//! Per-client rate limiting on KV: a fixed window of `WINDOW` seconds allows `LIMIT`
//! requests per client address (`x-outpost-client-ip`, which the node sets; see
//! `trusted_proxies`). Over the limit: `429` with `Retry-After`. Every answer carries
//! `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds).
//!
//! ```toml
//! kv = ["LIMITS"]
//! vars = { LIMIT = 100, WINDOW = 60, ORIGIN = "http://app.internal:8080" }  # ORIGIN optional
//! outbound = ["http://app.internal:8080"]
//! ```
//!
//! Allowed requests go on to `ORIGIN` when it is set (the limiter in front of an app),
//! else are answered `200 allowed`. The counter is one atomic KV `increment` per request,
//! keyed by client and window, expiring with the window.

use std::time::{SystemTime, UNIX_EPOCH};

use outpost_sdk::{Env, Error, Request, Response, Result};

#[outpost_sdk::fetch]
async fn fetch(req: Request, env: Env) -> Result<Response> {
    let number = |name: &str, default: u64| -> Result<u64> {
        match env.var(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::internal(format!("{name} must be a positive integer"))),
        }
    };
    let limit = number("LIMIT", 100)?;
    let window = number("WINDOW", 60)?;
    let client = req
        .header("x-outpost-client-ip")
        .unwrap_or("unknown")
        .to_string();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| Error::internal(e.to_string()))?
        .as_secs();
    let window_start = now - now % window;
    let reset = window_start + window - now;
    let key = format!("rate:{client}:{window_start}");
    // The key lives one window past its own, so a late request never restarts a count.
    let count = env
        .kv("LIMITS")?
        .increment(&key, 1, Some(window * 2))
        .await?;
    let count = u64::try_from(count).unwrap_or(u64::MAX);
    let remaining = limit.saturating_sub(count);
    let response = if count > limit {
        Response::text(format!(
            "rate limit exceeded: {limit} requests per {window} s\n"
        ))
        .with_status(429)
        .with_header("retry-after", reset.to_string())
    } else if let Some(origin) = env.var("ORIGIN") {
        env.fetch(req.forward_to(&origin)?).await?
    } else {
        Response::text("allowed\n")
    };
    Ok(response
        .with_header("x-ratelimit-limit", limit.to_string())
        .with_header("x-ratelimit-remaining", remaining.to_string())
        .with_header("x-ratelimit-reset", reset.to_string()))
}
