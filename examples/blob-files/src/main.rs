//! A file store on the `FILES` blob binding; bodies stream both ways.
//!
//! - `PUT /files/:key` stores the request body (its `content-type` and `x-meta-*`
//!   headers are kept) and answers the object's info as JSON (201).
//! - `GET /files/:key` streams it back; a `Range: bytes=…` header gets 206 (416 when
//!   the range is past the end). `HEAD` gives the headers alone.
//! - `DELETE /files/:key` (204), `GET /files?prefix=&delimiter=/&cursor=&limit=` lists.
//!
//! Mounted under a path route, set `vars = { BASE_PATH = "/blob" }`.

use outpost_sdk::stores::blob::{List, ObjectInfo, Put, Range};
use outpost_sdk::{Env, Error, Method, Request, Response, Result, Router, StoreError};

#[outpost_sdk::fetch]
async fn fetch(req: Request, env: Env) -> Result<Response> {
    Router::new()
        .mount(env.var("BASE_PATH").unwrap_or_default())
        .get("/files", |req, env, _| list(req, env))
        .put("/files/*key", |req, env, params| async move {
            put(
                req,
                env,
                percent_decode(params.get("key").unwrap_or_default())?,
            )
            .await
        })
        .on(Method::HEAD, "/files/*key", |_, env, params| async move {
            head(env, percent_decode(params.get("key").unwrap_or_default())?).await
        })
        .get("/files/*key", |req, env, params| async move {
            get(
                req,
                env,
                percent_decode(params.get("key").unwrap_or_default())?,
            )
            .await
        })
        .delete("/files/*key", |_, env, params| async move {
            let key = percent_decode(params.get("key").unwrap_or_default())?;
            env.blob("FILES")?.delete(&key).await?;
            Ok(Response::new(204))
        })
        .run(req, env)
        .await
}

async fn list(req: Request, env: Env) -> Result<Response> {
    let limit = match req.query_param("limit") {
        Some(limit) => Some(limit.parse().map_err(|_| Error::bad_request("bad limit"))?),
        None => None,
    };
    let listing = env
        .blob("FILES")?
        .list(List {
            prefix: req.query_param("prefix"),
            delimiter: req.query_param("delimiter"),
            cursor: req.query_param("cursor"),
            limit,
        })
        .await?;
    Response::json(&listing)
}

async fn put(req: Request, env: Env, key: String) -> Result<Response> {
    let mut options = Put::default();
    if let Some(content_type) = req.header("content-type") {
        options = options.content_type(content_type);
    }
    for (name, value) in req.headers() {
        if let (Some(meta), Ok(value)) = (name.as_str().strip_prefix("x-meta-"), value.to_str()) {
            options = options.metadata(meta, value);
        }
    }
    let info = env
        .blob("FILES")?
        .put_stream(&key, req.into_stream(), options)
        .await?;
    Ok(Response::json(&info)?.with_status(201))
}

async fn get(req: Request, env: Env, key: String) -> Result<Response> {
    let range = match req.header("range") {
        Some(header) => {
            Some(Range::from_header(header).ok_or_else(|| Error::new(416, "unsupported range"))?)
        }
        None => None,
    };
    let object = match env.blob("FILES")?.get_range(&key, range).await {
        Ok(found) => found.ok_or_else(Error::not_found)?,
        // A range the object cannot satisfy: 416 with the object's size, as HTTP asks.
        Err(Error::Store(StoreError::RangeNotSatisfiable { size })) => {
            return Ok(Response::text(format!(
                "the range cannot be satisfied: the object is {size} bytes"
            ))
            .with_status(416)
            .with_header("content-range", format!("bytes */{size}")));
        }
        Err(e) => return Err(e),
    };
    let status = if range.is_some() { 206 } else { 200 };
    let content_range = object.content_range();
    let mut response = headers(Response::new(200), &object.info)
        .with_header("content-length", object.range_length.to_string());
    if range.is_some() {
        response = response.with_header("content-range", content_range);
    }
    Ok(response.with_body(object.into_body()).with_status(status))
}

async fn head(env: Env, key: String) -> Result<Response> {
    let info = env
        .blob("FILES")?
        .head(&key)
        .await?
        .ok_or_else(Error::not_found)?;
    Ok(headers(Response::new(200), &info).with_header("content-length", info.size.to_string()))
}

fn headers(mut response: Response, info: &ObjectInfo) -> Response {
    response = response
        .with_header(
            "content-type",
            info.content_type
                .as_deref()
                .unwrap_or("application/octet-stream"),
        )
        .with_header("accept-ranges", "bytes")
        .with_header(
            "last-modified",
            httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(info.uploaded),
            ),
        );
    if let Some(etag) = &info.etag {
        response = response.with_header("etag", format!("\"{}\"", etag.trim_matches('"')));
    }
    for (name, value) in &info.metadata {
        response = response.with_header(&format!("x-meta-{name}"), value);
    }
    response
}

fn percent_decode(raw: &str) -> Result<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::bad_request("bad percent-encoding in the key"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::bad_request("the key is not UTF-8"))
}
