//! One request's view of its instance: identity for logs, deadline, meters, and the
//! record of which limit (if any) ended it.
//!
//! The scope is shared by the server's request task and by the instance's store (through
//! a [`ScopeSlot`]), because the parts of wasmtime that notice a limit (the resource
//! limiter, the epoch callback, the worker's exit) run inside the store, while the part
//! that chooses the status code runs in the request task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::limits::cpu::CpuMeter;

/// Which limit ended a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// Fuel or CPU time ran out.
    Cpu,
    /// Linear memory or a table would have grown past the cap.
    Memory,
    /// The wall-clock deadline passed.
    Timeout,
    /// The request body was larger than allowed.
    Body,
}

impl LimitHit {
    /// A short, stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitHit::Cpu => "cpu",
            LimitHit::Memory => "memory",
            LimitHit::Timeout => "timeout",
            LimitHit::Body => "body",
        }
    }
}

/// The error a limit raises inside wasm; it becomes the trap's cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} limit exceeded", .0.as_str())]
pub struct LimitExceeded(pub LimitHit);

/// Everything about one request that its instance needs to see.
pub struct RequestScope {
    /// Tenant name, for logs.
    pub tenant: Arc<str>,
    /// The request id (also sent to the client as `x-request-id`).
    pub id: Arc<str>,
    /// When the request must be finished, body and after-response work included.
    pub deadline: Instant,
    /// CPU budget, if the tenant set `limits.cpu`.
    pub cpu_budget: Option<Duration>,
    pub(crate) cpu: Arc<CpuMeter>,
    limit_hit: OnceLock<LimitHit>,
    log_bytes: AtomicU64,
    /// Outbound requests made so far (capped per request).
    pub(crate) subrequests: std::sync::atomic::AtomicU32,
    instance_exit: Notify,
    /// Released when the instance lets go of this request: the tenant's concurrency slot
    /// (and its client's). An object's event holds none: the request that sent it does.
    _admission: Option<crate::tenant::Admission>,
}

impl RequestScope {
    pub(crate) fn new(
        tenant: Arc<str>,
        id: Arc<str>,
        timeout: Duration,
        cpu_budget: Option<Duration>,
        admission: Option<crate::tenant::Admission>,
    ) -> RequestScope {
        RequestScope {
            tenant,
            id,
            deadline: Instant::now() + timeout,
            cpu_budget,
            cpu: Arc::new(CpuMeter::default()),
            limit_hit: OnceLock::new(),
            log_bytes: AtomicU64::new(0),
            subrequests: std::sync::atomic::AtomicU32::new(0),
            instance_exit: Notify::new(),
            _admission: admission,
        }
    }

    /// Records that `hit` ended this request; the first limit recorded wins.
    pub fn hit(&self, hit: LimitHit) -> LimitExceeded {
        let _ = self.limit_hit.set(hit);
        LimitExceeded(*self.limit_hit.get().unwrap_or(&hit))
    }

    /// The limit that ended this request, if one did.
    pub fn limit_hit(&self) -> Option<LimitHit> {
        self.limit_hit.get().copied()
    }

    /// Guest CPU time used so far.
    pub fn cpu_used(&self) -> Duration {
        self.cpu.used()
    }

    /// Counts `bytes` of guest log output; false once the request's allowance is spent.
    pub(crate) fn take_log_allowance(&self, bytes: usize, allowance: u64) -> LogAllowance {
        let before = self.log_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        if before + bytes as u64 <= allowance {
            LogAllowance::Granted
        } else if before <= allowance {
            LogAllowance::JustExhausted
        } else {
            LogAllowance::Exhausted
        }
    }

    pub(crate) fn instance_exited(&self) {
        self.instance_exit.notify_one();
    }

    /// Waits (at most `bound`) for the instance serving this request to exit, so the
    /// request's failure can be classified with the instance's own verdict.
    pub(crate) async fn wait_for_instance_exit(&self, bound: Duration) {
        let _ = tokio::time::timeout(bound, self.instance_exit.notified()).await;
    }
}

pub(crate) enum LogAllowance {
    Granted,
    JustExhausted,
    Exhausted,
}

/// The request an instance is serving now, shared by everything in its store that needs
/// to know (limiter, epoch callback, log streams, worker state).
#[derive(Clone, Default)]
pub(crate) struct ScopeSlot(Arc<Mutex<Option<Arc<RequestScope>>>>);

impl ScopeSlot {
    pub(crate) fn get(&self) -> Option<Arc<RequestScope>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set(&self, scope: Option<Arc<RequestScope>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = scope;
    }
}
