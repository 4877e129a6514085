//! What each node serves, published to the KV bucket `<fleet>-nodes` under the node's id
//! every few seconds and after every change, so any node (or `outpost fleet status`)
//! can show the whole fleet and which nodes lag behind a deploy.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::deploys::{DeployError, Manifest};
use crate::hub::Hub;

/// How often a node publishes its status.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node not heard from for this long is shown as gone.
pub const GONE_AFTER: Duration = Duration::from_secs(10);

/// One tenant on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantOnNode {
    pub name: String,
    /// The serving version's hash, if the tenant serves.
    pub hash: Option<String>,
    pub last_error: Option<String>,
}

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    /// When it said so, in ms since the Unix epoch.
    pub heartbeat_ms: u64,
    /// Whether every tenant serves without a recorded error.
    pub healthy: bool,
    pub tenants: Vec<TenantOnNode>,
}

/// A node as the fleet status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub status: NodeStatus,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: u64,
    /// Not heard from within [`GONE_AFTER`].
    pub gone: bool,
    /// Tenants it serves at a version other than the fleet's newest.
    pub lagging: Vec<String>,
}

/// The fleet's node statuses.
#[derive(Clone)]
pub struct Statuses {
    hub: Hub,
}

impl Statuses {
    pub fn new(hub: &Hub) -> Statuses {
        Statuses { hub: hub.clone() }
    }

    async fn bucket(&self) -> Result<kv::Store, DeployError> {
        self.hub
            .kv_bucket("nodes", "outpost node status", 1)
            .await
            .map_err(DeployError::Unavailable)
    }

    /// Publishes this node's status.
    pub async fn publish(&self, status: &NodeStatus) -> Result<(), DeployError> {
        if !self.hub.is_connected() {
            return Err(DeployError::Unavailable("not connected".into()));
        }
        let store = self.bucket().await?;
        let bytes =
            serde_json::to_vec(status).map_err(|e| DeployError::Unavailable(e.to_string()))?;
        store
            .put(&status.node, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| DeployError::Unavailable(e.to_string()))
    }

    /// Every node's last status, beside the fleet's manifests: who lags, who is gone.
    pub async fn view(&self, manifests: &[Manifest]) -> Result<Vec<NodeView>, DeployError> {
        let store = self.bucket().await?;
        let unavailable = |e: &dyn std::fmt::Display| DeployError::Unavailable(e.to_string());
        let mut keys = store.keys().await.map_err(|e| unavailable(&e))?;
        let now = now_ms();
        let mut nodes = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| unavailable(&e))?;
            let Some(bytes) = store.get(&key).await.map_err(|e| unavailable(&e))? else {
                continue;
            };
            let Ok(status) = serde_json::from_slice::<NodeStatus>(&bytes) else {
                continue;
            };
            let lagging = status
                .tenants
                .iter()
                .filter(|tenant| {
                    manifests
                        .iter()
                        .find(|m| m.tenant == tenant.name)
                        .and_then(Manifest::serving)
                        .is_some_and(|wanted| tenant.hash.as_deref() != Some(wanted.hash.as_str()))
                })
                .map(|tenant| tenant.name.clone())
                .collect();
            let age = now.saturating_sub(status.heartbeat_ms);
            nodes.push(NodeView {
                heartbeat_age_ms: age,
                gone: age > GONE_AFTER.as_millis() as u64,
                lagging,
                status,
            });
        }
        nodes.sort_by(|a, b| a.status.node.cmp(&b.status.node));
        Ok(nodes)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
