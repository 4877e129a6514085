//! The commands that talk to the fleet's hub directly (`--fleet CONFIG`): the node config
//! names the hub and its credentials, as for `outpost serve`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use outpost_config::Config;
use outpost_fleet::{Deploys, Hub, Manifest, Statuses};

/// How long `deploy --fleet` waits for the nodes to serve what it published.
const SETTLE: Duration = Duration::from_secs(60);

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn connect(config_path: &Path) -> anyhow::Result<(Hub, String)> {
    let config = Config::load(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let fleet = config
        .fleet
        .with_context(|| format!("{} has no [fleet] section", config_path.display()))?;
    let hub = Hub::connect(&fleet, &format!("{}-cli", config.node.id)).await?;
    if !hub.wait_connected(Duration::from_secs(10)).await {
        bail!(
            "cannot reach the fleet's hub at {}; nothing was changed",
            fleet.nats.join(", ")
        );
    }
    Ok((hub, config.node.id))
}

/// `outpost deploy --fleet CONFIG [--define TABLE]`: publishes, then waits until every
/// node that has the tenant serves it (or says why not).
pub fn deploy(
    config: &Path,
    tenant: &str,
    file: &Path,
    define: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let table = define
        .map(|path| {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
        })
        .transpose()?;
    runtime()?.block_on(async {
        let (hub, by) = connect(config).await?;
        let manifest = Deploys::new(&hub)
            .publish(tenant, &wasm, table, &by)
            .await?;
        let hash = manifest
            .serving()
            .map(|v| v.hash.clone())
            .unwrap_or_default();
        println!(
            "published {} ({} bytes) to the fleet as `{tenant}` version {}",
            file.display(),
            wasm.len(),
            &hash[..16.min(hash.len())]
        );
        settle(&hub, &manifest).await
    })
}

/// `outpost rollback --fleet CONFIG`.
pub fn rollback(config: &Path, tenant: &str) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let (hub, _) = connect(config).await?;
        let manifest = Deploys::new(&hub).rollback(tenant).await?;
        let hash = manifest
            .serving()
            .map(|v| v.hash.clone())
            .unwrap_or_default();
        println!(
            "`{tenant}` rolled back in the fleet to version {}",
            &hash[..16.min(hash.len())]
        );
        settle(&hub, &manifest).await
    })
}

/// `outpost fleet remove --config CONFIG --tenant T`.
pub fn remove(config: &Path, tenant: &str) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let (hub, _) = connect(config).await?;
        Deploys::new(&hub).remove(tenant).await?;
        println!("`{tenant}` removed from the fleet (nodes whose config defines it keep it)");
        Ok(ExitCode::SUCCESS)
    })
}

/// `outpost fleet status --config CONFIG`.
pub fn status(config: &Path) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let (hub, _) = connect(config).await?;
        let manifests = Deploys::new(&hub).all().await?;
        let nodes = Statuses::new(&hub).view(&manifests).await?;
        print_status(&serde_json::json!({ "nodes": nodes, "tenants": manifests }));
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints a fleet status (from the hub or a node's `/fleet`) as a table.
pub fn print_status(status: &serde_json::Value) {
    let short = |hash: &serde_json::Value| {
        hash.as_str()
            .map_or_else(|| "-".to_string(), |h| h[..16.min(h.len())].to_string())
    };
    println!("TENANT                VERSION           VERSIONS");
    for tenant in status["tenants"].as_array().into_iter().flatten() {
        let versions = tenant["versions"].as_array().map_or(0, Vec::len);
        let serving = tenant["versions"]
            .as_array()
            .and_then(|v| v.last())
            .map(|v| short(&v["hash"]))
            .unwrap_or_default();
        println!(
            "{:<21} {serving:<17} {versions}",
            tenant["tenant"].as_str().unwrap_or("?")
        );
    }
    println!("\nNODE                  HEARTBEAT  STATE     TENANTS");
    for node in status["nodes"].as_array().into_iter().flatten() {
        let state = if node["gone"].as_bool() == Some(true) {
            "gone"
        } else if node["lagging"].as_array().is_some_and(|l| !l.is_empty()) {
            "lagging"
        } else if node["healthy"].as_bool() == Some(true) {
            "ok"
        } else {
            "errors"
        };
        let tenants: Vec<String> = node["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let error = if t["last_error"].is_null() {
                    ""
                } else {
                    " (error)"
                };
                format!(
                    "{}@{}{error}",
                    t["name"].as_str().unwrap_or("?"),
                    short(&t["hash"])
                )
            })
            .collect();
        println!(
            "{:<21} {:>7}ms  {state:<9} {}",
            node["node"].as_str().unwrap_or("?"),
            node["heartbeat_age_ms"].as_u64().unwrap_or(0),
            tenants.join(", ")
        );
    }
}

/// Waits until every live node that has `manifest`'s tenant serves its version, or
/// reports an error for it.
async fn settle(hub: &Hub, manifest: &Manifest) -> anyhow::Result<ExitCode> {
    let Some(wanted) = manifest.serving() else {
        return Ok(ExitCode::SUCCESS);
    };
    let statuses = Statuses::new(hub);
    let started = Instant::now();
    loop {
        let nodes = statuses.view(std::slice::from_ref(manifest)).await?;
        let relevant: Vec<_> = nodes
            .iter()
            .filter(|n| !n.gone)
            .filter_map(|n| {
                n.status
                    .tenants
                    .iter()
                    .find(|t| t.name == manifest.tenant)
                    .map(|t| (n.status.node.clone(), t.clone()))
            })
            .collect();
        let serving = relevant
            .iter()
            .filter(|(_, t)| t.hash.as_deref() == Some(wanted.hash.as_str()))
            .count();
        let failed: Vec<String> = relevant
            .iter()
            .filter(|(_, t)| t.hash.as_deref() != Some(wanted.hash.as_str()))
            .filter_map(|(node, t)| t.last_error.as_ref().map(|e| format!("{node}: {e}")))
            .collect();
        if serving + failed.len() == relevant.len() && !relevant.is_empty() {
            println!("{serving} of {} nodes serve it", relevant.len());
            if failed.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            for failure in failed {
                eprintln!("  {failure}");
            }
            return Ok(ExitCode::FAILURE);
        }
        if started.elapsed() > SETTLE {
            println!(
                "{serving} of {} nodes serve it after {SETTLE:?}; see `outpost fleet status`",
                relevant.len()
            );
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
