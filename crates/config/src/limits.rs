//! `limits = { … }`: a tenant's per-request limits, their defaults and their ranges.

use std::time::Duration;

use crate::raw::{RawLimits, SizeValue};
use crate::{ConfigError, Validator, format_size, parse_duration, parse_size};

/// Fuel per request when a tenant sets none: roughly a second of busy guest CPU.
pub const DEFAULT_FUEL: u64 = 1_000_000_000;
/// Linear memory per instance when a tenant sets none (Workers' isolate limit).
pub const DEFAULT_MEMORY_BYTES: u64 = 128 << 20;
/// Wall-clock budget per request when a tenant sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests a tenant may have in flight when it sets none.
pub const DEFAULT_CONCURRENCY: u32 = 64;
/// Request body size when a tenant sets none (Workers' free-plan limit).
pub const DEFAULT_BODY_BYTES: u64 = 100 << 20;
/// Size cap of each SQLite database when a tenant sets none.
pub const DEFAULT_SQL_SIZE_BYTES: u64 = 1 << 30;
/// The smallest SQLite size cap (a few pages).
pub const MIN_SQL_SIZE_BYTES: u64 = 64 << 10;

/// The smallest memory cap that can hold a Rust guest's stack and heap.
pub const MIN_MEMORY_BYTES: u64 = 1 << 20;
/// The largest memory a 32-bit wasm instance can address.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;
/// Upper bound on a request's wall-clock budget.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Upper bound on a tenant's concurrency.
pub const MAX_CONCURRENCY: u32 = 100_000;

/// Per-request limits of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (deterministic units of guest work) per request.
    pub fuel: u64,
    /// CPU time per request, measured on the thread's CPU clock while the guest runs.
    pub cpu: Option<Duration>,
    /// Linear memory (and table) bytes per instance.
    pub memory: u64,
    /// Wall-clock time per request, including streaming the body and work after the
    /// response.
    pub timeout: Duration,
    /// Requests in flight at once; more get 503 with `Retry-After`.
    pub concurrency: u32,
    /// Of those, how many one client address (an IPv6 /64) may hold; more get 429.
    pub per_client: Option<u32>,
    /// Request body bytes; more get 413.
    pub body: u64,
    /// Bytes each of the tenant's SQLite databases may grow to.
    pub sql_size: u64,
    /// Outbound requests one request may make.
    pub subrequests: u32,
    /// Bytes of one outbound response's body a guest may read.
    pub subrequest_body: u64,
    /// WebSockets open at once to the tenant's Durable Objects.
    pub websockets: u32,
    /// Durable Objects of the tenant in memory at once (each holds an instance slot).
    pub live_objects: u32,
}

/// Live objects per tenant when it sets none.
pub const DEFAULT_LIVE_OBJECTS: u32 = 100;
/// Upper bound on `limits.live_objects`.
pub const MAX_LIVE_OBJECTS: u32 = 100_000;

/// WebSockets per tenant when it sets none.
pub const DEFAULT_WEBSOCKETS: u32 = 10_000;
/// Upper bound on `limits.websockets`.
pub const MAX_WEBSOCKETS: u32 = 1_000_000;

/// Outbound requests per request when a tenant sets none (Workers' free-plan figure).
pub const DEFAULT_SUBREQUESTS: u32 = 50;
/// Upper bound on `limits.subrequests`.
pub const MAX_SUBREQUESTS: u32 = 10_000;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            fuel: DEFAULT_FUEL,
            cpu: None,
            memory: DEFAULT_MEMORY_BYTES,
            timeout: DEFAULT_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            per_client: None,
            body: DEFAULT_BODY_BYTES,
            sql_size: DEFAULT_SQL_SIZE_BYTES,
            subrequests: DEFAULT_SUBREQUESTS,
            subrequest_body: DEFAULT_BODY_BYTES,
            websockets: DEFAULT_WEBSOCKETS,
            live_objects: DEFAULT_LIVE_OBJECTS,
        }
    }
}

