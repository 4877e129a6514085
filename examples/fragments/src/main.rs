//! Assembles a page from fragments fetched concurrently, each cached in KV for its own
//! time, with a fallback when a fragment's origin fails: the edge-side-includes pattern.
//!
//! ```toml
//! kv = ["CACHE"]
//! outbound = ["http://cms.internal:8080"]
//! vars = { FRAGMENTS = "header,60,http://cms.internal:8080/header nav,30,http://cms.internal:8080/nav" }
//! ```
//!
//! Each entry is `name,ttl_seconds,url`. `GET /` answers the page; the `x-fragments`
//! header says where each fragment came from (`cache`, `origin` or `fallback`).

use outpost_sdk::stores::kv::{Kv, Put};
use outpost_sdk::{Env, Error, Method, Request, Response, Result};

struct Fragment {
    name: String,
    ttl: u64,
    url: String,
}

#[outpost_sdk::fetch]
async fn fetch(_req: Request, env: Env) -> Result<Response> {
    let fragments = parse(&env.var("FRAGMENTS").unwrap_or_default())?;
    let cache = env.kv("CACHE")?;
    // All fragments at once: the page takes as long as the slowest, not the sum.
    let parts = futures::future::join_all(
        fragments
            .iter()
            .map(|fragment| load(&env, &cache, fragment)),
    )
    .await;
    let mut page = String::from("<!doctype html>\n<html><body>\n");
    let mut sources = Vec::new();
    for (fragment, (html, source)) in fragments.iter().zip(parts) {
        page.push_str(&html);
        page.push('\n');
        sources.push(format!("{}={source}", fragment.name));
    }
    page.push_str("</body></html>\n");
    Ok(Response::text(page)
        .with_header("content-type", "text/html; charset=utf-8")
        .with_header("x-fragments", sources.join(",")))
}

/// A fragment's HTML and where it came from.
async fn load(env: &Env, cache: &Kv, fragment: &Fragment) -> (String, &'static str) {
    let key = format!("fragment:{}", fragment.name);
    if let Ok(Some(html)) = cache.get_text(&key).await {
        return (html, "cache");
    }
    match fetch_fragment(env, &fragment.url).await {
        Ok(html) => {
            if let Err(e) = cache
                .put_with(&key, &html, Put::default().ttl(fragment.ttl))
                .await
            {
                eprintln!("caching fragment {}: {}", fragment.name, e.message());
            }
            (html, "origin")
        }
        Err(e) => {
            eprintln!("fragment {} failed: {}", fragment.name, e.message());
            (
                format!("<!-- fragment {} unavailable -->", fragment.name),
                "fallback",
            )
        }
    }
}

async fn fetch_fragment(env: &Env, url: &str) -> Result<String> {
    let response = env.fetch(Request::new(Method::GET, url)?).await?;
    if !(200..300).contains(&response.status()) {
        return Err(Error::new(
            502,
            format!("{url} answered {}", response.status()),
        ));
    }
    response.read_text().await
}

fn parse(spec: &str) -> Result<Vec<Fragment>> {
    spec.split_whitespace()
        .map(|entry| {
            let mut fields = entry.splitn(3, ',');
            match (fields.next(), fields.next().map(str::parse), fields.next()) {
                (Some(name), Some(Ok(ttl)), Some(url)) if ttl > 0 => Ok(Fragment {
                    name: name.to_string(),
                    ttl,
                    url: url.to_string(),
                }),
                _ => Err(Error::internal(format!(
                    "FRAGMENTS entry `{entry}` is not name,ttl_seconds,url"
                ))),
            }
        })
        .collect()
}
