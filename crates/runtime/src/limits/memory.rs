//! The memory limit: a cap on each instance's linear memory and tables.

use crate::scope::{LimitHit, ScopeSlot};

/// Caps linear memory and tables per instance. Growing past a cap traps at once (as
/// Workers kills an isolate over its memory limit), and records the hit so the request
/// gets `503 memory limit exceeded` rather than a generic 500.
pub(crate) struct GuestLimiter {
    pub(crate) memory_bytes: usize,
    pub(crate) table_elements: usize,
    pub(crate) scope: ScopeSlot,
    /// The largest linear memory granted, for metrics.
    pub(crate) peak_memory: usize,
}

impl GuestLimiter {
    fn exceeded(&self) -> wasmtime::Error {
        match self.scope.get() {
            Some(scope) => scope.hit(LimitHit::Memory).into(),
            None => crate::scope::LimitExceeded(LimitHit::Memory).into(),
        }
    }
}

impl wasmtime::ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(self.exceeded());
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Err(self.exceeded());
        }
        Ok(true)
    }
}
