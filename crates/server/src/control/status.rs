//! What the admin API shows about a tenant.

use std::collections::BTreeMap;
use std::sync::Weak;

use outpost_config::TenantConfig;
use serde::Serialize;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::{Control, Version};
use crate::metrics::{TenantLabel, encode_gauge, encode_gauges};

/// What the admin API shows about a tenant.
#[derive(Debug, Clone, Serialize)]
pub struct TenantStatus {
    pub name: String,
    pub routes: Vec<String>,
    pub limits: serde_json::Value,
    /// The serving version.
    pub version: Option<Version>,
    /// Earlier versions, newest first (rollback targets).
    pub previous: Vec<Version>,
    /// Why the last change to this tenant did not take, if it did not.
    pub last_error: Option<String>,
    pub requests_in_flight: usize,
    /// Requests answered since the node started, by status class.
    pub requests: BTreeMap<&'static str, u64>,
}

fn limits_json(config: &TenantConfig) -> serde_json::Value {
    let limits = &config.limits;
    serde_json::json!({
        "fuel": limits.fuel,
        "cpu_ms": limits.cpu.map(|d| d.as_millis() as u64),
        "memory": limits.memory,
        "timeout_ms": limits.timeout.as_millis() as u64,
        "concurrency": limits.concurrency,
        "body": limits.body,
        "sql_size": limits.sql_size,
        "subrequests": limits.subrequests,
        "subrequest_body": limits.subrequest_body,
    })
}

impl Control {
    /// Every tenant's status, by name.
    pub fn status(&self) -> Vec<TenantStatus> {
        let state = self.lock();
        let mut all: Vec<TenantStatus> = state
            .slots
            .iter()
            .map(|(name, slot)| {
                let mut versions = slot.history.versions.clone();
                let version = versions.pop();
                versions.reverse();
                TenantStatus {
                    name: name.clone(),
                    routes: slot.config.routes.iter().map(|r| r.to_string()).collect(),
                    limits: limits_json(&slot.config),
                    version,
                    previous: versions,
                    last_error: slot.last_error.clone(),
                    requests_in_flight: slot.tenant.in_flight(),
                    requests: self.metrics.requests_by_class(name),
                }
            })
            .collect();
        all.extend(state.failed.iter().map(|(name, error)| TenantStatus {
            name: name.clone(),
            routes: Vec::new(),
            limits: serde_json::Value::Null,
            version: None,
            previous: Vec::new(),
            last_error: Some(error.clone()),
            requests_in_flight: 0,
            requests: BTreeMap::new(),
        }));
        all
    }
}

/// The control plane's gauges, read at each scrape: requests in flight per tenant and
/// compiled components in memory. Holds the control plane weakly (the control plane
/// holds the metrics).
pub struct ControlGauges(pub(super) Weak<Control>);

impl std::fmt::Debug for ControlGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlGauges")
    }
}

impl Collector for ControlGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(control) = self.0.upgrade() else {
            return Ok(());
        };
        encode_gauges(
            &mut encoder,
            "tenant_requests_in_flight",
            "Requests a tenant is running (admitted, not finished)",
            control.tenants().iter().map(|tenant| {
                let label = TenantLabel {
                    tenant: tenant.info().name.to_string(),
                };
                (label, tenant.in_flight() as i64)
            }),
        )?;
        encode_gauge(
            &mut encoder,
            "components_in_memory",
            "Distinct compiled components in memory (freed when no serving version uses them)",
            control.components_in_memory() as i64,
        )?;
        encode_gauge(
            &mut encoder,
            "objects_live",
            "Durable Objects with an instance in memory, of every tenant (each holds one instance slot)",
            control.runtime.objects().live() as i64,
        )?;
        encode_gauge(
            &mut encoder,
            "objects_websockets_open",
            "WebSockets held by the node for Durable Objects, of every tenant (awake or hibernating)",
            control.runtime.objects().sockets_open() as i64,
        )?;
        let pool = control.runtime.pool_usage();
        encode_gauge(
            &mut encoder,
            "pool_warm_slots",
            "Instance slots not in use that keep memory resident for the next instance (at most 100)",
            i64::from(pool.warm_slots),
        )?;
        encode_gauge(
            &mut encoder,
            "pool_resident_bytes",
            "Bytes those warm slots keep resident (linear memories and tables), at most `keep_resident` each",
            pool.resident_bytes as i64,
        )
    }
}
