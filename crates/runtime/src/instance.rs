//! A tenant's instances: building each store under the tenant's limits, and the
//! wasmtime-wasi-http worker state that gives every request a full fuel tank, a fresh
//! CPU meter and its own deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use outpost_bindings::TenantBindings;
use outpost_bindings::http::OutboundHooks;
use outpost_bindings::objects::ObjectSelf;
use outpost_config::Limits;
use wasmtime::component::{GuestTaskId, ResourceTable};
use wasmtime::{AsContextMut, Store, StoreContextMut};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::engine::{MAX_RESOURCES_PER_INSTANCE, MAX_TABLE_ELEMENTS};
use crate::error::limit_in;
use crate::guest_log::{GuestLog, GuestStream};
use crate::guest_state::GuestState;
use crate::limits::epoch::{on_call, on_epoch_tick};
use crate::limits::lanes::Lanes;
use crate::limits::memory::GuestLimiter;
use crate::meters::TenantMeters;
use crate::scope::{LimitExceeded, LimitHit, RequestScope, ScopeSlot};

/// With `reuse = true`, an instance serves at most this many requests, then is replaced
/// (as `wasmtime serve` does for WASI 0.3 guests), bounding what can leak between them.
pub const REUSE_MAX_REQUESTS: usize = 128;
/// With `reuse = true`, an idle instance is dropped after this long.
pub const REUSE_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// Creates instances for a tenant's [`ProxyHandler`].
pub(crate) struct TenantInstances {
    pub(crate) name: Arc<str>,
    pub(crate) lanes: Lanes,
    pub(crate) engine: wasmtime::Engine,
    pub(crate) limits: Limits,
    pub(crate) vars: Vec<(String, String)>,
    pub(crate) reuse: bool,
    pub(crate) pre: ProxyPre<GuestState>,
    /// Its stores and outbound client.
    pub(crate) bindings: Arc<TenantBindings>,
    pub(crate) meters: TenantMeters,
}

impl TenantInstances {
    /// A store under the tenant's limits; `object` is the Durable Object it runs as, if
    /// it is one.
    pub(crate) fn new_store(
        &self,
        object: Option<ObjectSelf>,
    ) -> wasmtime::Result<(Store<GuestState>, ScopeSlot)> {
        let caller = object
            .as_ref()
            .map(|object| (object.namespace.class.clone(), object.id));
        let scope = ScopeSlot::default();
        let wasi = WasiCtxBuilder::new()
            .envs(&self.vars)
            .stdout(GuestLog::new(
                GuestStream::Stdout,
                self.name.clone(),
                scope.clone(),
            ))
            .stderr(GuestLog::new(
                GuestStream::Stderr,
                self.name.clone(),
                scope.clone(),
            ))
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES_PER_INSTANCE);
        let state = GuestState {
            table,
            wasi,
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks::new(self.bindings.outbound.clone(), Box::new(scope.clone()))
                .with_cache(self.bindings.cache.tenant_cache().cloned())
                .with_objects(self.bindings.objects.clone(), caller),
            limiter: GuestLimiter {
                memory_bytes: self.limits.memory as usize,
                table_elements: MAX_TABLE_ELEMENTS,
                scope: scope.clone(),
                peak_memory: 0,
            },
            scope: scope.clone(),
            lanes: self.lanes.clone(),
            lane: Arc::default(),
            meter_cpu: self.limits.cpu.is_some(),
            bindings: self.bindings.clone(),
            object,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Instantiation may run start functions; give them the request's budget.
        store.set_fuel(self.limits.fuel)?;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(on_epoch_tick);
        store.call_hook(on_call);
        Ok((store, scope))
    }

    /// Instantiates once without a request, so a component that cannot start under the
    /// tenant's limits (say, initial memory above the cap) is refused at load time.
    pub(crate) fn trial_instantiate(&self) -> wasmtime::Result<()> {
        let (mut store, _) = self.new_store(None)?;
        // `instantiate_async` needs a runtime but nothing here waits on I/O.
        futures::executor::block_on(self.pre.instantiate_async(&mut store))?;
        Ok(())
    }
}

impl HandlerState for TenantInstances {
    type StoreData = GuestState;
    type WorkerExpiration = InstanceExpiration;
    type WorkerState = InstanceState;

