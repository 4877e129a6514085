//! The cache in front of a tenant's guest: collapsed misses, stale-while-revalidate,
//! stale-if-error, the storing rules, purges and deploys. The guest is the cached-proxy
//! example in front of a real HTTP origin that counts what reaches it.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use support::origin::{Behaviour, Origin};
use support::{Node, Reply, admin_call, example, free_port};

const TOKEN: &str = "cache-test-admin-token-77f3";

struct Cached {
    node: Node,
    origin: Origin,
    admin: SocketAddr,
}

/// A node with the cached-proxy tenant `shop` (routes `shop.test`) in front of an origin
/// that answers as `behaviour` says; `cache` is the tenant's cache table's extra keys.
async fn start(behaviour: Behaviour, cache: &str) -> Cached {
    start_guest(
        "cached-proxy",
        "",
        behaviour,
        &format!("enabled = true{cache}"),
    )
    .await
}

/// Like [`start`], with guest `component` and more `vars` (`, NAME = "value"`).
async fn start_guest(component: &str, vars: &str, behaviour: Behaviour, cache: &str) -> Cached {
    let origin = Origin::start_with("api", behaviour).await;
    let dir = tempfile::tempdir().expect("dir");
    let (addr, admin) = (free_port(), free_port());
    let config = dir.path().join("outpost.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\ndata_dir = \"data\"\n\n[server]\nlisten = \"{addr}\"\nadmin = {{ listen = \"{admin}\" }}\n\n\
             [[tenant]]\nname = \"shop\"\ncomponent = {:?}\nroutes = [\"shop.test\"]\n\
             vars = {{ ORIGIN = {:?}{vars} }}\noutbound = [{:?}]\ncache = {{ {cache} }}\n",
            example(component).display().to_string(),
            origin.url(),
            origin.url(),
        ),
    )
    .expect("config");
    let node = Node::start_with_env(dir, &config, addr, &[("OUTPOST_ADMIN_TOKEN", TOKEN)]).await;
    Cached {
        node,
        origin,
        admin,
    }
}

