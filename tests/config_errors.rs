//! A bad config is refused before anything is served, with file, line, tenant and key;
//! `outpost check` reports every problem at once.

mod support;

use support::{run_outpost, tenant, write_config};

/// Runs `outpost serve` on `tenants` and returns (exit code, output).
fn serve(tenants: &str) -> (i32, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = write_config(dir.path(), tenants);
    let (code, output) = run_outpost(&["serve", "--config", config.to_str().unwrap()]);
    (code, output, dir)
}

fn assert_refused(output: &str, code: i32, expected: &[&str]) {
    assert_ne!(code, 0, "outpost must refuse to serve:\n{output}");
    assert!(
        !output.contains("serving on"),
        "nothing may be served:\n{output}"
    );
    for fragment in expected {
        assert!(
            output.contains(fragment),
            "expected {fragment:?} in:\n{output}"
        );
    }
}

#[test]
fn syntax_error_names_file_and_line() {
    let (code, output, _dir) = serve("[[tenant]]\nname = \"a\"\ncomponent = \n");
    // The generated config has 8 header lines before the tenants.
    assert_refused(&output, code, &["outpost.toml:11:"]);
}

#[test]
fn unknown_key_names_line_tenant_and_key() {
    let (code, output, _dir) = serve(&tenant("shop", "hello", &["/"], "limts = { fuel = 1 }"));
    assert_refused(
        &output,
        code,
        &[
            "outpost.toml:13:",
            "tenant `shop`",
            "`limts`",
            "unknown field",
        ],
    );
}

#[test]
fn duplicate_tenant_name_is_refused() {
    let (code, output, _dir) = serve(&format!(
        "{}{}",
        tenant("shop", "hello", &["/a"], ""),
        tenant("shop", "hello", &["/b"], "")
    ));
    assert_refused(&output, code, &["tenant `shop`", "`name`", "already used"]);
}

#[test]
fn route_claimed_by_two_tenants_is_refused() {
    let (code, output, _dir) = serve(&format!(
        "{}{}",
        tenant("a", "hello", &["example.test/api"], ""),
        tenant("b", "hello", &["example.test/api/"], "")
    ));
    assert_refused(
        &output,
        code,
        &["tenant `b`", "`routes`", "already claimed by tenant `a`"],
    );
}

#[test]
fn missing_component_names_tenant_key_and_path() {
    let (code, output, _dir) = serve(
        "[[tenant]]\nname = \"ghost\"\ncomponent = \"nowhere/ghost.wasm\"\nroutes = [\"/\"]\n",
    );
    assert_refused(
        &output,
        code,
        &[
            "outpost.toml:11:",
            "tenant `ghost`",
            "`component`",
            "ghost.wasm",
            "cannot read",
        ],
    );
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.path().join("text.wasm"), b"not wasm at all").unwrap();
    let (config, _) = write_config(
        dir.path(),
        "[[tenant]]\nname = \"core\"\ncomponent = \"core.wasm\"\nroutes = [\"/a\"]\n\n\
         [[tenant]]\nname = \"text\"\ncomponent = \"text.wasm\"\nroutes = [\"/b\"]\n",
    );
    let (code, output) = run_outpost(&["serve", "--config", config.to_str().unwrap()]);
    assert_refused(
        &output,
        code,
        &[
            "tenant `core`",
            "tenant `text`",
            "not a valid WebAssembly component",
        ],
    );
}

#[test]
fn check_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = write_config(
        dir.path(),
        &format!(
            "{}{}{}",
            tenant("good", "hello", &["/good"], ""),
            tenant(
                "bad-limits",
                "hello",
                &["/x"],
                "limits = { memory = \"64XB\", timeout = \"30\" }"
            ),
            "[[tenant]]\nname = \"ghost\"\ncomponent = \"ghost.wasm\"\nroutes = [\"/ghost\"]\n",
        ),
    );
    let (code, output) = run_outpost(&["check", "--config", config.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert_refused(
        &output,
        code,
        &[
            "3 problems",
            "`limits.memory`",
            "`limits.timeout`",
            "tenant `ghost`",
            "cannot read",
        ],
    );
}

#[test]
fn check_passes_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = write_config(dir.path(), &tenant("good", "hello", &["/"], ""));
    let (code, output) = run_outpost(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("ok (1 tenants)"), "{output}");
}

#[test]
fn a_component_without_a_wasi_http_export_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty_component = wat::parse_str("(component)").unwrap();
    std::fs::write(dir.path().join("empty.wasm"), empty_component).unwrap();
    let (config, _) = write_config(
        dir.path(),
        "[[tenant]]\nname = \"inert\"\ncomponent = \"empty.wasm\"\nroutes = [\"/\"]\n",
    );
    let (code, output) = run_outpost(&["serve", "--config", config.to_str().unwrap()]);
    assert_refused(
        &output,
        code,
        &[
            "tenant `inert`",
            "`component`",
            "exports neither wasi:http/incoming-handler@0.2 nor wasi:http/handler@0.3",
        ],
    );
}

#[test]
fn a_memory_limit_below_the_components_initial_memory_is_refused_at_load() {
    let (code, output, _dir) = serve(&tenant(
        "tiny",
        "hello",
        &["/"],
        "limits = { memory = \"1MiB\" }",
    ));
    assert_refused(
        &output,
        code,
        &[
            "tenant `tiny`",
            "does not instantiate under the tenant's limits",
            "memory limit exceeded",
        ],
    );
}

#[test]
fn an_s3_store_without_credentials_names_tenant_binding_and_variable() {
    let (code, output, _dir) = serve(&tenant(
        "shop",
        "blob-files",
        &["/"],
        "blob = { FILES = { url = \"s3://b/p\", endpoint = \"http://127.0.0.1:9\", access_key_id_env = \"OUTPOST_TEST_NO_SUCH_KEY\" } }",
    ));
    assert_refused(
        &output,
        code,
        &["tenant `shop`", "blob.FILES", "OUTPOST_TEST_NO_SUCH_KEY"],
    );
}

#[test]
fn a_secret_whose_variable_is_unset_names_tenant_key_and_variable() {
    let (code, output, _dir) = serve(&tenant(
        "shop",
        "echo",
        &["/"],
        "secrets = { API_KEY = { env = \"OUTPOST_TEST_UNSET_SECRET\" } }",
    ));
    assert_refused(
        &output,
        code,
        &[
            "outpost.toml:13:",
            "tenant `shop`",
            "`secrets.API_KEY`",
            "OUTPOST_TEST_UNSET_SECRET",
        ],
    );
}

#[test]
fn the_demo_config_checks_clean() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");
    let (code, output) = run_outpost(&["check", "--config", demo]);
    assert_eq!(code, 0, "config/demo.toml has problems:\n{output}");
}
