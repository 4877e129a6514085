//! Following the fleet's manifests: each tenant switches to the version the fleet says,
//! and the tenants the fleet defines are added, changed and removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use outpost_config::Config;
use outpost_fleet::{DeployError, Manifest, ManifestEvent};

use super::FleetLink;
use crate::control::history::{deploys_dir, write_durably};
use crate::control::load::read_version;
use crate::control::{Control, Source, Version};

fn fleet_tenants_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("fleet").join("tenants")
}

/// `config` with the tenants the fleet defined on this node added, as if written at the
/// end of its file. A fleet tenant that no longer fits beside the file's tenants (its
/// route taken since, say) is left out; the second value says which and why.
pub fn with_fleet_tenants(config: Config) -> (Config, Vec<(String, String)>) {
    if config.fleet.is_none() {
        return (config, Vec::new());
    }
    let dir = fleet_tenants_dir(&config.node.data_dir);
    let mut tables: Vec<(String, String)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let name = path.file_stem()?.to_str()?.to_string();
            (path.extension()? == "toml")
                .then(|| std::fs::read_to_string(&path).ok().map(|t| (name, t)))?
        })
        .filter(|(name, _)| !config.tenants.iter().any(|t| t.name == *name))
        .collect();
    tables.sort();
    if tables.is_empty() {
        return (config, Vec::new());
    }
    let Ok(source) = std::fs::read_to_string(&config.path) else {
        return (config, Vec::new());
    };
    let mut refused = Vec::new();
    let mut fitting = String::new();
    for (name, table) in &tables {
        let trial = format!("{source}\n{fitting}\n{table}\n");
        match Config::parse(&trial, &config.path) {
            Ok(_) => {
                fitting.push('\n');
                fitting.push_str(table);
            }
            Err(errors) => refused.push((name.clone(), errors.to_string())),
        }
    }
    match Config::parse(&format!("{source}\n{fitting}\n"), &config.path) {
        Ok(merged) => (merged, refused),
        Err(_) => (config, refused),
    }
}

impl Control {
    /// The component named `hash`: this node's copy if it has one, else the fleet's.
    async fn fleet_component(
        &self,
        link: &FleetLink,
        name: &str,
        hash: &str,
    ) -> Result<Vec<u8>, String> {
        let kept = Version {
            hash: hash.to_string(),
            source: Source::Fleet,
            deployed_at: 0,
        };
        if let Ok((wasm, _)) = read_version(&self.config(), name, Path::new(""), &kept) {
            return Ok(wasm);
        }
        link.deploys
            .component(hash)
            .await
            .map_err(|e| e.to_string())
    }

    /// Applies one change to the fleet's tenants.
    pub(super) async fn apply_fleet_event(
        self: &Arc<Self>,
        link: &FleetLink,
        event: ManifestEvent,
    ) {
        match event {
            ManifestEvent::Changed(manifest) => {
                let name = manifest.tenant.clone();
                if let Err(error) = self.follow_manifest(link, &manifest).await {
                    tracing::error!(tenant = %name, "the fleet's version was not applied; the tenant keeps what it serves: {error}");
                    self.set_last_error(&name, error);
                }
            }
            ManifestEvent::Removed(name) => {
                let file =
                    fleet_tenants_dir(&self.config().node.data_dir).join(format!("{name}.toml"));
                if file.exists() {
                    let _ = std::fs::remove_file(&file);
                    tracing::info!(tenant = %name, "removed from the fleet");
                    if let Err(error) = self.reload().await {
                        tracing::error!(tenant = %name, "removing the fleet's tenant: {error}");
                    }
                }
            }
            ManifestEvent::Refused(error) => {
                tracing::error!(
                    "a fleet manifest was refused; its tenant keeps what it serves: {error}"
                );
                if let DeployError::BadManifest { tenant, .. } = &error {
                    self.set_last_error(tenant, error.to_string());
                }
            }
        }
    }

    async fn follow_manifest(
        self: &Arc<Self>,
        link: &FleetLink,
        manifest: &Manifest,
    ) -> Result<(), String> {
        let name = manifest.tenant.as_str();
        let Some(wanted) = manifest.serving() else {
            return Ok(());
        };
        let config = self.config();
        if let Some(table) = &manifest.config {
            let file = fleet_tenants_dir(&config.node.data_dir).join(format!("{name}.toml"));
            let in_file = config.tenants.iter().any(|t| t.name == name) && !file.exists();
            if in_file {
                return Err(format!(
                    "the fleet defines tenant `{name}`, but this node's config does too; the config's wins"
                ));
            }
            let kept = std::fs::read_to_string(&file).ok();
            let first_path = kept.as_deref().and_then(component_line).map(PathBuf::from);
            let component = match first_path {
                Some(path) => path,
                None => {
                    let wasm = self.fleet_component(link, name, &wanted.hash).await?;
                    let path = deploys_dir(&config, name).join(format!("{}.wasm", wanted.hash));
                    write_durably(&path, &wasm).map_err(|e| e.to_string())?;
                    path
                }
            };
            if table
                .lines()
                .any(|l| l.trim_start().starts_with("component"))
            {
                return Err(
                    "a fleet tenant's table leaves out `component`: the fleet supplies it".into(),
                );
            }
            let persisted = format!(
                "[[tenant]]\ncomponent = {:?}\n{}\n",
                component.display().to_string(),
                table.trim()
            );
            if kept.as_deref() != Some(persisted.as_str()) {
                let trial = std::fs::read_to_string(&config.path).unwrap_or_default();
                Config::parse(&format!("{trial}\n{persisted}"), &config.path).map_err(|e| {
                    format!("the fleet's table for `{name}` does not fit this node: {e}")
                })?;
                write_durably(&file, persisted.as_bytes()).map_err(|e| e.to_string())?;
                tracing::info!(tenant = %name, "tenant defined by the fleet");
                self.reload().await?;
            }
        }
        match self.serving_hash(name) {
            // Not a tenant of this node (another node's own config has it).
            None => return Ok(()),
            Some(serving) if serving == wanted.hash => return Ok(()),
            Some(_) => {}
        }
        let wasm = self.fleet_component(link, name, &wanted.hash).await?;
        let version = self
            .deploy_from(name, wasm, Source::Fleet)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(tenant = %name, hash = %version.hash, by = %wanted.by, "serving the fleet's version");
        Ok(())
    }
}

/// The `component = "…"` of a kept fleet tenant table.
fn component_line(table: &str) -> Option<String> {
    let line = table.lines().find(|l| l.starts_with("component = "))?;
    let quoted = line.trim_start_matches("component = ");
    serde_json::from_str::<String>(quoted).ok()
}