impl Cached {
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.node
            .send(Method::GET, "shop.test", path, headers, Bytes::new())
            .await
    }

    /// Requests for `path` that reached the origin.
    fn origin_saw(&self, path: &str) -> usize {
        self.origin
            .seen()
            .iter()
            .filter(|seen| seen.path_and_query == path)
            .count()
    }

    async fn purge(&self, body: serde_json::Value) -> Reply {
        admin_call(
            self.admin,
            Method::POST,
            "/tenants/shop/purge",
            Some(TOKEN),
            serde_json::to_vec(&body).expect("json"),
        )
        .await
    }

    /// Waits (up to 10 s) until the origin has seen `count` requests for `path`.
    async fn wait_for_origin(&self, path: &str, count: usize) -> bool {
        for _ in 0..500 {
            if self.origin_saw(path) >= count {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

fn cache_status(reply: &Reply) -> &str {
    reply.header("x-outpost-cache").unwrap_or("(none)")
}

/// Sends `count` GETs for `path` at once; answers every reply.
async fn burst(cached: &Cached, path: &str, count: usize) -> Vec<Reply> {
    let requests = (0..count).map(|_| cached.get(path, &[]));
    futures::future::join_all(requests).await
}

/// Sleeps past an entry's `max-age=1` freshness: time passing is what is tested here.
async fn past_one_second() {
    tokio::time::sleep(Duration::from_millis(1_300)).await;
}

#[tokio::test]
async fn five_hundred_concurrent_misses_reach_a_slow_origin_once_cold_and_expired() {
    let cached = start(
        Behaviour {
            delay: Duration::from_millis(200),
            status: Some(200),
            headers: vec![("cache-control", "public, max-age=1")],
            ..Behaviour::default()
        },
        "",
    )
    .await;
    let replies = burst(&cached, "/hot", 500).await;
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, "api saw GET /hot");
    }
    assert_eq!(
        cached.origin_saw("/hot"),
        1,
        "a cold key: one origin request"
    );
    let hit = cached.get("/hot", &[]).await;
    assert_eq!(cache_status(&hit), "HIT");

    past_one_second().await;
    let replies = burst(&cached, "/hot", 500).await;
    assert!(replies.iter().all(|r| r.body == "api saw GET /hot"));
    assert!(
        replies.iter().any(|r| cache_status(r) == "EXPIRED"),
        "the refetch says EXPIRED"
    );
    assert_eq!(
        cached.origin_saw("/hot"),
        2,
        "an expired key: one more origin request"
    );
    let metrics = admin_call(
        cached.admin,
        Method::GET,
        "/metrics",
        Some(TOKEN),
        Vec::new(),
    )
    .await
    .body;
    let waiters = metrics
        .lines()
        .find(|l| l.starts_with("outpost_cache_collapsed_waiters_total{tenant=\"shop\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no collapsed waiters metric:\n{metrics}"));
    assert!(waiters > 0, "{metrics}");
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_at_once_and_refreshes_once() {
    let cached = start(
        Behaviour {
            delay: Duration::from_millis(200),
            status: Some(200),
            headers: vec![(
                "cache-control",
                "public, max-age=1, stale-while-revalidate=60",
            )],
            ..Behaviour::default()
        },
        "",
    )
    .await;
    assert_eq!(cache_status(&cached.get("/swr", &[]).await), "MISS");
    past_one_second().await;
    let replies = burst(&cached, "/swr", 20).await;
    for reply in &replies {
        assert_eq!(reply.body, "api saw GET /swr");
        assert_eq!(
            cache_status(reply),
            "UPDATING",
            "stale, while one refreshes"
        );
    }
    assert!(cached.wait_for_origin("/swr", 2).await, "the refresh ran");
    // The refreshed entry serves; nothing else went to the origin.
    let mut fresh = cached.get("/swr", &[]).await;
    for _ in 0..100 {
        if cache_status(&fresh) == "HIT" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        fresh = cached.get("/swr", &[]).await;
    }
    assert_eq!(cache_status(&fresh), "HIT");
    assert_eq!(cached.origin_saw("/swr"), 2, "exactly one refresh");
}

#[tokio::test]
async fn stale_if_error_serves_the_stale_copy_until_its_window_ends() {
    let failing = Arc::new(AtomicBool::new(false));
    let cached = start(
        Behaviour {
            status: Some(200),
            headers: vec![("cache-control", "public, max-age=1, stale-if-error=2")],
            failing_now: Some(failing.clone()),
            ..Behaviour::default()
        },
        "",
    )
    .await;
    assert_eq!(cached.get("/sie", &[]).await.body, "api saw GET /sie");
    failing.store(true, Ordering::SeqCst);
    past_one_second().await;
    let stale = cached.get("/sie", &[]).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, "api saw GET /sie");
    assert_eq!(cache_status(&stale), "STALE");
    assert_eq!(cached.origin_saw("/sie"), 2, "it did try the origin");
    // Past max-age + stale-if-error (3 s), the error is served.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let error = cached.get("/sie", &[]).await;
    assert_eq!(error.status, 500, "{}", error.body);
}

#[tokio::test]
async fn what_is_stored_follows_vary_set_cookie_no_store_private_and_206() {
    let cached = start(
        Behaviour {
            status: Some(200),
            headers: vec![("cache-control", "public, max-age=60")],
            by_path: vec![
                (
                    "/vary",
                    200,
                    &[("cache-control", "max-age=60"), ("vary", "accept-language")],
                ),
                (
                    "/cookie",
                    200,
                    &[("cache-control", "max-age=60"), ("set-cookie", "s=1")],
                ),
                ("/nostore", 200, &[("cache-control", "no-store")]),
                ("/private", 200, &[("cache-control", "private, max-age=60")]),
                ("/partial", 206, &[("cache-control", "max-age=60")]),
                (
                    "/cdn",
                    200,
                    &[
                        ("cache-control", "no-store"),
                        ("cdn-cache-control", "max-age=60"),
                    ],
                ),
                (
                    "/surrogate",
                    200,
                    &[
                        ("cache-control", "max-age=60"),
                        ("surrogate-control", "no-store"),
                    ],
                ),
            ],
            ..Behaviour::default()
        },
        "",
    )
    .await;
    let de = [("accept-language", "de")];
    let fr = [("accept-language", "fr")];
    assert_eq!(cache_status(&cached.get("/vary", &de).await), "MISS");
    assert_eq!(cache_status(&cached.get("/vary", &de).await), "HIT");
    assert_eq!(cache_status(&cached.get("/vary", &fr).await), "MISS");
    assert_eq!(cache_status(&cached.get("/vary", &fr).await), "HIT");
    assert_eq!(cache_status(&cached.get("/vary", &de).await), "HIT");
    assert_eq!(cached.origin_saw("/vary"), 2);

    for path in ["/cookie", "/nostore", "/private", "/partial", "/surrogate"] {
        cached.get(path, &[]).await;
        let second = cached.get(path, &[]).await;
        assert_ne!(cache_status(&second), "HIT", "{path}");
        assert_eq!(cached.origin_saw(path), 2, "{path} is never stored");
    }
    let cookie = cached.get("/cookie", &[]).await;
    assert_eq!(cookie.header("set-cookie"), Some("s=1"), "passed through");
    let surrogate = cached.get("/surrogate", &[]).await;
    assert!(
        surrogate.header("surrogate-control").is_none(),
        "meant for the cache only"
    );

    // CDN-Cache-Control wins over Cache-Control for the node; the client sees both.
    cached.get("/cdn", &[]).await;
    let cdn = cached.get("/cdn", &[]).await;
    assert_eq!(cache_status(&cdn), "HIT");
    assert_eq!(cdn.header("cache-control"), Some("no-store"));

    // Range and Authorization requests pass by the cache.
    let ranged = cached.get("/plain", &[("range", "bytes=0-3")]).await;
    assert_eq!(cache_status(&ranged), "BYPASS");
    let authorized = cached.get("/plain", &[("authorization", "Bearer x")]).await;
    assert_eq!(cache_status(&authorized), "BYPASS");
    // A HIT carries Age, and answers If-None-Match with 304 when the origin gave an ETag.
    cached.get("/plain", &[]).await;
    let hit = cached.get("/plain", &[]).await;
    assert_eq!(cache_status(&hit), "HIT");
    assert!(
        hit.header("age")
            .is_some_and(|age| age.parse::<u64>().is_ok())
    );
}

#[tokio::test]
async fn purges_by_tag_prefix_url_and_everything_and_a_deploy_changes_what_is_served() {
    let cached = start(
        Behaviour {
            status: Some(200),
            headers: vec![("cache-control", "public, max-age=600")],
            by_path: vec![
                (
                    "/tagged/1",
                    200,
                    &[
                        ("cache-control", "max-age=600"),
                        ("cache-tag", "product-1, listing"),
                    ],
                ),
                (
                    "/tagged/2",
                    200,
                    &[
                        ("cache-control", "max-age=600"),
                        ("cache-tag", "product-2, listing"),
                    ],
                ),
            ],
            ..Behaviour::default()
        },
        "",
    )
    .await;
    let paths = ["/tagged/1", "/tagged/2", "/blog/a", "/blog/b", "/about"];
    for path in paths {
        cached.get(path, &[]).await;
        assert_eq!(cache_status(&cached.get(path, &[]).await), "HIT", "{path}");
    }
    assert!(
        cached
            .get("/tagged/1", &[])
            .await
            .header("cache-tag")
            .is_none(),
        "Cache-Tag is for the cache"
    );

    let reply = cached
        .purge(serde_json::json!({ "tags": ["product-1"] }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(cached.status("/tagged/1").await, "MISS");
    assert_eq!(cached.status("/tagged/2").await, "HIT");

    cached
        .purge(serde_json::json!({ "prefixes": ["/blog/"] }))
        .await;
    assert_eq!(cached.status("/blog/a").await, "MISS");
    assert_eq!(cached.status("/blog/b").await, "MISS");
    assert_eq!(cached.status("/about").await, "HIT");

    // Through the CLI: an exact URL, then everything.
    let admin = format!("http://{}", cached.admin);
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(["purge", "--admin", &admin, "--tenant", "shop"])
            .args(args)
            .env("OUTPOST_ADMIN_TOKEN", TOKEN)
            .output()
            .expect("run outpost purge");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    cli(&["--url", "https://shop.test/about"]);
    assert_eq!(cached.status("/about").await, "MISS");
    assert_eq!(cached.status("/tagged/2").await, "HIT");
    cli(&["--everything"]);
    assert_eq!(cached.status("/tagged/2").await, "MISS");

    let bad = cached
        .purge(serde_json::json!({ "urls": ["not a url"] }))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    // A deploy: the key carries the version, so the new guest answers at once.
    assert_eq!(cached.get("/about", &[]).await.body, "api saw GET /about");
    let hello = std::fs::read(example("hello")).expect("hello.wasm");
    let deployed = admin_call(
        cached.admin,
        Method::PUT,
        "/tenants/shop/component",
        Some(TOKEN),
        hello,
    )
    .await;
    assert_eq!(deployed.status, 200, "{}", deployed.body);
    assert_eq!(cached.get("/about", &[]).await.body, "hello from outpost");
}

#[tokio::test]
async fn the_cache_stays_within_its_size_under_a_flood_of_keys() {
    let cached = start(
        Behaviour {
            status: Some(200),
            headers: vec![("cache-control", "public, max-age=600")],
            ..Behaviour::default()
        },
        ", max_size = \"64KiB\"",
    )
    .await;
    for round in 0..20 {
        let requests = (0..50).map(|i| cached.get_owned(format!("/flood/{round}/{i}")));
        futures::future::join_all(requests).await;
    }
    let metrics = admin_call(
        cached.admin,
        Method::GET,
        "/metrics",
        Some(TOKEN),
        Vec::new(),
    )
    .await
    .body;
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{tenant=\"shop\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name}:\n{metrics}"))
    };
    assert!(value("outpost_cache_bytes") <= 64 << 10, "{metrics}");
    assert!(value("outpost_cache_bytes") > 0, "{metrics}");
    assert!(value("outpost_cache_evictions_total") > 0, "{metrics}");
}

impl Cached {
    async fn status(&self, path: &str) -> String {
        cache_status(&self.get(path, &[]).await).to_string()
    }

    async fn get_owned(&self, path: String) -> Reply {
        self.get(&path, &[]).await
    }
}

#[tokio::test]
async fn guests_use_the_cache_api_and_cached_fetches() {
    let cached = start_guest(
        "cache-api",
        ", CACHE_CONTROL = \"public, max-age=600\", FETCH_TTL = \"600\"",
        Behaviour {
            status: Some(200),
            delay: Duration::from_millis(200),
            by_path: vec![("/api/cookie", 200, &[("set-cookie", "s=1")])],
            ..Behaviour::default()
        },
        "max_size = \"8MiB\"",
    )
    .await;
    // The Cache API: a miss stores, the next request is answered from the cache.
    let miss = cached.get("/api/quote", &[]).await;
    assert_eq!(miss.body, "api saw GET /api/quote");
    assert_eq!(miss.header("x-cache-api"), Some("miss"));
    assert_eq!(miss.header("x-cache-api-stored"), Some("true"));
    let hit = cached.get("/api/quote", &[]).await;
    assert_eq!(hit.header("x-cache-api"), Some("hit"), "{:?}", hit.headers);
    assert_eq!(hit.body, "api saw GET /api/quote");
    assert_eq!(cached.origin_saw("/api/quote"), 1);
    // match answers Range from the entry.
    let part = cached.get("/api/quote", &[("range", "bytes=0-2")]).await;
    assert_eq!((part.status, part.body.as_str()), (206, "api"));
    // A Set-Cookie response is not stored.
    let cookie = cached.get("/api/cookie", &[]).await;
    assert_eq!(cookie.header("x-cache-api-stored"), Some("false"));
    cached.get("/api/cookie", &[]).await;
    assert_eq!(cached.origin_saw("/api/cookie"), 2);
    // delete drops it.
    let removed = cached
        .node
        .send(Method::DELETE, "shop.test", "/api/quote", &[], Bytes::new())
        .await;
    assert_eq!(removed.body, "removed");
    assert_eq!(
        cached.get("/api/quote", &[]).await.header("x-cache-api"),
        Some("miss")
    );
    assert_eq!(cached.origin_saw("/api/quote"), 2);

    // A cached fetch with a forced TTL: 50 concurrent requests (each runs the guest, so
    // within its 64 slots), one origin request.
    let replies = burst(&cached, "/fetch/hot", 50).await;
    for reply in &replies {
        assert_eq!(reply.body, "api saw GET /fetch/hot", "{}", reply.status);
    }
    assert_eq!(cached.origin_saw("/fetch/hot"), 1);
    let again = cached.get("/fetch/hot", &[]).await;
    assert_eq!(
        again.header("x-outpost-cache"),
        Some("HIT"),
        "{:?}",
        again.headers
    );
    // The cache options never reach the origin.
    let seen = cached.origin.seen();
    let first = seen
        .iter()
        .find(|s| s.path_and_query == "/fetch/hot")
        .expect("seen");
    assert!(first.header("x-outpost-cache-ttl").is_none());
    assert!(first.header("x-outpost-cache-fetch").is_none());
}

#[tokio::test]
async fn the_disk_tier_serves_after_a_restart() {
    let Cached {
        node,
        origin,
        admin,
    } = start(
        Behaviour {
            status: Some(200),
            headers: vec![("cache-control", "public, max-age=600")],
            ..Behaviour::default()
        },
        ", disk = \"4MiB\"",
    )
    .await;
    let first = node.get("shop.test", "/persist").await;
    assert_eq!(first.header("x-outpost-cache"), Some("MISS"));
    // The write to disk runs after the response: wait for the file under its own name
    // (it is written to a `.tmp` name first, and renamed once whole).
    let files = node.dir.path().join("data/cache/shop");
    let mut written = false;
    for _ in 0..500 {
        let renamed = std::fs::read_dir(&files).is_ok_and(|dir| {
            dir.filter_map(Result::ok)
                .any(|entry| !entry.file_name().to_string_lossy().ends_with(".tmp"))
        });
        if renamed {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(written, "no cache file under {}", files.display());
    let addr = node.addr;
    let dir = node.stop();
    let config = dir.path().join("outpost.toml");
    let node = Node::start_with_env(dir, &config, addr, &[("OUTPOST_ADMIN_TOKEN", TOKEN)]).await;
    let cached = Cached {
        node,
        origin,
        admin,
    };
    let again = cached.get("/persist", &[]).await;
    assert_eq!(again.body, "api saw GET /persist");
    assert_eq!(cache_status(&again), "HIT", "from the disk tier");
    assert_eq!(cached.origin_saw("/persist"), 1);
}
