//! Deploy once, every node serves: components live in the object store bucket
//! `<fleet>-components` by SHA-256, and each tenant's manifest (its versions, newest
//! last, and for a tenant defined in the fleet its `[[tenant]]` table) in the KV bucket
//! `<fleet>-tenants`. Every node watches the manifests and switches to what they say.
//!
//! Components are immutable and named by their hash, so a node that reads a manifest
//! before the object is visible waits and retries; it never gets the wrong bytes. A
//! manifest changes only by compare-and-set on its revision, so two deploys at once
//! both land, in some order.

use std::time::Duration;

use async_nats::jetstream::{kv, object_store};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::hub::Hub;
use crate::wire::hex;

/// Versions a manifest keeps for rollback.
pub const KEPT_VERSIONS: usize = 10;
/// The largest manifest a node accepts (a tenant's table and ten versions fit in a few KiB).
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;
/// The largest component the fleet stores.
pub const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;

/// Why a fleet deploy, rollback or read failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("the fleet's hub is unreachable: {0}")]
    Unavailable(String),
    #[error("tenant `{0}` has no manifest in the fleet")]
    NoManifest(String),
    #[error("tenant `{0}` has no earlier version in the fleet to roll back to")]
    NothingToRollBack(String),
    #[error("tenant `{tenant}`: the manifest is not valid: {reason}")]
    BadManifest { tenant: String, reason: String },
    #[error("component {hash} is not in the fleet's object store: {reason}")]
    MissingComponent { hash: String, reason: String },
    #[error("component {hash} read from the fleet does not hash to its name")]
    CorruptComponent { hash: String },
    #[error("the component is {0} bytes; the fleet stores at most {MAX_COMPONENT_BYTES}")]
    TooLarge(usize),
}

/// One version of a tenant in the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetVersion {
    /// SHA-256 of the component, hex.
    pub hash: String,
    /// Seconds since the Unix epoch.
    pub deployed_at: u64,
    /// The node (or `outpost deploy --fleet` host) that deployed it.
    pub by: String,
    pub size: u64,
}

/// A tenant as the fleet knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub tenant: String,
    /// The tenant's `[[tenant]]` table (TOML) when the fleet defines the tenant; `None`
    /// when each node's own config does and the fleet only carries its versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Oldest first; the last one serves.
    pub versions: Vec<FleetVersion>,
}

impl Manifest {
    /// The version every node should serve.
    pub fn serving(&self) -> Option<&FleetVersion> {
        self.versions.last()
    }

    /// Parses a manifest read from the hub under `key`, refusing what no deploy writes.
    pub fn parse(key: &str, bytes: &[u8]) -> Result<Manifest, DeployError> {
        let bad = |reason: String| DeployError::BadManifest {
            tenant: key.to_string(),
            reason,
        };
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(bad(format!(
                "{} bytes, over the {MAX_MANIFEST_BYTES}-byte limit",
                bytes.len()
            )));
        }
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not manifest JSON: {e}")))?;
        if manifest.tenant != key {
            return Err(bad(format!("it names tenant `{}`", manifest.tenant)));
        }
        if let Some(bad_hash) = manifest
            .versions
            .iter()
            .find(|v| v.hash.len() != 64 || !v.hash.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(bad(format!("`{}` is not a SHA-256 hash", bad_hash.hash)));
        }
        Ok(manifest)
    }
}

/// A change to the fleet's tenants, as the watch delivers it.
#[derive(Debug)]
pub enum ManifestEvent {
    /// A tenant's manifest, new or changed (or as it stood when the watch began).
    Changed(Manifest),
    /// A tenant removed from the fleet.
    Removed(String),
    /// A manifest that cannot be used; the tenant keeps what it serves.
    Refused(DeployError),
}

/// The fleet's deploys: manifests and components.
#[derive(Clone)]
pub struct Deploys {
    hub: Hub,
}

impl Deploys {
    pub fn new(hub: &Hub) -> Deploys {
        Deploys { hub: hub.clone() }
    }

    fn unavailable(error: impl std::fmt::Display) -> DeployError {
        DeployError::Unavailable(error.to_string())
    }

