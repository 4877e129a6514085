//! Static assets: files served by the node in front of the tenant's guest.

mod support;

use bytes::Bytes;
use http::Method;
use support::{Node, run_outpost, tenant};

/// A directory with a page, a stylesheet, a fingerprinted script with precompressed
/// siblings, nested index pages, a big file, a SPA shell and a 404 page; and, outside it,
/// a secret that a link inside points at.
struct Site {
    public: tempfile::TempDir,
    _outside: tempfile::TempDir,
    big: Vec<u8>,
}

fn site() -> Site {
    let public = tempfile::tempdir().expect("dir");
    let outside = tempfile::tempdir().expect("dir");
    let root = public.path();
    let write = |path: &str, content: &[u8]| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    };
    write("index.html", b"<h1>home</h1>");
    write("style.css", b"body { color: teal }");
    write("about.html", b"<h1>about</h1>");
    write("docs/index.html", b"<h1>docs</h1>");
    write("docs/404.html", b"<h1>no such doc</h1>");
    write("404.html", b"<h1>not here</h1>");
    write("app.3f9a2b1c.js", b"console.log('identity')");
    write("app.3f9a2b1c.js.br", b"BROTLI-BYTES");
    write("app.3f9a2b1c.js.gz", b"GZIP-BYTES");
    write("api/static.json", b"{\"from\":\"file\"}");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    write("big.bin", &big);
    std::fs::write(outside.path().join("secret.txt"), "TOP SECRET").expect("write");
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("leak.txt"))
        .expect("link");
    Site {
        public,
        _outside: outside,
        big,
    }
}

fn assets_tenant(site: &Site, extra: &str) -> String {
    tenant(
        "site",
        "hello",
        &["site.test"],
        &format!(
            "assets = {{ directory = {:?}{extra} }}",
            site.public.path().display().to_string()
        ),
    )
}

const GUEST: &str = "hello from outpost";

