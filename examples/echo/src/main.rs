//! Answers with what it received: method, path, query, headers, the body's length, and the
//! tenant's `GREETING` variable (to show `vars` reaching the guest).

use outpost_sdk::{Env, Request, Response, Result};
use serde_json::{Map, Value, json};

#[outpost_sdk::fetch]
async fn fetch(req: Request, env: Env) -> Result<Response> {
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
    let body = req.bytes().await?;
    Response::json(&json!({
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body_length": body.len(),
        "greeting": env.var("GREETING"),
    }))
}