impl Validator<'_> {
    pub(crate) fn limits(&self, raw: RawLimits, errors: &mut Vec<ConfigError>) -> Limits {
        let mut limits = Limits::default();
        if let Some(fuel) = raw.fuel {
            if *fuel.get_ref() == 0 {
                errors.push(self.error(&fuel, "limits.fuel", "must be above 0"));
            } else {
                limits.fuel = fuel.into_inner();
            }
        }
        if let Some(memory) = raw.memory {
            match size(memory.get_ref()) {
                Ok(bytes) if (MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&bytes) => {
                    limits.memory = bytes;
                }
                Ok(bytes) => errors.push(self.error(
                    &memory,
                    "limits.memory",
                    format!(
                        "{} is out of range; use between 1MiB and 4GiB",
                        format_size(bytes)
                    ),
                )),
                Err(message) => errors.push(self.error(&memory, "limits.memory", message)),
            }
        }
        if let Some(sql_size) = raw.sql_size {
            match size(sql_size.get_ref()) {
                Ok(bytes) if bytes >= MIN_SQL_SIZE_BYTES => limits.sql_size = bytes,
                Ok(_) => {
                    errors.push(self.error(&sql_size, "limits.sql_size", "must be at least 64KiB"))
                }
                Err(message) => errors.push(self.error(&sql_size, "limits.sql_size", message)),
            }
        }
        if let Some(body) = raw.body {
            match size(body.get_ref()) {
                Ok(bytes) => limits.body = bytes,
                Err(message) => errors.push(self.error(&body, "limits.body", message)),
            }
        }
        if let Some(timeout) = raw.timeout {
            match parse_duration(timeout.get_ref()) {
                Ok(d) if !d.is_zero() && d <= MAX_TIMEOUT => limits.timeout = d,
                Ok(_) => errors.push(self.error(
                    &timeout,
                    "limits.timeout",
                    "must be above 0 and at most 1h",
                )),
                Err(message) => errors.push(self.error(&timeout, "limits.timeout", message)),
            }
        }
        if let Some(cpu) = raw.cpu {
            match parse_duration(cpu.get_ref()) {
                Ok(d) if !d.is_zero() => limits.cpu = Some(d),
                Ok(_) => errors.push(self.error(&cpu, "limits.cpu", "must be above 0")),
                Err(message) => errors.push(self.error(&cpu, "limits.cpu", message)),
            }
        }
        if let Some(subrequests) = raw.subrequests {
            if (1..=MAX_SUBREQUESTS).contains(subrequests.get_ref()) {
                limits.subrequests = subrequests.into_inner();
            } else {
                errors.push(self.error(
                    &subrequests,
                    "limits.subrequests",
                    format!("must be between 1 and {MAX_SUBREQUESTS}"),
                ));
            }
        }
        if let Some(sockets) = raw.websockets {
            if (1..=MAX_WEBSOCKETS).contains(sockets.get_ref()) {
                limits.websockets = sockets.into_inner();
            } else {
                errors.push(self.error(
                    &sockets,
                    "limits.websockets",
                    format!("must be between 1 and {MAX_WEBSOCKETS}"),
                ));
            }
        }
        if let Some(objects) = raw.live_objects {
            if (1..=MAX_LIVE_OBJECTS).contains(objects.get_ref()) {
                limits.live_objects = objects.into_inner();
            } else {
                errors.push(self.error(
                    &objects,
                    "limits.live_objects",
                    format!("must be between 1 and {MAX_LIVE_OBJECTS}"),
                ));
            }
        }
        if let Some(bytes) = raw.subrequest_body {
            match size(bytes.get_ref()) {
                Ok(value) => limits.subrequest_body = value,
                Err(message) => errors.push(self.error(&bytes, "limits.subrequest_body", message)),
            }
        }
        if let Some(concurrency) = raw.concurrency {
            if (1..=MAX_CONCURRENCY).contains(concurrency.get_ref()) {
                limits.concurrency = concurrency.into_inner();
            } else {
                errors.push(self.error(
                    &concurrency,
                    "limits.concurrency",
                    format!("must be between 1 and {MAX_CONCURRENCY}"),
                ));
            }
        }
        if let Some(per_client) = raw.per_client {
            if (1..=limits.concurrency).contains(per_client.get_ref()) {
                limits.per_client = Some(per_client.into_inner());
            } else {
                errors.push(self.error(
                    &per_client,
                    "limits.per_client",
                    format!(
                        "must be between 1 and the tenant's concurrency ({})",
                        limits.concurrency
                    ),
                ));
            }
        }
        limits
    }
}

pub(crate) fn size(value: &SizeValue) -> Result<u64, String> {
    match value {
        SizeValue::Bytes(bytes) => Ok(*bytes),
        SizeValue::Text(text) => parse_size(text),
    }
}