#[tokio::test]
async fn files_are_served_with_validators_ranges_and_encodings_and_misses_reach_the_guest() {
    let site = site();
    let node = Node::start(&assets_tenant(&site, ", run_worker_first = [\"/api/*\"]")).await;
    let get = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        node.send_bytes(Method::GET, "site.test", path, headers, Bytes::new())
    };

    let (status, headers, body) = get("/style.css", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body, "body { color: teal }");
    assert_eq!(headers["content-type"], "text/css; charset=utf-8");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=0, must-revalidate"
    );
    assert_eq!(headers["accept-ranges"], "bytes");
    let etag = headers["etag"].to_str().expect("etag").to_string();
    let modified = headers["last-modified"].to_str().expect("date").to_string();
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");

    // HEAD: the same headers, no body.
    let (status, head, body) = node
        .send_bytes(Method::HEAD, "site.test", "/style.css", &[], Bytes::new())
        .await;
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(head["content-length"], "20");
    assert_eq!(head["etag"], etag.as_str());

    // Conditionals: the ETag (even weak, in a list) and the date answer 304.
    let weak = format!("\"nope\", W/{etag}");
    for (name, value) in [("if-none-match", &weak), ("if-modified-since", &modified)] {
        let (status, headers, body) = node
            .send_bytes(
                Method::GET,
                "site.test",
                "/style.css",
                &[(name, value)],
                Bytes::new(),
            )
            .await;
        assert_eq!((status, body.len()), (304, 0), "{name}");
        assert_eq!(headers["etag"], etag.as_str());
    }
    let (status, _, _) = get("/style.css", &[("if-none-match", "\"changed\"")]).await;
    assert_eq!(status, 200);

    // Ranges, from memory and from disk (big.bin is over the in-memory size).
    let (status, headers, body) = get("/style.css", &[("range", "bytes=0-3")]).await;
    assert_eq!((status, &body[..]), (206, &b"body"[..]));
    assert_eq!(headers["content-range"], "bytes 0-3/20");
    let (status, headers, _) = get("/style.css", &[("range", "bytes=99-")]).await;
    assert_eq!(status, 416);
    assert_eq!(headers["content-range"], "bytes */20");
    let (status, headers, body) = get("/big.bin", &[("range", "bytes=2500000-2500099")]).await;
    assert_eq!(status, 206);
    assert_eq!(headers["content-range"], "bytes 2500000-2500099/3000000");
    assert_eq!(&body[..], &site.big[2_500_000..2_500_100]);
    let (status, _, body) = get("/big.bin", &[]).await;
    assert_eq!(status, 200);
    assert!(body == site.big, "the whole big file, streamed from disk");
    // An If-Range that no longer matches gets the whole file.
    let (status, _, body) = get(
        "/style.css",
        &[("range", "bytes=0-3"), ("if-range", "\"old\"")],
    )
    .await;
    assert_eq!((status, body.len()), (200, 20));

    // Precompressed siblings by Accept-Encoding; a fingerprinted name is immutable.
    let (_, headers, body) = get("/app.3f9a2b1c.js", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(body, "BROTLI-BYTES");
    assert_eq!(headers["content-encoding"], "br");
    assert_eq!(headers["vary"], "accept-encoding");
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let (_, headers, body) = get(
        "/app.3f9a2b1c.js",
        &[("accept-encoding", "br;q=0, gzip;q=0.8")],
    )
    .await;
    assert_eq!(body, "GZIP-BYTES");
    assert_eq!(headers["content-encoding"], "gzip");
    let (_, headers, body) = get("/app.3f9a2b1c.js", &[]).await;
    assert_eq!(body, "console.log('identity')");
    assert!(headers.get("content-encoding").is_none());

    // Directories and extensionless pages.
    assert_eq!(get("/", &[]).await.2, "<h1>home</h1>");
    assert_eq!(get("/docs/", &[]).await.2, "<h1>docs</h1>");
    assert_eq!(get("/about", &[]).await.2, "<h1>about</h1>");
    let (status, headers, _) = get("/docs?page=2", &[]).await;
    assert_eq!(status, 307);
    assert_eq!(headers["location"], "/docs/?page=2");

    // Not a file, or routed to the guest first: the guest answers.
    let (status, _, body) = get("/orders/17", &[]).await;
    assert_eq!((status, &body[..]), (200, GUEST.as_bytes()));
    assert_eq!(get("/api/static.json", &[]).await.2, GUEST);
    let (_, _, body) = node
        .send_bytes(Method::POST, "site.test", "/style.css", &[], Bytes::new())
        .await;
    assert_eq!(body, GUEST, "only GET and HEAD are served from files");
}

#[tokio::test]
async fn paths_never_leave_the_directory() {
    let site = site();
    let node = Node::start(&assets_tenant(&site, "")).await;
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/docs/%2E%2E/%2e%2e/secret.txt",
        "/..%2f..%2fetc%2fpasswd",
        "/docs/..%5c..%5csecret.txt",
        "/style.css%00.png",
    ] {
        let reply = node.get("site.test", path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        assert!(!reply.body.contains("SECRET"), "{path}");
    }
    // A link inside the directory to a file outside it is not indexed: the guest answers.
    let reply = node.get("site.test", "/leak.txt").await;
    assert_eq!(reply.body, GUEST);
    assert!(
        node.wait_for_log(|line| line.contains("links outside the asset directory"))
            .await,
        "the skipped link is logged: {}",
        node.logs()
    );
}