    async fn instantiate(
        &self,
    ) -> wasmtime::Result<Instance<GuestState, InstanceExpiration, InstanceState>> {
        let started = Instant::now();
        let (mut store, scope) = self.new_store(None)?;
        let proxy = self.pre.instantiate_async(&mut store).await?;
        let lane = store.data().lane.clone();
        self.meters
            .instantiation
            .observe(started.elapsed().as_secs_f64());
        Ok(Instance {
            store,
            proxy,
            view: GuestState::http,
            expiration: InstanceExpiration {
                scope: scope.clone(),
                lane,
                sleep: Box::pin(tokio::time::sleep(Duration::MAX / 4)),
            },
            state: InstanceState {
                tenant: self.name.clone(),
                fuel: self.limits.fuel,
                max_requests: if self.reuse { REUSE_MAX_REQUESTS } else { 1 },
                scope,
                meters: self.meters.clone(),
                served: AtomicBool::new(false),
            },
        })
    }
}

/// Per-instance worker state: which requests it takes, and setting up each one.
pub(crate) struct InstanceState {
    tenant: Arc<str>,
    fuel: u64,
    max_requests: usize,
    scope: ScopeSlot,
    meters: TenantMeters,
    /// Whether a request has run (its fuel is counted when the next starts or at drop).
    served: AtomicBool,
}

impl InstanceState {
    /// Counts the fuel the last request burnt.
    fn count_fuel(&self, store: &StoreContextMut<'_, GuestState>) {
        if self.served.swap(false, Ordering::Relaxed) {
            let left = store.get_fuel().unwrap_or(self.fuel);
            self.meters.fuel.inc_by(self.fuel.saturating_sub(left));
        }
    }
}

impl WorkerState for InstanceState {
    type StoreData = GuestState;
    type RequestData = Arc<RequestScope>;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.max_requests {
            ShouldAccept::Never
        } else if concurrent >= 1 {
            // One request at a time, so fuel, CPU and the deadline are the request's own.
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, GuestState>,
        scope: Arc<RequestScope>,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        self.count_fuel(&store);
        self.served.store(true, Ordering::Relaxed);
        if let Err(error) = store.set_fuel(self.fuel) {
            tracing::error!(tenant = %self.tenant, request_id = %scope.id, "cannot set fuel: {error}");
        }
        store.set_epoch_deadline(1);
        let deadline = tokio::time::Instant::from_std(scope.deadline);
        self.scope.set(Some(scope));
        Box::pin(tokio::time::sleep_until(deadline))
    }

    fn drop(&self, mut store: Store<GuestState>, result: wasmtime::Result<()>) {
        self.count_fuel(&store.as_context_mut());
        self.meters
            .memory_peak
            .observe(store.data().limiter.peak_memory as f64);
        let scope = self.scope.get();
        if let Err(error) = &result {
            let request_id = scope.as_ref().map_or("-", |s| &s.id);
            let hit = scope
                .as_ref()
                .and_then(|s| s.limit_hit())
                .or_else(|| limit_in(error));
            match (hit, &scope) {
                (Some(hit), Some(scope)) => {
                    scope.hit(hit);
                    tracing::warn!(tenant = %self.tenant, request_id, limit = hit.as_str(),
                        cpu_ms = scope.cpu_used().as_secs_f64() * 1e3, "instance stopped: {hit_text}",
                        hit_text = LimitExceeded(hit));
                }
                _ => {
                    tracing::warn!(tenant = %self.tenant, request_id, "instance failed: {error:?}")
                }
            }
        }
        drop(store);
        if let Some(scope) = scope {
            scope.instance_exited();
        }
        self.scope.set(None);
    }
}

/// Ends an instance that outlives its request's deadline, or idles past
/// [`REUSE_IDLE_TIMEOUT`]. Polled outside the store's event loop, so it works even while a
/// guest spins.
pub(crate) struct InstanceExpiration {
    scope: ScopeSlot,
    /// The instance's lane, given back while it idles between requests (`reuse`).
    lane: Arc<crate::limits::lanes::LaneSlot>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for InstanceExpiration {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let (deadline, scope) = match status {
            WorkerStatus::Idle => {
                // The request is finished: release its concurrency slot and its lane while
                // idle (a guest that computed through a tick holds one until a host call).
                self.scope.set(None);
                self.lane.release();
                (start + REUSE_IDLE_TIMEOUT, None)
            }
            WorkerStatus::Requests | WorkerStatus::PostReturn => match self.scope.get() {
                Some(scope) => (scope.deadline, Some(scope)),
                None => return Poll::Pending,
            },
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        let expired = self.sleep.as_mut().poll(cx);
        if let (Poll::Ready(()), Some(scope)) = (expired, scope) {
            scope.hit(LimitHit::Timeout);
        }
        expired
    }
}
