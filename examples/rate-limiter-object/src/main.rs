//! The seed's exact sliding-window rate limiter on Durable Objects: `LIMIT` requests
//! (default 100) per `WINDOW` seconds (default 60) per key, counted by one object per
//! key (`durable_objects = { LIMITERS = { class = "RateLimiter" } }`).
//!
//! The key is `?key=` if given, else the client's address (`x-outpost-client-ip`, which
//! the node sets). Allowed: `200 allowed`; over the limit: `429` with `Retry-After`.
//! Both carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`
//! (seconds until a slot frees).
//!
//! Sharding, as the seed's hot-spot incident asks: every key is its own object, so keys
//! spread over objects (and their events run in parallel) while each key's count stays
//! exact. The seed's own fix (`hash(key)[0] % 64` with `limit / 64` per shard) sends one
//! key to one fixed shard and so allows it only 1/64 of its limit; one object per key
//! has neither that error nor a hot spot across keys.

use std::time::{SystemTime, UNIX_EPOCH};

use outpost_sdk::reexports::serde_json::json;
use outpost_sdk::{DurableObject, Env, Error, Method, Request, Response, Result, State};
use serde::{Deserialize, Serialize};

#[outpost_sdk::fetch(objects = [RateLimiter])]
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
    let check = Check {
        now_ms: now_ms()?,
        window_ms: number("WINDOW", 60)? * 1000,
        limit: number("LIMIT", 100)?,
    };
    let key = req
        .query_param("key")
        .or_else(|| req.header("x-outpost-client-ip").map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    let limiter = env.durable_object("LIMITERS")?.get_by_name(&key);
    let asked = Request::new(Method::POST, "/check")?.with_body(json!(check).to_string());
    let answer = limiter.fetch(asked).await?;
    if answer.status() != 200 {
        // The object failed or is overloaded: the node's answer says why.
        return Ok(answer);
    }
    let verdict: Verdict = answer.read_json().await?;
    let reset_secs = verdict.reset_ms.div_ceil(1000).max(1);
    let response = if verdict.allowed {
        Response::text("allowed")
    } else {
        Response::json(&json!({ "error": "rate limited", "retry_after": reset_secs }))?
            .with_status(429)
            .with_header("retry-after", reset_secs.to_string())
    };
    Ok(response
        .with_header("x-ratelimit-limit", check.limit.to_string())
        .with_header("x-ratelimit-remaining", verdict.remaining.to_string())
        .with_header("x-ratelimit-reset", reset_secs.to_string()))
}

fn now_ms() -> Result<u64> {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(since.as_millis() as u64)
}

#[derive(Serialize, Deserialize)]
struct Check {
    now_ms: u64,
    window_ms: u64,
    limit: u64,
}

#[derive(Serialize, Deserialize)]
struct Verdict {
    allowed: bool,
    remaining: u64,
    /// Until the oldest counted request leaves the window.
    reset_ms: u64,
}

/// One key's requests in the window: their times, oldest first.
#[outpost_sdk::durable_object]
struct RateLimiter {
    state: State,
    timestamps: Option<Vec<u64>>,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> RateLimiter {
        RateLimiter {
            state,
            timestamps: None,
        }
    }

    async fn fetch(&mut self, req: Request) -> Result<Response> {
        let check: Check = req.json().await?;
        let storage = self.state.storage();
        let mut timestamps = match self.timestamps.take() {
            Some(kept) => kept,
            None => storage.get_json("timestamps").await?.unwrap_or_default(),
        };
        let window_start = check.now_ms.saturating_sub(check.window_ms);
        timestamps.retain(|t| *t > window_start);
        let allowed = (timestamps.len() as u64) < check.limit;
        if allowed {
            timestamps.push(check.now_ms);
            // Durable before the verdict leaves: a restart forgets no counted request.
            storage.put_json("timestamps", &timestamps).await?;
        }
        let reset_ms = timestamps
            .first()
            .map_or(0, |oldest| (oldest + check.window_ms).saturating_sub(check.now_ms));
        let verdict = Verdict {
            allowed,
            remaining: check.limit.saturating_sub(timestamps.len() as u64),
            reset_ms,
        };
        self.timestamps = Some(timestamps);
        Response::json(&verdict)
    }
}
