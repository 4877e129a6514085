use std::time::Duration;

use super::*;

fn check(source: &str) -> CheckedConfig {
    Config::check_source(source, Path::new("conf/node.toml"))
}

fn only_error(source: &str) -> ConfigError {
    let checked = check(source);
    assert_eq!(
        checked.errors.len(),
        1,
        "expected one error, got {:?}",
        checked.errors
    );
    checked.errors.into_iter().next().unwrap()
}

const TWO_TENANTS: &str = r#"
[node]
id = "fra-1"

[[tenant]]
name = "shop"
component = "shop.wasm"
routes = ["shop.example.com"]

[[tenant]]
name = "blog"
component = "/abs/blog.wasm"
routes = ["/blog"]
vars = { GREETING = "hi", RETRIES = 3 }
limits = { fuel = 5000, memory = "16MiB", timeout = "250ms", concurrency = 2, body = 1024, cpu = "50ms" }
reuse = true
"#;

#[test]
fn valid_config_resolves_paths_and_applies_defaults() {
    let config = Config::parse(TWO_TENANTS, Path::new("conf/node.toml")).unwrap();
    assert_eq!(config.node.id, "fra-1");
    assert_eq!(config.node.data_dir, Path::new("conf/data"));
    assert_eq!(config.server.listen.to_string(), DEFAULT_LISTEN);

    let shop = &config.tenants[0];
    assert_eq!(shop.component, Path::new("conf/shop.wasm"));
    assert_eq!(shop.limits, Limits::default());
    assert!(!shop.reuse);

    let blog = &config.tenants[1];
    assert_eq!(blog.component, Path::new("/abs/blog.wasm"));
    assert_eq!(blog.vars["RETRIES"], "3");
    assert_eq!(
        blog.limits,
        Limits {
            fuel: 5000,
            cpu: Some(Duration::from_millis(50)),
            memory: 16 << 20,
            timeout: Duration::from_millis(250),
            concurrency: 2,
            per_client: None,
            body: 1024,
            sql_size: DEFAULT_SQL_SIZE_BYTES,
            subrequests: crate::DEFAULT_SUBREQUESTS,
            websockets: crate::DEFAULT_WEBSOCKETS,
            live_objects: crate::DEFAULT_LIVE_OBJECTS,
            subrequest_body: crate::DEFAULT_BODY_BYTES,
        }
    );
    assert!(blog.reuse);
}

#[test]
fn syntax_error_names_file_and_line() {
    let error = only_error("[[tenant]]\nname = \"a\"\ncomponent = \n");
    assert_eq!(error.location.file, Path::new("conf/node.toml"));
    assert_eq!(error.location.line, 3);
}

#[test]
fn unknown_key_names_line_key_and_tenant() {
    let error = only_error(
        "[[tenant]]\nname = \"shop\"\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\nlimts = {}\n",
    );
    assert_eq!(error.location.line, 5);
    assert_eq!(error.key.as_deref(), Some("limts"));
    assert_eq!(error.tenant.as_deref(), Some("shop"));
    assert!(error.message.contains("unknown field"), "{error}");
}

#[test]
fn wrong_type_names_the_key() {
    let error = only_error(
        "[[tenant]]\nname = \"shop\"\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\nlimits = { fuel = \"lots\" }\n",
    );
    assert_eq!(error.location.line, 5);
    assert_eq!(error.key.as_deref(), Some("fuel"));
}

#[test]
fn duplicate_tenant_name_points_at_the_second() {
    let error = only_error(
        "[[tenant]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\n\n[[tenant]]\nname = \"a\"\ncomponent = \"b.wasm\"\nroutes = [\"/b\"]\n",
    );
    assert_eq!(error.location.line, 7);
    assert_eq!(error.key.as_deref(), Some("name"));
    assert!(error.message.contains("already used"), "{error}");
}

#[test]
fn route_claimed_by_two_tenants_names_the_owner() {
    let error = only_error(
        "[[tenant]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"example.com/api/\"]\n\n[[tenant]]\nname = \"b\"\ncomponent = \"b.wasm\"\nroutes = [\"example.com/api\"]\n",
    );
    assert_eq!(error.tenant.as_deref(), Some("b"));
    assert_eq!(error.location.line, 9);
    assert!(error.message.contains("claimed by tenant `a`"), "{error}");
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let checked = check(
        r#"
[server]
listen = "nowhere"

[[tenant]]
name = "Bad Name"
component = "a.wasm"
routes = []

[[tenant]]
name = "ok"
component = "b.wasm"
routes = ["/b"]
limits = { memory = "64XB", timeout = "30", concurrency = 0 }
"#,
    );
    let keys: Vec<_> = checked
        .errors
        .iter()
        .map(|e| e.key.clone().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "server.listen",
            "name",
            "routes",
            "limits.memory",
            "limits.timeout",
            "limits.concurrency"
        ]
    );
    assert!(checked.config.unwrap().tenants.is_empty());
}

