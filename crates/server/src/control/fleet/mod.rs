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

mod purges;
mod tenants;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use outpost_fleet::{DeployError, Deploys, Manifest, NodeStatus, Purges, Statuses, TenantOnNode};
use outpost_runtime::{Tenant, wasm_hash};

use super::load::read_version;
use super::{Control, ControlError, Version};

pub use tenants::with_fleet_tenants;

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
        read_version(&config, name, &tenant_config.component, version).map(|(wasm, _)| wasm)
    }
}

fn fleet_error(tenant: &str, reason: String) -> ControlError {
    ControlError::Fleet {
        tenant: tenant.to_string(),
        reason,
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
