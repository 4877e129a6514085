//! What the admin API shows about a tenant.

use std::collections::BTreeMap;

use outpost_config::TenantConfig;
use serde::Serialize;

use super::Version;

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

pub(super) fn limits_json(config: &TenantConfig) -> serde_json::Value {
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