    async fn manifests(&self) -> Result<kv::Store, DeployError> {
        self.hub
            .kv_bucket("tenants", "outpost tenant manifests", 5)
            .await
            .map_err(DeployError::Unavailable)
    }

    async fn objects(&self) -> Result<object_store::ObjectStore, DeployError> {
        let bucket = self.hub.bucket("components");
        if let Ok(store) = self.hub.jetstream.get_object_store(&bucket).await {
            return Ok(store);
        }
        self.hub
            .jetstream
            .create_object_store(object_store::Config {
                bucket,
                description: Some("outpost components by SHA-256".into()),
                num_replicas: self.hub.config.replicas,
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(Self::unavailable)
    }

    /// Stores `wasm` (once per hash) and makes it the newest version of `tenant`; with
    /// `config`, the fleet defines the tenant with that `[[tenant]]` table.
    pub async fn publish(
        &self,
        tenant: &str,
        wasm: &[u8],
        config: Option<String>,
        by: &str,
    ) -> Result<Manifest, DeployError> {
        if wasm.len() > MAX_COMPONENT_BYTES {
            return Err(DeployError::TooLarge(wasm.len()));
        }
        let hash = hex(&Sha256::digest(wasm));
        let objects = self.objects().await?;
        if objects.info(&hash).await.is_err() {
            let mut reader = wasm;
            objects
                .put(hash.as_str(), &mut reader)
                .await
                .map_err(Self::unavailable)?;
        }
        let version = FleetVersion {
            hash,
            deployed_at: now_s(),
            by: by.to_string(),
            size: wasm.len() as u64,
        };
        self.change(tenant, |manifest| {
            let mut manifest = manifest.unwrap_or_else(|| Manifest {
                tenant: tenant.to_string(),
                config: None,
                versions: Vec::new(),
            });
            if config.is_some() {
                manifest.config = config.clone();
            }
            manifest.versions.push(version.clone());
            let excess = manifest.versions.len().saturating_sub(KEPT_VERSIONS);
            manifest.versions.drain(..excess);
            Ok(manifest)
        })
        .await
    }

    /// Makes the version before the newest serve again.
    pub async fn rollback(&self, tenant: &str) -> Result<Manifest, DeployError> {
        self.change(tenant, |manifest| {
            let mut manifest = manifest.ok_or_else(|| DeployError::NoManifest(tenant.into()))?;
            if manifest.versions.len() < 2 {
                return Err(DeployError::NothingToRollBack(tenant.into()));
            }
            manifest.versions.pop();
            Ok(manifest)
        })
        .await
    }

    /// Removes `tenant` from the fleet (nodes drop it if the fleet defined it).
    pub async fn remove(&self, tenant: &str) -> Result<(), DeployError> {
        let store = self.manifests().await?;
        store.delete(tenant).await.map_err(Self::unavailable)
    }

    /// Applies `edit` to `tenant`'s manifest by compare-and-set, retrying if another
    /// deploy changed it meanwhile.
    async fn change(
        &self,
        tenant: &str,
        edit: impl Fn(Option<Manifest>) -> Result<Manifest, DeployError>,
    ) -> Result<Manifest, DeployError> {
        let store = self.manifests().await?;
        for _ in 0..100 {
            let entry = store.entry(tenant).await.map_err(Self::unavailable)?;
            let (current, revision) = match entry {
                Some(entry) if entry.operation == kv::Operation::Put => (
                    Some(Manifest::parse(tenant, &entry.value)?),
                    Some(entry.revision),
                ),
                Some(entry) => (None, Some(entry.revision)),
                None => (None, None),
            };
            let next = edit(current)?;
            let bytes = serde_json::to_vec(&next).map_err(|e| DeployError::BadManifest {
                tenant: tenant.into(),
                reason: e.to_string(),
            })?;
            let written = match revision {
                Some(revision) => store.update(tenant, bytes.into(), revision).await.is_ok(),
                None => store.create(tenant, bytes.into()).await.is_ok(),
            };
            if written {
                return Ok(next);
            }
            tokio::time::sleep(Duration::from_millis(rand::random_range(1..20))).await;
        }
        Err(DeployError::Unavailable(format!(
            "tenant `{tenant}`'s manifest kept changing; retry the deploy"
        )))
    }

    /// The component named `hash`, checked against its name.
    pub async fn component(&self, hash: &str) -> Result<Vec<u8>, DeployError> {
        let missing = |reason: String| DeployError::MissingComponent {
            hash: hash.to_string(),
            reason,
        };
        let objects = self.objects().await?;
        let mut object = objects
            .get(hash)
            .await
            .map_err(|e| missing(e.to_string()))?;
        let mut wasm = Vec::new();
        object
            .read_to_end(&mut wasm)
            .await
            .map_err(|e| missing(e.to_string()))?;
        if hex(&Sha256::digest(&wasm)) != hash {
            return Err(DeployError::CorruptComponent { hash: hash.into() });
        }
        Ok(wasm)
    }

    /// Every manifest as it stands, then every change, for as long as the hub is there
    /// (the stream ends when the watch breaks; watch again).
    pub async fn watch(
        &self,
    ) -> Result<impl futures::Stream<Item = ManifestEvent> + Send + use<>, DeployError> {
        let store = self.manifests().await?;
        let watch = store
            .watch_with_history(">")
            .await
            .map_err(Self::unavailable)?;
        Ok(watch
            .take_while(|entry| futures::future::ready(entry.is_ok()))
            .filter_map(|entry| {
                futures::future::ready(entry.ok().map(|entry| match entry.operation {
                    kv::Operation::Put => match Manifest::parse(&entry.key, &entry.value) {
                        Ok(manifest) => ManifestEvent::Changed(manifest),
                        Err(refused) => ManifestEvent::Refused(refused),
                    },
                    kv::Operation::Delete | kv::Operation::Purge => {
                        ManifestEvent::Removed(entry.key)
                    }
                }))
            }))
    }

    /// `tenant`'s manifest, if the fleet has one.
    pub async fn manifest(&self, tenant: &str) -> Result<Option<Manifest>, DeployError> {
        let store = self.manifests().await?;
        match store.get(tenant).await.map_err(Self::unavailable)? {
            Some(bytes) => Manifest::parse(tenant, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every tenant's manifest now.
    pub async fn all(&self) -> Result<Vec<Manifest>, DeployError> {
        let store = self.manifests().await?;
        let mut keys = store.keys().await.map_err(Self::unavailable)?;
        let mut manifests = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(Self::unavailable)?;
            if let Some(bytes) = store.get(&key).await.map_err(Self::unavailable)?
                && let Ok(manifest) = Manifest::parse(&key, &bytes)
            {
                manifests.push(manifest);
            }
        }
        Ok(manifests)
    }

    /// Writes raw bytes as `tenant`'s manifest: for tests of what nodes refuse.
    #[doc(hidden)]
    pub async fn put_raw_manifest(&self, tenant: &str, bytes: Vec<u8>) -> Result<(), DeployError> {
        let store = self.manifests().await?;
        store
            .put(tenant, bytes.into())
            .await
            .map(|_| ())
            .map_err(Self::unavailable)
    }
}

pub(crate) fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_that_no_deploy_writes_are_refused() {
        let good = Manifest {
            tenant: "shop".into(),
            config: None,
            versions: vec![FleetVersion {
                hash: "a".repeat(64),
                deployed_at: 1,
                by: "n1".into(),
                size: 3,
            }],
        };
        let bytes = serde_json::to_vec(&good).expect("json");
        assert_eq!(Manifest::parse("shop", &bytes).expect("parses"), good);
        for (key, bytes) in [
            ("other", bytes.clone()),
            ("shop", b"{not json".to_vec()),
            ("shop", vec![b' '; MAX_MANIFEST_BYTES + 1]),
            (
                "shop",
                br#"{"tenant":"shop","versions":[{"hash":"xyz","deployed_at":1,"by":"n","size":1}]}"#
                    .to_vec(),
            ),
        ] {
            assert!(
                matches!(Manifest::parse(key, &bytes), Err(DeployError::BadManifest { .. })),
                "{key}"
            );
        }
    }
}
