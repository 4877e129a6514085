//! The admin API's request handling, on a real node (one tenant, its data in a temporary
//! directory): any method, path, token and body.

use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use http_body_util::Full;
use outpost_bindings::NodeStores;
use outpost_config::Config;
use outpost_runtime::Runtime;
use outpost_server::admin::Admin;
use outpost_server::control::Control;
use outpost_server::metrics::Metrics;

const TOKEN: &str = "fuzzing-admin-token-0123456789";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    admin: Arc<Admin>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let hello = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/target/wasm32-wasip2/release/hello.wasm"
        );
        let text = format!(
            "[node]\ndata_dir = \"data\"\nmax_instances = 8\n\n[server]\nlisten = \"127.0.0.1:0\"\nadmin = {{ listen = \"127.0.0.1:0\", token_env = \"OUTPOST_FUZZ_ADMIN_TOKEN\" }}\n\n[[tenant]]\nname = \"hello\"\ncomponent = {hello:?}\nroutes = [\"/\"]\nkv = [\"KV\"]\ncache = {{ enabled = true }}\n"
        );
        let path = dir.path().join("outpost.toml");
        std::fs::write(&path, &text).expect("write config");
        // SAFETY: set once, before any thread of this process reads the environment.
        unsafe { std::env::set_var("OUTPOST_FUZZ_ADMIN_TOKEN", TOKEN) };
        let config = Config::load(&path).unwrap_or_else(|e| panic!("fixture config: {e}"));
        let token = config.server.admin.as_ref().expect("admin").token.clone();
        let runtime = tokio::runtime::Runtime::new().expect("tokio");
        let admin = runtime.block_on(async {
            let stores = NodeStores::new(&config.node.data_dir, config.node.cache_memory);
            let node = Runtime::new(&config.node, stores).expect("runtime");
            let metrics = Metrics::new();
            let control = tokio::task::spawn_blocking({
                let metrics = metrics.clone();
                move || Control::start(node, metrics, config)
            })
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("fixture tenants: {e:?} (run `cargo xtask build-examples`)"));
            let admin = Admin::new(token);
            admin.ready(Arc::new(control), metrics);
            admin
        });
        Fixture {
            runtime,
            admin,
            _dir: dir,
        }
    })
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    segments: Vec<String>,
    token: Token,
    content_type: Option<String>,
    body: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Token {
    Right,
    Wrong(String),
    Missing,
}

const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"];
/// Known path segments, so inputs reach past the router more often than by chance.
const WORDS: &[&str] = &[
    "tenants",
    "hello",
    "component",
    "rollback",
    "purge",
    "reload",
    "metrics",
    "fleet",
    "healthz",
    "readyz",
];

pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let method = METHODS[input.method as usize % METHODS.len()];
    let path: String = input
        .segments
        .iter()
        .take(6)
        .map(|s| match s.parse::<usize>() {
            Ok(i) => format!("/{}", WORDS[i % WORDS.len()]),
            Err(_) => format!("/{s}"),
        })
        .collect();
    let Ok(mut request) = http::Request::builder()
        .method(method)
        .uri(if path.is_empty() { "/" } else { &path })
        .body(Full::new(Bytes::from(input.body)))
    else {
        return;
    };
    let authorization = match &input.token {
        Token::Right => Some(format!("Bearer {TOKEN}")),
        Token::Wrong(token) => Some(format!("Bearer {token}")),
        Token::Missing => None,
    };
    if let Some(value) = authorization.and_then(|a| http::HeaderValue::from_str(&a).ok()) {
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    }
    if let Some(value) = input
        .content_type
        .and_then(|c| http::HeaderValue::from_str(&c).ok())
    {
        request
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    let fixture = fixture();
    let response = fixture.runtime.block_on(fixture.admin.respond(request));
    let status = response.status().as_u16();
    // A bad request is the caller's error (4xx), never the node's (500).
    assert_ne!(status, 500, "{method} {path} answered 500: {response:?}");
    // The admin API reads its path as segments between slashes (`//healthz` is `/healthz`).
    let open = method == "GET" && matches!(path.trim_matches('/'), "healthz" | "readyz");
    let right = match &input.token {
        Token::Right => true,
        Token::Wrong(token) => token == TOKEN,
        Token::Missing => false,
    };
    if !open && !right {
        assert_eq!(
            status, 401,
            "{method} {path} without the token answered {status}"
        );
    }
}
