//! A fleet of outpost nodes on NATS JetStream: every node connects to the fleet's hub
//! (a NATS cluster, directly or through a leaf node at its PoP) and shares through it
//! what one node alone cannot: global KV bindings ([`GlobalKv`]), deploys
//! ([`Deploys`]), cache purges ([`Purges`]) and each node's status ([`Statuses`]).
//!
//! Everything lives in buckets named after the fleet (`[fleet] name`), so one hub can
//! carry several fleets: `<name>-kv` for global KV, `<name>-tenants` and
//! `<name>-components` for deploys, `<name>-purges`, `<name>-nodes` for status. The hub
//! is the authority; each node keeps what it needs to go on serving while it is away.

mod deploys;
mod global_kv;
mod hub;
mod kv_cache;
mod purges;
mod status;
#[cfg(feature = "testing")]
pub mod testing;
mod wire;

pub use deploys::{
    DeployError, Deploys, FleetVersion, KEPT_VERSIONS, MAX_COMPONENT_BYTES, MAX_MANIFEST_BYTES,
    Manifest, ManifestEvent,
};
pub use global_kv::{GlobalBackend, GlobalKv};
pub use hub::{FleetError, Hub};
pub use purges::{FleetPurge, Purges};
pub use status::{GONE_AFTER, HEARTBEAT, NodeStatus, NodeView, Statuses, TenantOnNode, now_ms};
