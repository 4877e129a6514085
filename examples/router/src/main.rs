//! Path-based routing to origins, the edge's most common job.
//!
//! `vars = { ROUTES = "/api/v1/orders=http://orders.internal:8080 /api/v1/users=https://users.example.com" }`:
//! the longest matching path prefix picks the origin; the request goes there with its
//! method, headers, full path, query and (streamed) body, and the origin's response comes
//! back as it is. No match: 404. Each origin must also be listed in the tenant's
//! `outbound`, or the node refuses the request (502 here).

use outpost_sdk::{Env, Error, Request, Response, Result};

#[outpost_sdk::fetch]
async fn fetch(req: Request, env: Env) -> Result<Response> {
    let routes = env.var("ROUTES").unwrap_or_default();
    let path = req.path().to_string();
    let origin = routes
        .split_whitespace()
        .filter_map(|route| route.split_once('='))
        .filter(|(prefix, _)| matches_prefix(&path, prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, origin)| origin.to_string())
        .ok_or_else(Error::not_found)?;
    env.fetch(req.forward_to(&origin)?).await
}

/// `/api` covers `/api` and `/api/x`, not `/apix`.
fn matches_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty()
}
