//! A counter and a small KV console on the `COUNTS` binding.
//!
//! - `GET /` increments `counter` and answers the new count.
//! - `GET /ttl?key=k&value=v&ttl=s` puts with a TTL (seconds).
//! - `GET /get?key=k` answers the value, or 404.
//! - `GET /list?prefix=p&cursor=c&limit=n` answers a page of keys as JSON.
//! - `GET /entry?key=k` answers value, metadata, expiration and version as JSON.
//! - `PUT /put?key=k[&ttl=s][&metadata=json]` stores the request body.
//! - `DELETE /delete?key=k`, `POST /incr?key=k&delta=n[&ttl=s]`,
//!   `POST /cas?key=k[&version=n]` (body = new value; 409 on a version conflict).
//!
//! Mounted under a path route, set `vars = { BASE_PATH = "/kv" }`.

use outpost_sdk::stores::kv::{List, Put, Swap};
use outpost_sdk::{Env, Error, Request, Response, Result, reexports::serde_json::json};

const BINDING: &str = "COUNTS";

#[outpost_sdk::fetch]
async fn fetch(req: Request, env: Env) -> Result<Response> {
    let kv = env.kv(BINDING)?;
    let base = env.var("BASE_PATH").unwrap_or_default();
    let param = |name: &str| req.query_param(name);
    let key = || param("key").ok_or_else(|| Error::bad_request("give ?key="));
    let number = |name: &str| -> Result<Option<i64>> {
        param(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| Error::bad_request(format!("`{name}` must be an integer")))
            })
            .transpose()
    };
    outpost_sdk::route!(req, mount = base, {
        GET "/" => |_| {
            let count = kv.increment("counter", 1, None).await?;
            Ok(Response::text(count.to_string()))
        },
        GET "/ttl" => |_| {
            let ttl = number("ttl")?.ok_or_else(|| Error::bad_request("give ?ttl=seconds"))?;
            let value = param("value").unwrap_or_default();
            kv.put_with(&key()?, value, Put::default().ttl(ttl as u64))
                .await?;
            Ok(Response::text("stored"))
        },
        GET "/get" => |_| match kv.get(&key()?).await? {
            Some(value) => Ok(Response::bytes(value)),
            None => Err(Error::not_found()),
        },
        GET "/entry" => |_| {
            let entry = kv.get_entry(&key()?).await?.ok_or_else(Error::not_found)?;
            Response::json(&json!({
                "value": String::from_utf8_lossy(&entry.value),
                "metadata": entry.metadata.as_deref().map(String::from_utf8_lossy),
                "expiration": entry.expiration,
                "version": entry.version,
            }))
        },
        GET "/list" => |_| {
            let limit = number("limit")?.map(|n| n.clamp(0, u32::MAX.into()) as u32);
            let page = kv
                .list(List {
                    prefix: param("prefix"),
                    cursor: param("cursor"),
                    limit,
                })
                .await?;
            let keys: Vec<_> = page
                .keys
                .iter()
                .map(|k| {
                    json!({
                        "name": k.name,
                        "expiration": k.expiration,
                        "metadata": k.metadata.as_deref().map(String::from_utf8_lossy),
                    })
                })
                .collect();
            Response::json(&json!({
                "keys": keys,
                "list_complete": page.list_complete,
                "cursor": page.cursor,
            }))
        },
        PUT "/put" => |_| {
            let key = key()?;
            let mut options = Put::default();
            if let Some(ttl) = number("ttl")? {
                options = options.ttl(ttl as u64);
            }
            if let Some(metadata) = param("metadata") {
                options = options.metadata(metadata);
            }
            let value = req.bytes().await?;
            let version = kv.put_with(&key, value, options).await?;
            Response::json(&json!({ "version": version }))
        },
        DELETE "/delete" => |_| {
            kv.delete(&key()?).await?;
            Ok(Response::new(204))
        },
        POST "/incr" => |_| {
            let delta = number("delta")?.unwrap_or(1);
            let ttl = number("ttl")?.map(|t| t as u64);
            let value = kv.increment(&key()?, delta, ttl).await?;
            Ok(Response::text(value.to_string()))
        },
        POST "/cas" => |_| {
            let key = key()?;
            let version = number("version")?.map(|v| v as u64);
            let value = req.bytes().await?;
            match kv
                .compare_and_swap(&key, version, value, Put::default())
                .await?
            {
                Swap::Swapped(version) => Response::json(&json!({ "version": version })),
                Swap::Conflict(current) => {
                    Ok(Response::json(&json!({ "current": current }))?.with_status(409))
                }
            }
        },
        // Opens another binding by name: how a guest learns what it may not open.
        GET "/open" => |_| {
            let name = param("name").unwrap_or_default();
            let opened = match param("kind").as_deref() {
                Some("sql") => env.sql(&name).map(drop),
                Some("blob") => env.blob(&name).map(drop),
                _ => env.kv(&name).map(drop),
            };
            opened.map_err(|e| Error::new(500, e.message().to_string()))?;
            Ok(Response::text("opened"))
        },
    })
}
