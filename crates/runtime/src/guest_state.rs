//! What each instance's `Store` holds: WASI and wasi:http contexts, the tenant's
//! bindings, the resource limiter, and the slot naming the request it serves. It hands
//! each capability its view (`KvView`, `SqlView`, `BlobView`, `WasiHttpView`).

use outpost_bindings::TenantBindings;
use outpost_bindings::blob::{BlobCtxView, BlobView};
use outpost_bindings::cache::{CacheCtxView, CacheView};
use outpost_bindings::http::{OutboundHooks, SubrequestCounter};
use outpost_bindings::kv::{KvCtxView, KvView};
use outpost_bindings::objects::{ObjectSelf, ObjectsCtxView, ObjectsView};
use outpost_bindings::sql::{SqlCtxView, SqlView};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::limits::lanes::{LaneSlot, Lanes};
use crate::limits::memory::GuestLimiter;
use crate::scope::ScopeSlot;

/// A store's data.
pub(crate) struct GuestState {
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) hooks: OutboundHooks,
    pub(crate) limiter: GuestLimiter,
    pub(crate) scope: ScopeSlot,
    /// The tenant's lanes, and the one this instance holds while it computes.
    pub(crate) lanes: Lanes,
    pub(crate) lane: Arc<LaneSlot>,
    /// Whether the tenant budgets CPU time (the meter then runs around host calls).
    pub(crate) meter_cpu: bool,
    /// The stores the tenant declared.
    pub(crate) bindings: Arc<TenantBindings>,
    /// The Durable Object this instance runs as, if it is one (for its whole life).
    pub(crate) object: Option<ObjectSelf>,
}

impl ObjectsView for GuestState {
    fn objects(&mut self) -> ObjectsCtxView<'_> {
        ObjectsCtxView {
            ctx: &self.bindings.objects,
            table: &mut self.table,
            current: self.object.as_ref(),
            deadline: self.scope.get().map(|scope| scope.deadline),
        }
    }
}

impl KvView for GuestState {
    fn kv(&mut self) -> KvCtxView<'_> {
        KvCtxView {
            ctx: &self.bindings.kv,
            table: &mut self.table,
        }
    }
}

impl SqlView for GuestState {
    fn sql(&mut self) -> SqlCtxView<'_> {
        SqlCtxView {
            ctx: &self.bindings.sql,
            table: &mut self.table,
            deadline: self.scope.get().map(|scope| scope.deadline),
        }
    }
}

impl BlobView for GuestState {
    fn blob(&mut self) -> BlobCtxView<'_> {
        BlobCtxView {
            ctx: &self.bindings.blob,
            table: &mut self.table,
        }
    }
}

impl CacheView for GuestState {
    fn cache(&mut self) -> CacheCtxView<'_> {
        CacheCtxView {
            ctx: &self.bindings.cache,
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

/// The request an instance serves is the one whose subrequests count.
impl SubrequestCounter for ScopeSlot {
    fn count(&self) -> u32 {
        self.get()
            .map_or(0, |scope| scope.subrequests.fetch_add(1, Ordering::Relaxed))
    }

    fn request_id(&self) -> Option<Arc<str>> {
        self.get().map(|scope| scope.id.clone())
    }
}
