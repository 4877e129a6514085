//! Micro-benchmarks (`cargo bench --bench micro`): the per-request and start-up costs that
//! the load harness (`cargo xtask bench`) sees only in aggregate. Needs the example guests
//! (`cargo xtask build-examples`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use outpost_config::{Limits, Location, NodeConfig, Route, TenantConfig};
use outpost_runtime::{Runtime, Tenant};
use outpost_server::Router;

fn example(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-examples`",
        path.display()
    );
    path
}

fn runtime(data_dir: &Path) -> Arc<Runtime> {
    Runtime::new(
        &NodeConfig {
            id: "bench".into(),
            data_dir: data_dir.to_path_buf(),
            max_instances: 100,
            watch: false,
            cache_memory: outpost_config::DEFAULT_CACHE_MEMORY,
            compile: Default::default(),
        },
        outpost_bindings::NodeStores::new(data_dir, outpost_config::DEFAULT_CACHE_MEMORY),
    )
    .expect("engine")
}

fn tenant_config(name: &str, component: PathBuf) -> TenantConfig {
    TenantConfig {
        stores: Default::default(),
        outbound: Vec::new(),
        secrets: Default::default(),
        tls: None,
        assets: None,
        cache: Default::default(),
        durable_objects: Default::default(),
        name: name.into(),
        component_at: Location {
            file: "bench.toml".into(),
            line: 0,
            column: 0,
        },
        component,
        routes: vec![Route::parse("/").expect("route")],
        vars: Default::default(),
        limits: Limits::default(),
        reuse: false,
    }
}

/// A fresh instance of `hello` from the pool, one request through it, the body read: the
/// per-request cost of the runtime without HTTP parsing or sockets.
fn instantiate_and_handle(c: &mut Criterion) {
    let data = tempfile::tempdir().expect("temp dir");
    let runtime = runtime(data.path());
    let tenant =
        Tenant::load(&runtime, &tenant_config("hello", example("hello"))).expect("load hello");
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    c.bench_function("instantiate_and_handle_hello", |b| {
        b.to_async(&tokio).iter(|| async {
            let (status, body) = handle_once(&tenant, http::Method::GET, "/", b"").await;
            assert_eq!((status, &body[..]), (200, &b"hello from outpost"[..]));
        })
    });
}

/// One request through a fresh instance of `tenant`; answers status and body.
async fn handle_once(
    tenant: &Tenant,
    method: http::Method,
    uri: &str,
    body: &'static [u8],
) -> (u16, bytes::Bytes) {
    let admission = tenant
        .try_admit(std::net::IpAddr::from([127, 0, 0, 1]))
        .expect("under the concurrency limit");
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://bench.test{uri}"))
        .body(
            http_body_util::Full::new(bytes::Bytes::from_static(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("request");
    let response = tenant
        .handle(admission, Arc::from("bench"), request)
        .await
        .expect("a response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

/// The stores as a guest sees them, each through a fresh instance like a real request:
/// a KV read and a KV write (acknowledged after fsync, so this measures the disk too) with
/// `kv-counter`, a SQL point query with `sql-todo`. Subtract `instantiate_and_handle_hello`
/// for the store's own share.
fn stores(c: &mut Criterion) {
    let data = tempfile::tempdir().expect("temp dir");
    let runtime = runtime(data.path());
    let mut kv_config = tenant_config("kv", example("kv-counter"));
    kv_config.stores.kv = [("COUNTS".to_string(), Default::default())].into();
    let kv = Tenant::load(&runtime, &kv_config).expect("load kv-counter");
    let mut sql_config = tenant_config("sql", example("sql-todo"));
    sql_config.stores.sql = vec!["DB".into()];
    let sql = Tenant::load(&runtime, &sql_config).expect("load sql-todo");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(async {
        let put = handle_once(&kv, http::Method::PUT, "/put?key=greeting", b"hello").await;
        assert_eq!(put.0, 200, "{:?}", put.1);
        for _ in 0..100 {
            let post = handle_once(&sql, http::Method::POST, "/todos", br#"{"title":"t"}"#).await;
            assert_eq!(post.0, 201, "{:?}", post.1);
        }
    });
    c.bench_function("kv_get_through_guest", |b| {
        b.to_async(&tokio).iter(|| async {
            let (status, body) =
                handle_once(&kv, http::Method::GET, "/get?key=greeting", b"").await;
            assert_eq!((status, &body[..]), (200, &b"hello"[..]));
        })
    });
    c.bench_function("kv_put_through_guest", |b| {
        b.to_async(&tokio).iter(|| async {
            let (status, _) = handle_once(&kv, http::Method::PUT, "/put?key=k", b"v").await;
            assert_eq!(status, 200);
        })
    });
    c.bench_function("sql_point_query_through_guest", |b| {
        b.to_async(&tokio).iter(|| async {
            let (status, body) = handle_once(&sql, http::Method::GET, "/todos/42", b"").await;
            assert_eq!(status, 200, "{body:?}");
        })
    });
}

/// Routing among 1,000 tenants' routes: exact hosts, wildcards and path prefixes.
fn router_match(c: &mut Criterion) {
    let routes: Vec<Vec<Route>> = (0..1000)
        .map(|i| {
            let text = match i % 4 {
                0 => format!("tenant{i}.example.com"),
                1 => format!("*.zone{i}.example.net"),
                2 => format!("api.example.org/v{i}"),
                _ => format!("/static{i}"),
            };
            vec![Route::parse(&text).expect("route")]
        })
        .collect();
    let router = Router::new(routes.iter().enumerate().map(|(i, r)| (i, r.as_slice())));
    c.bench_function("router_match_1000_routes", |b| {
        b.iter(|| {
            let exact = router.route("tenant500.example.com:443", "/cart");
            let wildcard = router.route("a.zone501.example.net", "/");
            let path = router.route("api.example.org", "/v502/orders");
            let miss = router.route("nowhere.test", "/x");
            std::hint::black_box((exact, wildcard, path, miss))
        })
    });
}

/// Mapping one compiled component in from the on-disk cache, as a restart does.
fn compile_cache_load(c: &mut Criterion) {
    let data = tempfile::tempdir().expect("temp dir");
    let runtime = runtime(data.path());
    let wasm = std::fs::read(example("hello")).expect("hello.wasm");
    runtime
        .load_through_compile_cache(&wasm)
        .expect("first load compiles");
    c.bench_function("compile_cache_load_hello", |b| {
        b.iter(|| {
            let outcome = runtime.load_through_compile_cache(&wasm).expect("load");
            assert_eq!(outcome, outpost_runtime::CacheOutcome::Hit);
        })
    });
}

criterion_group!(
    benches,
    instantiate_and_handle,
    router_match,
    compile_cache_load,
    stores
);
criterion_main!(benches);