#[test]
fn out_of_range_memory_is_refused() {
    let error = only_error(
        "[[tenant]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\nlimits = { memory = \"8GiB\" }\n",
    );
    assert!(error.message.contains("out of range"), "{error}");
}

#[test]
fn display_reads_like_a_compiler_message() {
    let error = only_error(
        "[[tenant]]\nname = \"shop\"\ncomponent = \"a.wasm\"\nroutes = [\"https://x\"]\n",
    );
    let text = error.to_string();
    assert!(
        text.starts_with(
            "conf/node.toml:4:11: tenant `shop`: `routes`: route `https://x` has a scheme"
        ),
        "{text}"
    );
}

#[test]
fn unreadable_file_is_an_error_not_a_panic() {
    let checked = Config::check_file(Path::new("/nonexistent/outpost.toml"));
    assert!(checked.config.is_none());
    assert!(checked.errors[0].message.contains("cannot read"));
}

const STORES: &str = r#"
[node]
data_dir = "/var/outpost"

[[tenant]]
name = "shop"
component = "shop.wasm"
routes = ["/"]
kv = ["SESSIONS", "CACHE"]
sql = ["DB"]
limits = { sql_size = "10MiB" }
blob = { ASSETS = {}, LOCAL = "file://./assets", TMP = "memory://", MEDIA = { url = "s3://media/shop/", endpoint = "http://127.0.0.1:9000", region = "eu-1", access_key_id_env = "MEDIA_KEY" } }
"#;

#[test]
fn store_bindings_parse_with_defaults_under_data_dir() {
    let config = Config::parse(STORES, Path::new("conf/node.toml")).unwrap();
    let tenant = &config.tenants[0];
    assert_eq!(
        tenant.stores.kv.keys().collect::<Vec<_>>(),
        ["CACHE", "SESSIONS"]
    );
    assert!(
        tenant
            .stores
            .kv
            .values()
            .all(|kind| *kind == KvBackendKind::Sled)
    );
    assert_eq!(tenant.stores.sql, ["DB"]);
    assert_eq!(tenant.limits.sql_size, 10 << 20);
    let blob = &tenant.stores.blob;
    assert_eq!(
        blob["ASSETS"].location,
        BlobLocation::File("/var/outpost/blobs/shop/ASSETS".into())
    );
    assert_eq!(
        blob["LOCAL"].location,
        BlobLocation::File("conf/./assets".into())
    );
    assert_eq!(blob["TMP"].location, BlobLocation::Memory);
    let BlobLocation::S3(s3) = &blob["MEDIA"].location else {
        panic!("MEDIA should be s3: {:?}", blob["MEDIA"]);
    };
    assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("media", "shop"));
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(s3.region.as_deref(), Some("eu-1"));
    assert_eq!(s3.access_key_id_env, "MEDIA_KEY");
    assert_eq!(s3.secret_access_key_env, DEFAULT_S3_SECRET_KEY_ENV);
    assert_eq!(blob["MEDIA"].at.line, 12);
}

#[test]
fn kv_bindings_may_name_their_backend() {
    let source = "[[tenant]]\nname = \"shop\"\ncomponent = \"s.wasm\"\nroutes = [\"/\"]\nkv = { SESSIONS = \"sled\", CACHE = \"memory\" }\n";
    let config = Config::parse(source, Path::new("node.toml")).unwrap();
    let kv = &config.tenants[0].stores.kv;
    assert_eq!(kv["SESSIONS"], KvBackendKind::Sled);
    assert_eq!(kv["CACHE"], KvBackendKind::Memory);
    assert_eq!(kv.len(), 2);
}

