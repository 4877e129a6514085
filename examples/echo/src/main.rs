//! Answers with what it received: method, path, query, headers, the body's length, and the
//! tenant's `GREETING` variable (to show `vars` reaching the guest).
//!
//! The body is counted chunk by chunk, never held whole, so a tenant with a small memory
//! cap can take a large upload. With `?mirror` it streams the request body straight back.

use outpost_sdk::{Env, Request, Response, Result};
use serde_json::{Map, Value, json};

#[outpost_sdk::fetch]
async fn fetch(req: Request, env: Env) -> Result<Response> {
    if req.query_param("mirror").is_some() {
        return Ok(Response::stream(req.into_body())
            .with_header("content-type", "application/octet-stream"));
    }
    let mut headers = Map::new();
    for (name, value) in req.headers() {
        headers.insert(
            name.as_str().to_string(),
            Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        );
    }
    let method = req.method().to_string();
    let path = req.path().to_string();
    let query = req.query().map(str::to_string);
    let mut body = req.into_stream();
    let mut body_length = 0;
    while let Some(chunk) = body.chunk().await? {
        body_length += chunk.len();
    }
    Response::json(&json!({
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body_length": body_length,
        "greeting": env.var("GREETING"),
    }))
}
