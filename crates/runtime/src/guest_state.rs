//! What each instance's `Store` holds: WASI and wasi:http contexts, the resource limiter,
//! and the slot naming the request it serves.

use outpost_bindings::{BindingsView, TenantBindings};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::lanes::{LaneSlot, Lanes};
use crate::outbound::Outbound;
use crate::scope::{LimitHit, ScopeSlot};

/// A store's data.
pub(crate) struct GuestState {
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) hooks: OutboundPolicy,
    pub(crate) limiter: GuestLimiter,
    pub(crate) scope: ScopeSlot,
    /// The tenant's lanes, and the one this instance holds while it computes.
    pub(crate) lanes: Lanes,
    pub(crate) lane: Arc<LaneSlot>,
    /// Whether the tenant budgets CPU time (the meter then runs around host calls).
    pub(crate) meter_cpu: bool,
    /// The stores the tenant declared.
    pub(crate) bindings: Arc<TenantBindings>,
}

impl GuestState {
    /// What the `outpost:edge` host calls see.
    pub(crate) fn bindings_view(&mut self) -> BindingsView<'_> {
        BindingsView {
            bindings: &self.bindings,
            table: &mut self.table,
            deadline: self.scope.get().map(|scope| scope.deadline),
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound HTTP: the tenant's listed origins, or nothing at all. A guest must never
/// reach the node's network (or the internet) unless its operator said so.
pub(crate) struct OutboundPolicy {
    pub(crate) outbound: Option<Arc<Outbound>>,
    pub(crate) scope: ScopeSlot,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        use wasmtime_wasi_http::Error;
        let Some(outbound) = self.outbound.clone() else {
            return Box::new(async { Err(Error::HttpRequestDenied) });
        };
        let max = outbound.max_subrequests;
        if let Some(scope) = self.scope.get()
            && scope.subrequests.fetch_add(1, Ordering::Relaxed) >= max
        {
            return Box::new(async move {
                Err(Error::InternalError(Some(format!(
                    "a request may make at most {max} subrequests (limits.subrequests)"
                ))))
            });
        }
        let first_byte = options.and_then(|o| o.first_byte_timeout);
        Box::new(async move {
            let response = outbound.send(request, first_byte).await?;
            let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

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