#[test]
fn bad_store_bindings_name_the_key() {
    let base = "[[tenant]]\nname = \"shop\"\ncomponent = \"s.wasm\"\nroutes = [\"/\"]\n";
    let cases = [
        ("kv = [\"A\", \"A\"]", "kv", "listed twice"),
        (
            "kv = { A = \"redis\" }",
            "kv.A",
            "not a KV backend; use \"sled\" or \"memory\"",
        ),
        (
            "kv = { bad-name = \"memory\" }",
            "kv.bad-name",
            "not a binding name",
        ),
        ("sql = [\"bad-name\"]", "sql", "not a binding name"),
        (
            "blob = { X = \"ftp://x\" }",
            "blob.X",
            "not a blob store URL",
        ),
        ("blob = { X = \"s3://\" }", "blob.X", "needs a bucket"),
        (
            "blob = { X = { url = \"memory://\", region = \"x\" } }",
            "blob.X",
            "only to s3://",
        ),
        (
            "blob = { X = { bucket = \"b\" } }",
            "blob.X",
            "unknown key `bucket`",
        ),
        ("blob = { X = 3 }", "blob.X", "URL string or a table"),
        (
            "limits = { sql_size = \"1KiB\" }",
            "limits.sql_size",
            "at least 64KiB",
        ),
        (
            "outbound = [\"ftp://files.example.com\"]",
            "outbound",
            "http or https",
        ),
        (
            "outbound = [\"https://api.example.com/v1\"]",
            "outbound",
            "only scheme, host and port",
        ),
        (
            "outbound = [\"https://a.example\", \"https://A.example:443\"]",
            "outbound",
            "listed twice",
        ),
    ];
    for (line, key, needle) in cases {
        let error = only_error(&format!("{base}{line}\n"));
        assert_eq!(error.key.as_deref(), Some(key), "{line}: {error}");
        assert_eq!(error.tenant.as_deref(), Some("shop"), "{line}: {error}");
        assert_eq!(error.location.line, 5, "{line}: {error}");
        assert!(error.message.contains(needle), "{line}: {error}");
    }
}

#[test]
fn outbound_origins_parse() {
    let text = "[[tenant]]\nname = \"edge\"\ncomponent = \"e.wasm\"\nroutes = [\"/\"]\noutbound = [\"https://API.example.com\", \"http://127.0.0.1:9000/\"]\n";
    let config = Config::parse(text, Path::new("node.toml")).unwrap();
    let origins: Vec<String> = config.tenants[0]
        .outbound
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        origins,
        ["https://api.example.com:443", "http://127.0.0.1:9000"]
    );
}

