//! Loading the version a tenant should serve: the newest of its config's component and
//! the components deployed through the API, or a recorded version for a rollback.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use outpost_config::{Config, TenantConfig};
use outpost_runtime::{Runtime, Tenant, wasm_hash};

use crate::assets::Assets;

use super::history::{History, deploys_dir, now, read_history, save_history};
use super::{Source, Version};

/// Loads the version `tenant` should serve: the newest of its config component and its
/// API deploys. `known` is the history in memory (on reload); else it is read from disk.
pub(super) fn load_current(
    runtime: &Arc<Runtime>,
    config: &Config,
    tenant: &TenantConfig,
    known: Option<History>,
) -> Result<(Tenant, History), String> {
    let started = Instant::now();
    let wasm = std::fs::read(&tenant.component).map_err(|source| {
        outpost_runtime::TenantLoadError {
            tenant: tenant.name.clone(),
            key: "component".into(),
            at: tenant.component_at.clone(),
            error: outpost_runtime::LoadError::Unreadable {
                path: tenant.component.clone(),
                source,
            },
        }
        .to_string()
    })?;
    let hash = outpost_runtime::hex(&wasm_hash(&wasm));
    let dir = deploys_dir(config, &tenant.name);
    let mut history = match known {
        Some(history) => history,
        None => read_history(&dir).map_err(|e| {
            format!(
                "tenant `{}`: cannot read {}: {e}",
                tenant.name,
                dir.display()
            )
        })?,
    };
    if history.config_hash != hash {
        history.config_hash = hash.clone();
        history.push(Version {
            hash,
            source: Source::Config,
            deployed_at: now(),
        });
        // Only tenants that have had API deploys keep their history on disk.
        if history.versions.iter().any(|v| v.source != Source::Config) {
            save_history(&dir, &history).map_err(|e| {
                format!(
                    "tenant `{}`: cannot write {}: {e}",
                    tenant.name,
                    dir.display()
                )
            })?;
        }
    }
    let serving = history
        .versions
        .last()
        .cloned()
        .expect("at least the config version");
    let loaded = if serving.source == Source::Config {
        Tenant::load_wasm(runtime, tenant, &wasm, &tenant.component).map_err(|e| e.to_string())
    } else {
        load_version(runtime, config, tenant, &serving).map(|(t, _)| t)
    }?;
    tracing::debug!(tenant = %tenant.name, ms = started.elapsed().as_secs_f64() * 1e3, "tenant built");
    Ok((loaded, history))
}

/// Loads a recorded version: an API or fleet deploy from the deploys dir, a config
/// version from the config's component file (if it still holds that version).
pub(super) fn load_version(
    runtime: &Arc<Runtime>,
    config: &Config,
    tenant: &TenantConfig,
    version: &Version,
) -> Result<(Tenant, Vec<u8>), String> {
    let (wasm, path) = read_version(config, &tenant.name, &tenant.component, version)?;
    let tenant = Tenant::load_wasm(runtime, tenant, &wasm, &path).map_err(|e| e.to_string())?;
    Ok((tenant, wasm))
}

/// The bytes of a recorded version of tenant `name` and the file they were read from,
/// checked against the version's hash. `component` is the config's component file.
pub(super) fn read_version(
    config: &Config,
    name: &str,
    component: &Path,
    version: &Version,
) -> Result<(Vec<u8>, PathBuf), String> {
    let path = match version.source {
        Source::Api | Source::Fleet => {
            deploys_dir(config, name).join(format!("{}.wasm", version.hash))
        }
        Source::Config => component.to_path_buf(),
    };
    let wasm = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if outpost_runtime::hex(&wasm_hash(&wasm)) != version.hash {
        return Err(format!(
            "{} no longer holds version {}; it was changed since",
            path.display(),
            &version.hash[..16.min(version.hash.len())]
        ));
    }
    Ok((wasm, path))
}

/// Indexes the tenant's `assets` directory, if it has one.
pub fn load_assets(tenant: &TenantConfig) -> Result<Option<Arc<Assets>>, String> {
    let Some(config) = &tenant.assets else {
        return Ok(None);
    };
    let assets = Assets::load(config)
        .map_err(|e| format!("{}: tenant `{}`: `assets`: {e}", config.at, tenant.name))?;
    tracing::debug!(tenant = %tenant.name, files = assets.len(), "assets indexed");
    Ok(Some(Arc::new(assets)))
}

/// The config component's hash, if the file can be read.
pub(super) fn config_hash(tenant: &TenantConfig) -> Option<String> {
    let wasm = std::fs::read(&tenant.component).ok()?;
    Some(outpost_runtime::hex(&wasm_hash(&wasm)))
}
