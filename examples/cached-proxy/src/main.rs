//! A cached API proxy: every request goes on to one origin, and the node's cache
//! (`cache = { enabled = true }`) keeps the answers, so repeated and concurrent requests
//! for the same URL reach the origin once per freshness lifetime.
//!
//! ```toml
//! vars = { ORIGIN = "http://api.internal:8080", CACHE_CONTROL = "public, s-maxage=60, stale-while-revalidate=30, stale-if-error=600" }
//! outbound = ["http://api.internal:8080"]
//! cache = { enabled = true }
//! ```
//!
//! The origin's own `Cache-Control` (and `CDN-Cache-Control`, `Surrogate-Control`)
//! decides; when it sends none, the proxy adds `CACHE_CONTROL` (if set), so an origin that
//! knows nothing of caching is still shielded. The response says which origin answered in
//! `x-proxied-by`.

use outpost_sdk::{Env, Error, Request, Response, Result};

#[outpost_sdk::fetch]
async fn fetch(req: Request, env: Env) -> Result<Response> {
    let origin = env
        .var("ORIGIN")
        .ok_or_else(|| Error::internal("set the ORIGIN var to the API's base URL"))?;
    let response = env
        .fetch(req.forward_to(origin.trim_end_matches('/'))?)
        .await?;
    let says_how_to_cache = ["cache-control", "cdn-cache-control", "surrogate-control"]
        .iter()
        .any(|name| response.header(name).is_some());
    let response = match env.var("CACHE_CONTROL") {
        Some(default) if !says_how_to_cache => response.with_header("cache-control", default),
        _ => response,
    };
    Ok(response.with_header("x-proxied-by", "cached-proxy"))
}