#[tokio::test]
async fn navigations_to_missing_paths_get_the_app_shell_or_the_404_page() {
    let site = site();
    let spa = assets_tenant(&site, ", not_found_handling = \"single-page-application\"");
    let pages = tenant(
        "pages",
        "hello",
        &["pages.test"],
        &format!(
            "assets = {{ directory = {:?}, not_found_handling = \"404-page\" }}",
            site.public.path().display().to_string()
        ),
    );
    let node = Node::start(&format!("{spa}{pages}")).await;
    let navigate = [("sec-fetch-mode", "navigate")];
    let browser = [("accept", "text/html,application/xhtml+xml,*/*;q=0.8")];

    let (status, _, body) = node
        .send_bytes(
            Method::GET,
            "site.test",
            "/app/settings",
            &navigate,
            Bytes::new(),
        )
        .await;
    assert_eq!((status, &body[..]), (200, &b"<h1>home</h1>"[..]));
    let (_, _, body) = node
        .send_bytes(
            Method::GET,
            "site.test",
            "/app/settings",
            &browser,
            Bytes::new(),
        )
        .await;
    assert_eq!(body, "<h1>home</h1>");
    // A script's fetch of a missing path is the guest's.
    let (_, _, body) = node
        .send_bytes(
            Method::GET,
            "site.test",
            "/app/settings",
            &[("sec-fetch-mode", "cors")],
            Bytes::new(),
        )
        .await;
    assert_eq!(body, GUEST);

    let (status, _, body) = node
        .send_bytes(
            Method::GET,
            "pages.test",
            "/docs/missing",
            &navigate,
            Bytes::new(),
        )
        .await;
    assert_eq!((status, &body[..]), (404, &b"<h1>no such doc</h1>"[..]));
    let (status, _, body) = node
        .send_bytes(
            Method::GET,
            "pages.test",
            "/nowhere/deep",
            &navigate,
            Bytes::new(),
        )
        .await;
    assert_eq!((status, &body[..]), (404, &b"<h1>not here</h1>"[..]));
    assert_eq!(node.get("pages.test", "/nowhere/deep").await.body, GUEST);
}

#[tokio::test]
async fn a_reload_serves_new_files() {
    let site = site();
    let node = Node::start(&assets_tenant(&site, "")).await;
    assert_eq!(node.get("site.test", "/new.txt").await.body, GUEST);
    std::fs::write(site.public.path().join("new.txt"), "fresh").expect("write");
    node.signal("HUP");
    assert!(
        node.wait_for_log(|line| line.contains("config reloaded"))
            .await,
        "{}",
        node.logs()
    );
    assert_eq!(node.get("site.test", "/new.txt").await.body, "fresh");
}

#[test]
fn a_missing_asset_directory_is_named_by_check() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("outpost.toml");
    let block = tenant("site", "hello", &["/"], "assets = \"./no-such-dir\"");
    std::fs::write(&config, format!("[node]\ndata_dir = \"data\"\n\n{block}")).expect("write");
    let (code, output) = run_outpost(&["check", "--config", &config.display().to_string()]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("tenant `site`"), "{output}");
    assert!(output.contains("`assets`"), "{output}");
    assert!(output.contains("no-such-dir"), "{output}");
    assert!(output.contains("outpost.toml:"), "{output}");
}

#[tokio::test]
async fn the_static_site_example_serves_its_files_and_its_guest_answers_the_api() {
    let public = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/static-site/public");
    let node = Node::start(&tenant(
        "site",
        "static-site",
        &["site.test"],
        &format!(
            "assets = {{ directory = {public:?}, not_found_handling = \"single-page-application\", run_worker_first = [\"/api/*\"] }}"
        ),
    ))
    .await;
    let page = node.get("site.test", "/").await;
    assert!(page.body.contains("Served by the node"), "{}", page.body);
    let script = node
        .send_bytes(
            Method::GET,
            "site.test",
            "/assets/app.5d41402a.js",
            &[("accept-encoding", "gzip")],
            Bytes::new(),
        )
        .await;
    assert_eq!(script.1["content-encoding"], "gzip");
    assert_eq!(&script.2[..2], &[0x1f, 0x8b], "gzip bytes");
    let api = node.get("site.test", "/api/hello").await;
    assert_eq!(
        api.json()["message"],
        "hello from the guest behind the static site"
    );
    let (status, _, body) = node
        .send_bytes(
            Method::GET,
            "site.test",
            "/deep/link",
            &[("sec-fetch-mode", "navigate")],
            Bytes::new(),
        )
        .await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("Served by the node"));
    assert_eq!(node.get("site.test", "/missing.png").await.status, 404);
}
