//! The node's part in a fleet's deploys: it follows the fleet's manifests (switching
//! each tenant to the version the fleet says, keeping the old one when the new one
//! fails), adds and removes the tenants the fleet defines, publishes what it serves,
//! and sends deploys and rollbacks made through its admin API to the fleet.
//!
//! A tenant the fleet defines is kept under `data_dir/fleet/tenants/<name>.toml` (its
//! `[[tenant]]` table, pointing at its first version's wasm under `data_dir/deploys/`),
//! and is read as if it were written in the node's config file; its later versions are
//! kept like API deploys. So a node restarted while the hub is down serves the last
//! versions it knew.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use outpost_config::Config;
use outpost_fleet::{
    DeployError, Deploys, Manifest, ManifestEvent, NodeStatus, Purges, Statuses, TenantOnNode,
};
use outpost_runtime::{Tenant, wasm_hash};

use super::history::{deploys_dir, write_durably};
use super::{Control, ControlError, Source, Version};

/// How long a deploy through this node's admin API waits for the node to serve it.
const APPLY_WAIT: Duration = Duration::from_secs(60);

/// What a node needs to take part in its fleet's deploys.
#[derive(Clone)]
pub struct FleetLink {
    pub deploys: Deploys,
    pub statuses: Statuses,
    pub purges: Purges,
    /// This node's id.
    pub node: String,
}

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
    /// Joins the fleet: deploys through the admin API go to the fleet from now on.
    pub fn join_fleet(&self, link: FleetLink) {
        let _ = self.fleet.set(link);
    }

    /// The serving version's hash of `name`.
    pub fn serving_hash(&self, name: &str) -> Option<String> {
        let state = self.lock();
        let slot = state.slots.get(name)?;
        slot.history.versions.last().map(|v| v.hash.clone())
    }

    fn set_last_error(&self, name: &str, error: String) {
        let mut state = self.lock();
        if let Some(slot) = state.slots.get_mut(name) {
            slot.last_error = Some(error);
        } else {
            state.failed.insert(name.to_string(), error);
        }
    }

    /// The fleet as its hub shows it: every node (what it serves, who lags, who is
    /// gone) and every tenant's versions. `None`: this node is not one of a fleet.
    pub async fn fleet_status(&self) -> Option<Result<serde_json::Value, String>> {
        let link = self.fleet.get()?.clone();
        Some(
            async {
                let manifests = link.deploys.all().await.map_err(|e| e.to_string())?;
                let nodes = link
                    .statuses
                    .view(&manifests)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(serde_json::json!({
                    "node": link.node,
                    "nodes": nodes,
                    "tenants": manifests,
                }))
            }
            .await,
        )
    }

    /// What this node serves, for the fleet's status.
    pub fn node_status(&self, node: &str) -> NodeStatus {
        let state = self.lock();
        let mut tenants: Vec<TenantOnNode> = state
            .slots
            .iter()
            .map(|(name, slot)| TenantOnNode {
                name: name.clone(),
                hash: slot.history.versions.last().map(|v| v.hash.clone()),
                last_error: slot.last_error.clone(),
            })
            .collect();
        tenants.extend(state.failed.iter().map(|(name, error)| TenantOnNode {
            name: name.clone(),
            hash: None,
            last_error: Some(error.clone()),
        }));
        NodeStatus {
            node: node.to_string(),
            heartbeat_ms: outpost_fleet::now_ms(),
            healthy: tenants.iter().all(|t| t.last_error.is_none()),
            tenants,
        }
    }

    /// A deploy through the admin API on a fleet node: checked here first (a component
    /// that does not load never reaches the fleet), then published; answers once this
    /// node serves it.
    pub(super) async fn deploy_to_fleet(
        self: &Arc<Self>,
        link: &FleetLink,
        name: &str,
        wasm: Vec<u8>,
    ) -> Result<Version, ControlError> {
        let (_, tenant_config, history) = self.slot_parts(name)?;
        let runtime = self.runtime.clone();
        let checked = wasm.clone();
        let owned = name.to_string();
        tokio::task::spawn_blocking(move || {
            let hash = outpost_runtime::hex(&wasm_hash(&checked));
            let origin = PathBuf::from(format!("(upload {})", &hash[..16]));
            Tenant::load_wasm(&runtime, &tenant_config, &checked, &origin)
                .map(|_| ())
                .map_err(|e| ControlError::Invalid {
                    tenant: owned,
                    reason: e.error.to_string(),
                })
        })
        .await
        .map_err(|e| fleet_error(name, e.to_string()))??;
        let to_fleet = |e: DeployError| fleet_error(name, e.to_string());
        // The tenant's first fleet deploy carries the version it serves now, so a
        // rollback through the fleet can go back to it.
        if link
            .deploys
            .manifest(name)
            .await
            .map_err(to_fleet)?
            .is_none()
            && let Some(current) = history.versions.last()
            && let Ok(current_wasm) = self.read_version(name, current)
        {
            link.deploys
                .publish(name, &current_wasm, None, &link.node)
                .await
                .map_err(to_fleet)?;
        }
        let manifest = link
            .deploys
            .publish(name, &wasm, None, &link.node)
            .await
            .map_err(to_fleet)?;
        self.wait_serving(name, &manifest).await
    }

    /// A rollback through the admin API on a fleet node.
    pub(super) async fn rollback_in_fleet(
        self: &Arc<Self>,
        link: &FleetLink,
        name: &str,
    ) -> Result<Version, ControlError> {
        self.slot_parts(name)?;
        let manifest = link.deploys.rollback(name).await.map_err(|e| match e {
            DeployError::NothingToRollBack(_) | DeployError::NoManifest(_) => {
                ControlError::NothingToRollBack(name.to_string())
            }
            other => fleet_error(name, other.to_string()),
        })?;
        self.wait_serving(name, &manifest).await
    }

    /// Waits until this node serves `manifest`'s version (its follower applies it).
    async fn wait_serving(&self, name: &str, manifest: &Manifest) -> Result<Version, ControlError> {
        let wanted = manifest
            .serving()
            .map(|v| v.hash.clone())
            .unwrap_or_default();
        let started = Instant::now();
        loop {
            {
                let state = self.lock();
                if let Some(slot) = state.slots.get(name) {
                    if let Some(version) = slot.history.versions.last()
                        && version.hash == wanted
                    {
                        return Ok(version.clone());
                    }
                    if let Some(error) = &slot.last_error
                        && error.contains(&wanted[..16.min(wanted.len())])
                    {
                        return Err(fleet_error(name, error.clone()));
                    }
                }
            }
            if started.elapsed() > APPLY_WAIT {
                return Err(fleet_error(
                    name,
                    format!(
                        "published to the fleet, but this node did not switch to {} within {APPLY_WAIT:?}",
                        &wanted[..16.min(wanted.len())]
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The bytes of a recorded version of `name`.
    fn read_version(&self, name: &str, version: &Version) -> Result<Vec<u8>, String> {
        let (config, tenant_config, _) = self.slot_parts(name).map_err(|e| e.to_string())?;
        let path = match version.source {
            Source::Config => tenant_config.component.clone(),
            Source::Api | Source::Fleet => {
                deploys_dir(&config, name).join(format!("{}.wasm", version.hash))
            }
        };
        let wasm = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        (outpost_runtime::hex(&wasm_hash(&wasm)) == version.hash)
            .then_some(wasm)
            .ok_or_else(|| format!("{} has changed", path.display()))
    }

    /// The component named `hash`: this node's copy if it has one, else the fleet's.
    async fn fleet_component(
        &self,
        link: &FleetLink,
        name: &str,
        hash: &str,
    ) -> Result<Vec<u8>, String> {
        let config = self.config();
        let local = deploys_dir(&config, name).join(format!("{hash}.wasm"));
        if let Ok(wasm) = std::fs::read(&local)
            && outpost_runtime::hex(&wasm_hash(&wasm)) == hash
        {
            return Ok(wasm);
        }
        link.deploys
            .component(hash)
            .await
            .map_err(|e| e.to_string())
    }

    /// Applies one change to the fleet's tenants.
    async fn apply_fleet_event(self: &Arc<Self>, link: &FleetLink, event: ManifestEvent) {
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
        if self.serving_hash(name).is_none() {
            // Not a tenant of this node (another node's own config has it).
            return Ok(());
        }
        if self.serving_hash(name).as_deref() == Some(wanted.hash.as_str()) {
            return Ok(());
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

fn fleet_error(tenant: &str, reason: String) -> ControlError {
    ControlError::Fleet {
        tenant: tenant.to_string(),
        reason,
    }
}

impl Control {
    /// A purge through the admin API on a fleet node: checked here, published to the
    /// fleet, answered once this node has applied it (every other node applies it as it
    /// arrives).
    pub async fn purge_in_fleet(&self, name: &str, body: &[u8]) -> Result<bool, ControlError> {
        let Some(link) = self.fleet.get().cloned() else {
            return Ok(false);
        };
        let purge = crate::admin::parse_purge(body).map_err(|reason| ControlError::Invalid {
            tenant: name.to_string(),
            reason,
        })?;
        self.check_purge(name)?;
        let sequence = link
            .purges
            .publish(name, body)
            .await
            .map_err(|e| fleet_error(name, e.to_string()))?;
        let started = Instant::now();
        while self
            .purged_through
            .load(std::sync::atomic::Ordering::SeqCst)
            < sequence
        {
            if started.elapsed() > APPLY_WAIT {
                return Err(fleet_error(
                    name,
                    format!(
                        "published to the fleet, but this node did not apply it within {APPLY_WAIT:?}"
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::info!(tenant = %name, ?purge, "cache purged across the fleet");
        Ok(true)
    }

    /// Applies the fleet's purges as they come, from the last one this node applied.
    async fn follow_purges(self: Arc<Self>, link: FleetLink) {
        let mark = self
            .config()
            .node
            .data_dir
            .join("fleet")
            .join("purged-through");
        let mut after: Option<u64> = std::fs::read_to_string(&mark)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        loop {
            match link.purges.follow(after).await {
                Ok((purges, missed)) => {
                    if missed {
                        tracing::warn!(
                            "this node was away longer than the fleet keeps purges; purging every tenant's cache"
                        );
                        for tenant in self.tenants() {
                            let _ =
                                self.purge(&tenant.info().name, &outpost_cache::Purge::Everything);
                        }
                    }
                    let mut purges = std::pin::pin!(purges);
                    while let Some(purge) = purges.next().await {
                        match crate::admin::parse_purge(&purge.body) {
                            Ok(what) => match self.purge(&purge.tenant, &what) {
                                Ok(())
                                | Err(ControlError::NoSuchTenant(_) | ControlError::NoCache(_)) => {
                                }
                                Err(error) => {
                                    tracing::warn!(tenant = %purge.tenant, "fleet purge: {error}")
                                }
                            },
                            Err(error) => {
                                tracing::warn!(tenant = %purge.tenant, "a fleet purge was refused: {error}")
                            }
                        }
                        after = Some(purge.sequence);
                        self.purged_through
                            .store(purge.sequence, std::sync::atomic::Ordering::SeqCst);
                        let _ = write_durably(&mark, purge.sequence.to_string().as_bytes());
                    }
                }
                Err(error) => tracing::debug!(%error, "cannot follow the fleet's purges yet"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Follows the fleet for as long as the node runs: applies every manifest (all of them
/// first, then each change), watching again whenever the hub goes away and comes back,
/// and publishes the node's status every [`outpost_fleet::HEARTBEAT`] and after each
/// change.
pub async fn follow_fleet(control: Arc<Control>, link: FleetLink) {
    tokio::spawn(control.clone().follow_purges(link.clone()));
    let heartbeat = {
        let (control, link) = (control.clone(), link.clone());
        tokio::spawn(async move {
            loop {
                let _ = link
                    .statuses
                    .publish(&control.node_status(&link.node))
                    .await;
                tokio::time::sleep(outpost_fleet::HEARTBEAT).await;
            }
        })
    };
    loop {
        match link.deploys.watch().await {
            Ok(events) => {
                let mut events = std::pin::pin!(events);
                while let Some(event) = events.next().await {
                    control.apply_fleet_event(&link, event).await;
                    let _ = link
                        .statuses
                        .publish(&control.node_status(&link.node))
                        .await;
                }
                tracing::debug!("the fleet's manifest watch ended; watching again");
            }
            Err(error) => tracing::debug!(%error, "cannot watch the fleet's manifests yet"),
        }
        if heartbeat.is_finished() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
