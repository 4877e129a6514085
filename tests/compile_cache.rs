//! A restart reuses compiled components from the data dir instead of recompiling.

mod support;

use support::{Node, tenant, write_config};

fn cache_outcomes(logs: &str) -> Vec<String> {
    logs.lines()
        .filter(|line| line.contains("tenant loaded"))
        .map(|line| {
            let log: serde_json::Value = serde_json::from_str(line).unwrap();
            println!(
                "  tenant {} loaded in {:.1} ms, compile cache {}",
                log["tenant"], log["ms"], log["compile_cache"]
            );
            log["compile_cache"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn restart_loads_compiled_components_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = format!(
        "{}{}",
        tenant("a", "hello", &["a.test"], ""),
        tenant("b", "hello", &["b.test"], "")
    );
    let (config, addr) = write_config(dir.path(), &tenants);

    println!("cold start:");
    let node = Node::start_with(dir, &config, addr).await;
    let mut cold = cache_outcomes(&node.logs());
    cold.sort();
    assert_eq!(
        cold,
        ["miss", "shared"],
        "one compile, shared by the tenant with the same wasm"
    );
    assert_eq!(node.get("a.test", "/").await.status, 200);
    let dir = node.stop();
    let compiled: Vec<_> = std::fs::read_dir(dir.path().join("data/compiled"))
        .unwrap()
        .collect();
    assert_eq!(compiled.len(), 1, "one artifact for one distinct wasm");

    println!("warm start:");
    let (config, addr) = write_config(dir.path(), &tenants);
    let node = Node::start_with(dir, &config, addr).await;
    let mut warm = cache_outcomes(&node.logs());
    warm.sort();
    assert_eq!(
        warm,
        ["hit", "shared"],
        "the restart maps the compiled artifact in"
    );
    assert_eq!(node.get("b.test", "/").await.body, "hello from outpost");
}

#[tokio::test]
async fn a_corrupt_artifact_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = tenant("a", "hello", &["/"], "");
    let (config, addr) = write_config(dir.path(), &tenants);
    let node = Node::start_with(dir, &config, addr).await;
    let dir = node.stop();
    for entry in std::fs::read_dir(dir.path().join("data/compiled")).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let (config, addr) = write_config(dir.path(), &tenants);
    let node = Node::start_with(dir, &config, addr).await;
    assert_eq!(cache_outcomes(&node.logs()), ["miss"]);
    assert_eq!(node.get("x.test", "/").await.status, 200);
}