#[test]
fn a_fleet_section_is_validated_key_by_key() {
    let config = Config::parse(
        "[fleet]\nnats = [\"nats://hub-1:4222\", \"tls://hub-2:4222\"]\nname = \"eu\"\nreplicas = 1\n\n\
         [[tenant]]\nname = \"shop\"\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\n\
         kv = { SESSIONS = { backend = \"global\", cache_ttl = \"30s\" }, HITS = \"global\", LOCAL = \"sled\" }\n",
        Path::new("conf/node.toml"),
    )
    .unwrap();
    let fleet = config.fleet.expect("fleet");
    assert_eq!(fleet.nats.len(), 2);
    assert_eq!((fleet.name.as_str(), fleet.replicas), ("eu", 1));
    let kv = &config.tenants[0].stores.kv;
    assert_eq!(
        kv["SESSIONS"],
        KvBackendKind::Global {
            cache_ttl: std::time::Duration::from_secs(30)
        }
    );
    assert_eq!(
        kv["HITS"],
        KvBackendKind::Global {
            cache_ttl: crate::DEFAULT_GLOBAL_CACHE_TTL
        }
    );

    let errors = check(
        "[fleet]\nnats = [\"nats://user:pw@hub:4222\", \"http://hub\"]\nname = \"Bad Name\"\nreplicas = 7\ntoken_env = \"1X\"\n",
    )
    .errors;
    let keys: Vec<(usize, Option<&str>)> = errors
        .iter()
        .map(|e| (e.location.line, e.key.as_deref()))
        .collect();
    assert_eq!(
        keys,
        [
            (2, Some("fleet.nats")),
            (2, Some("fleet.nats")),
            (3, Some("fleet.name")),
            (4, Some("fleet.replicas")),
            (5, Some("fleet.token_env")),
        ],
        "{errors:?}"
    );
    assert!(
        errors[0].message.contains("credentials do not belong"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_global_binding_needs_a_fleet_and_a_valid_table() {
    let error = only_error(
        "[[tenant]]\nname = \"shop\"\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\nkv = { S = \"global\" }\n",
    );
    assert_eq!(error.key.as_deref(), Some("kv.S"));
    assert!(error.message.contains("[fleet]"), "{error}");
    let error = only_error(
        "[fleet]\nnats = [\"nats://hub:4222\"]\n[[tenant]]\nname = \"shop\"\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\nkv = { S = { backend = \"sled\", cache_ttl = \"5s\" } }\n",
    );
    assert_eq!(error.key.as_deref(), Some("kv.S"));
    assert!(
        error.message.contains("only to `backend = \"global\"`"),
        "{error}"
    );
}

#[test]
fn a_syntax_error_after_a_multibyte_character_is_an_error_not_a_panic() {
    // Found by the config fuzz target (fuzz/corpus/config/multibyte-before-equals).
    let error = only_error("\u{357}==");
    assert_eq!(error.location.line, 1, "{error:?}");
    assert!(!error.message.is_empty());
}

#[test]
fn body_prefetch_and_timeout_are_read_and_bounded() {
    let checked = check("[server]\nbody_prefetch = \"1MiB\"\nbody_timeout = \"3s\"\n");
    let config = checked.config.expect("valid");
    assert_eq!(config.server.connections.body_prefetch, 1 << 20);
    assert_eq!(
        config.server.connections.body_timeout,
        Duration::from_secs(3)
    );
    let error = only_error("[server]\nbody_prefetch = \"1GiB\"\n");
    assert_eq!(error.key.as_deref(), Some("server.body_prefetch"));
    assert!(error.message.contains("16MiB"), "{}", error.message);
}

#[test]
fn send_timeout_and_max_open_requests_are_read_and_bounded() {
    let checked = check("[server]\nsend_timeout = \"2s\"\nmax_open_requests = 500\n");
    let config = checked.config.expect("valid");
    assert_eq!(
        config.server.connections.send_timeout,
        Duration::from_secs(2)
    );
    assert_eq!(config.server.connections.max_open_requests, 500);
    let error = only_error("[server]\nmax_open_requests = 0\n");
    assert_eq!(error.key.as_deref(), Some("server.max_open_requests"));
    assert_eq!(error.location.line, 2, "{error:?}");
    let error = only_error("[server]\nsend_timeout = \"0s\"\n");
    assert_eq!(error.key.as_deref(), Some("server.send_timeout"));
}

#[test]
fn per_client_is_at_most_the_concurrency() {
    let checked = check(
        "[[tenant]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"a.test\"]\nlimits = { concurrency = 8, per_client = 2 }\n",
    );
    let tenant = &checked.config.expect("valid").tenants[0];
    assert_eq!(tenant.limits.per_client, Some(2));
    let error = only_error(
        "[[tenant]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"a.test\"]\nlimits = { concurrency = 8, per_client = 9 }\n",
    );
    assert_eq!(error.key.as_deref(), Some("limits.per_client"));
    assert!(
        error.message.contains("concurrency (8)"),
        "{}",
        error.message
    );
}

const OBJECT_TENANT: &str =
    "[[tenant]]\nname = \"rooms\"\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\n";

#[test]
fn durable_object_classes_parse_with_their_idle_time() {
    let config = Config::parse(
        &format!(
            "{OBJECT_TENANT}durable_objects = {{ ROOMS = {{ class = \"Room\" }}, LIMITS = {{ class = \"Limiter\", idle_timeout = \"2s\" }} }}\n"
        ),
        Path::new("conf/node.toml"),
    )
    .unwrap();
    let objects = &config.tenants[0].durable_objects;
    assert_eq!(objects["ROOMS"].class, "Room");
    assert_eq!(objects["ROOMS"].idle_timeout, DEFAULT_OBJECT_IDLE);
    assert_eq!(objects["LIMITS"].idle_timeout, Duration::from_secs(2));
}

#[test]
fn a_bad_class_name_is_refused_with_its_line_and_key() {
    let error = only_error(&format!(
        "{OBJECT_TENANT}durable_objects = {{ ROOMS = {{ class = \"../room\" }} }}\n"
    ));
    assert_eq!(error.location.line, 5);
    assert_eq!(error.key.as_deref(), Some("durable_objects.ROOMS.class"));
    assert!(error.message.contains("type's name"), "{error}");
}

#[test]
fn a_class_bound_twice_even_in_another_case_is_refused() {
    let error = only_error(&format!(
        "{OBJECT_TENANT}durable_objects = {{ A = {{ class = \"Room\" }}, B = {{ class = \"room\" }} }}\n"
    ));
    assert_eq!(error.key.as_deref(), Some("durable_objects.B.class"));
    assert!(error.message.contains("already bound as `A`"), "{error}");
}
