//! A fleet of outpost nodes on NATS JetStream: every node connects to the fleet's hub
//! (a NATS cluster, directly or through a leaf node at its PoP) and shares through it
//! what one node alone cannot: global KV bindings ([`GlobalKv`]), and (next) deploys
//! and each node's status.
//!
//! Everything lives in buckets named after the fleet (`[fleet] name`), so one hub can
//! carry several fleets: `<name>-kv` for global KV. The hub is the authority; each node
//! keeps what it needs to go on serving while the hub is away.

mod global_kv;
mod hub;
mod kv_cache;
#[cfg(feature = "testing")]
pub mod testing;

pub use global_kv::{GlobalBackend, GlobalKv};
pub use hub::{FleetError, Hub};
