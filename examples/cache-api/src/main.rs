//! The two ways a guest uses the node's cache itself, beside the cache in front of it:
//!
//! - `/api/…`: the Cache API (`env.cache()`, Workers' `caches.default`): look the request
//!   up; on a miss, fetch from the origin, store the answer with a `Cache-Control` of our
//!   choosing, and serve it. `DELETE /api/…` drops the entry. `x-cache-api: hit | miss`.
//! - `/fetch/…`: a cached outbound fetch (Workers' `cf: { cacheTtl }`): the node keeps the
//!   origin's answer for `FETCH_TTL` seconds and says `x-outpost-cache: HIT | MISS`.
//!
//! ```toml
//! vars = { ORIGIN = "http://api.internal:8080", CACHE_CONTROL = "public, max-age=60", FETCH_TTL = "60" }
//! outbound = ["http://api.internal:8080"]
//! cache = { enabled = true }
//! ```

use outpost_sdk::{CacheOptions, Env, Error, Request, Response, Result};

#[outpost_sdk::fetch]
async fn fetch(req: Request, env: Env) -> Result<Response> {
    let origin = env
        .var("ORIGIN")
        .ok_or_else(|| Error::internal("set the ORIGIN var to the API's base URL"))?;
    let origin = origin.trim_end_matches('/').to_string();
    outpost_sdk::route!(req, mount = String::new(), {
        GET "/fetch/*path" => |_| cached_fetch(req, env, &origin).await,
        DELETE "/api/*path" => |_| {
            let removed = env.cache().delete(&req.uri().to_string()).await?;
            Ok(Response::text(if removed { "removed" } else { "not cached" }))
        },
        GET "/api/*path" => |_| cache_api(req, env, &origin).await,
    })
}

/// Through the node's cache, for `FETCH_TTL` seconds.
async fn cached_fetch(req: Request, env: Env, origin: &str) -> Result<Response> {
    let ttl = env
        .var("FETCH_TTL")
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let options = CacheOptions::origin().ttl(ttl);
    env.fetch(req.forward_to(origin)?.with_cache(&options))
        .await
}

/// The Cache API: look up, else fetch, store and serve.
async fn cache_api(req: Request, env: Env, origin: &str) -> Result<Response> {
    let cache = env.cache();
    let url = req.uri().to_string();
    if let Some(hit) = cache.lookup(&req).await? {
        return Ok(hit.with_header("x-cache-api", "hit"));
    }
    let fresh = env.fetch(req.forward_to(origin)?).await?;
    let status = fresh.status();
    let passed: Vec<(String, String)> = ["content-type", "set-cookie", "etag"]
        .iter()
        .filter_map(|name| Some((name.to_string(), fresh.header(name)?.to_string())))
        .collect();
    let body = fresh.read_bytes().await?;
    let mut answer = Response::bytes(body.clone()).with_status(status);
    for (name, value) in &passed {
        answer = answer.with_header(name, value);
    }
    if let Some(cache_control) = env.var("CACHE_CONTROL") {
        answer = answer.with_header("cache-control", cache_control);
    }
    // What is put is read whole; the client gets the same bytes.
    let mut stored = Response::bytes(body).with_status(status);
    for (name, value) in answer.headers() {
        if let Ok(value) = value.to_str() {
            stored = stored.with_header(name.as_str(), value);
        }
    }
    let kept = cache.put(&url, stored).await?;
    Ok(answer
        .with_header("x-cache-api", "miss")
        .with_header("x-cache-api-stored", kept.to_string()))
}
