//! A tenant: its pre-instantiated component, its limits, and the per-request path from an
//! HTTP request to a guest's response.
//!
//! Requests are dispatched by wasmtime-wasi-http's [`ProxyHandler`], which serves both
//! `wasi:http/incoming-handler@0.2.x` and `wasi:http/handler@0.3.x` guests. Its worker
//! state is where outpost applies limits: each instance accepts one request (or, with
//! `reuse`, up to [`REUSE_MAX_REQUESTS`] one after another), and every request starts
//! with a full fuel tank, a fresh CPU meter and its own deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use outpost_bindings::http::OutboundHooks;
use outpost_bindings::{StoresError, TenantBindings};
use outpost_config::{Limits, Location, TenantConfig};
use tokio::sync::Semaphore;
use wasmtime::component::{GuestTaskId, ResourceTable};
use wasmtime::{AsContextMut, CallHook, Store, StoreContextMut, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, ProxyHandler, ProxyPre,
    ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpView};

use crate::compile_cache::{CacheOutcome, hex};
use crate::engine::{MAX_TABLE_ELEMENTS, Runtime};
use crate::guest_log::{GuestLog, GuestStream};
use crate::guest_state::{GuestLimiter, GuestState};
use crate::lanes::{Lanes, lanes_per_tenant};
use crate::meters::TenantMeters;
use crate::scope::{LimitExceeded, LimitHit, RequestScope, ScopeSlot};

/// With `reuse = true`, an instance serves at most this many requests, then is replaced
/// (as `wasmtime serve` does for WASI 0.3 guests), bounding what can leak between them.
pub const REUSE_MAX_REQUESTS: usize = 128;
/// With `reuse = true`, an idle instance is dropped after this long.
pub const REUSE_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// After a request fails, how long to wait for its instance's exit verdict (which says
/// whether fuel ran out) before answering with what is known.
const EXIT_VERDICT_WAIT: Duration = Duration::from_millis(250);

/// Which `wasi:http` world a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpWorld {
    /// `wasi:http/incoming-handler@0.2.x` (WASI 0.2).
    P2,
    /// `wasi:http/handler@0.3.x` (WASI 0.3).
    P3,
}

/// Why a tenant's component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component file could not be read.
    #[error("cannot read component {path}: {source}")]
    Unreadable {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("{path} is not a valid WebAssembly component: {reason}")]
    NotAComponent {
        /// The file.
        path: std::path::PathBuf,
        /// wasmtime's reason.
        reason: String,
    },
    /// The component imports something outpost does not provide.
    #[error(
        "the component cannot be linked: {reason}; outpost provides WASI 0.2 and 0.3 (cli, clocks, random, io, http)"
    )]
    Unlinkable {
        /// wasmtime's reason.
        reason: String,
    },
    /// The component exports neither `wasi:http` handler.
    #[error(
        "the component exports neither wasi:http/incoming-handler@0.2 nor wasi:http/handler@0.3; build it as a wasi:http proxy ({reason})"
    )]
    NotHttp {
        /// wasmtime's reason.
        reason: String,
    },
    /// A store binding cannot be set up.
    #[error("{reason}")]
    Binding {
        /// What is wrong.
        reason: String,
    },
    /// A trial instantiation under the tenant's limits failed.
    #[error("the component does not instantiate under the tenant's limits: {reason}")]
    Instantiate {
        /// wasmtime's reason.
        reason: String,
    },
}

/// A [`LoadError`] with the tenant and the config line that names the component.
#[derive(Debug, thiserror::Error)]
#[error("{at}: tenant `{tenant}`: `{key}`: {error}")]
pub struct TenantLoadError {
    /// The tenant.
    pub tenant: String,
    /// The config key at fault: `component`, or a binding such as `blob.ASSETS`.
    pub key: String,
    /// Where that key is written.
    pub at: Location,
    /// What went wrong.
    #[source]
    pub error: LoadError,
}

/// How a request ended, when it did not end with the guest's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A limit ended it.
    Limit(LimitHit),
    /// The guest trapped, panicked or returned no response.
    GuestError,
    /// No instance could be created (the node's pool is full).
    NoInstance,
}

/// A client's request, as the guest will see it.
pub type GuestRequest = http::Request<WasiBody>;
/// The guest's response, its body streaming from the instance.
pub type GuestResponse = http::Response<WasiBody>;

/// Permission to run one request for a tenant; holds one of its concurrency slots.
pub struct Admission(tokio::sync::OwnedSemaphorePermit);

/// What the node knows about a loaded tenant.
#[derive(Debug, Clone)]
pub struct TenantInfo {
    /// Name.
    pub name: Arc<str>,
    /// SHA-256 of the component's wasm, hex.
    pub component_hash: String,
    /// Where the compiled code came from.
    pub cache: CacheOutcome,
    /// The world the component exports.
    pub world: HttpWorld,
    /// How long loading took.
    pub load_time: Duration,
}

/// A loaded tenant, ready to serve.
pub struct Tenant {
    info: TenantInfo,
    /// Keeps the compiled code in the runtime's shared map while this version lives.
    _code: Arc<crate::engine::LoadedComponent>,
    limits: Limits,
    concurrency: Arc<Semaphore>,
    handler: ProxyHandler<TenantInstances>,
}

impl Tenant {
    /// Reads, compiles (or loads from the cache), links and test-instantiates the tenant's
    /// component.
    pub fn load(
        runtime: &Arc<Runtime>,
        config: &TenantConfig,
    ) -> Result<Tenant, Box<TenantLoadError>> {
        let path = &config.component;
        let wasm = std::fs::read(path).map_err(|source| {
            Box::new(TenantLoadError {
                tenant: config.name.clone(),
                key: "component".into(),
                at: config.component_at.clone(),
                error: LoadError::Unreadable {
                    path: path.clone(),
                    source,
                },
            })
        })?;
        Tenant::load_wasm(runtime, config, &wasm, path)
    }

    /// Like [`Tenant::load`], with the component's bytes already read (a deploy through
    /// the admin API); `origin` names where they came from in errors.
    pub fn load_wasm(
        runtime: &Arc<Runtime>,
        config: &TenantConfig,
        wasm: &[u8],
        origin: &std::path::Path,
    ) -> Result<Tenant, Box<TenantLoadError>> {
        let started = Instant::now();
        let located = |error| {
            Box::new(TenantLoadError {
                tenant: config.name.clone(),
                key: "component".into(),
                at: config.component_at.clone(),
                error,
            })
        };
        let bindings = runtime.stores.tenant(config).map_err(|e| match e {
            StoresError::Blob {
                tenant,
                binding,
                at,
                source,
            } => Box::new(TenantLoadError {
                tenant,
                key: format!("blob.{binding}"),
                at,
                error: LoadError::Binding {
                    reason: source.to_string(),
                },
            }),
            other => located(LoadError::Binding {
                reason: other.to_string(),
            }),
        })?;
        let (component, cache, hash, code) = runtime.component(wasm).map_err(|reason| {
            located(LoadError::NotAComponent {
                path: origin.to_path_buf(),
                reason,
            })
        })?;
        let instance_pre = runtime.linker.instantiate_pre(&component).map_err(|e| {
            located(LoadError::Unlinkable {
                reason: format!("{e:#}"),
            })
        })?;
        let (pre, world) =
            match wasmtime_wasi_http::p3::bindings::ServicePre::new(instance_pre.clone()) {
                Ok(pre) => (ProxyPre::P3(pre), HttpWorld::P3),
                Err(_) => match wasmtime_wasi_http::p2::bindings::ProxyPre::new(instance_pre) {
                    Ok(pre) => (ProxyPre::P2(pre), HttpWorld::P2),
                    Err(e) => {
                        return Err(located(LoadError::NotHttp {
                            reason: format!("{e:#}"),
                        }));
                    }
                },
            };
        let name: Arc<str> = Arc::from(config.name.as_str());
        let instances = TenantInstances {
            name: name.clone(),
            lanes: Arc::new(Semaphore::new(lanes_per_tenant())),
            engine: runtime.engine.clone(),
            limits: config.limits.clone(),
            vars: config
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain(
                    config
                        .secrets
                        .iter()
                        .map(|(k, v)| (k.clone(), v.expose().to_string())),
                )
                .collect(),
            reuse: config.reuse,
            pre,
            bindings: Arc::new(bindings),
            meters: runtime.meters.tenant(&config.name),
        };
        instances.trial_instantiate().map_err(|e| {
            located(LoadError::Instantiate {
                reason: format!("{e:#}"),
            })
        })?;
        let info = TenantInfo {
            name,
            component_hash: hex(&hash),
            cache,
            world,
            load_time: started.elapsed(),
        };
        Ok(Tenant {
            info,
            _code: code,
            limits: config.limits.clone(),
            concurrency: Arc::new(Semaphore::new(config.limits.concurrency as usize)),
            handler: ProxyHandler::new(instances),
        })
    }

    /// What was loaded.
    pub fn info(&self) -> &TenantInfo {
        &self.info
    }

    /// The tenant's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Requests admitted and not yet finished.
    pub fn in_flight(&self) -> usize {
        (self.limits.concurrency as usize).saturating_sub(self.concurrency.available_permits())
    }

    /// Takes a concurrency slot, or `None` if the tenant is at its limit (never queues).
    pub fn try_admit(&self) -> Option<Admission> {
        self.concurrency
            .clone()
            .try_acquire_owned()
            .ok()
            .map(Admission)
    }

    /// Runs one request in an instance and returns the guest's response.
    ///
    /// The admission is held until the instance lets go of the request: after the body
    /// has streamed and any work after the response has finished.
    pub async fn handle(
        &self,
        admission: Admission,
        request_id: Arc<str>,
        request: GuestRequest,
    ) -> Result<GuestResponse, Failure> {
        let scope = Arc::new(RequestScope::new(
            self.info.name.clone(),
            request_id,
            self.limits.timeout,
            self.limits.cpu,
            admission.0,
        ));
        let request = request.map(|body| body_with_limit(body, self.limits.body, scope.clone()));
        let deadline = tokio::time::Instant::from_std(scope.deadline);
        let result =
            tokio::time::timeout_at(deadline, self.handler.handle(scope.clone(), request)).await;
        match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => {
                scope.wait_for_instance_exit(EXIT_VERDICT_WAIT).await;
                let failure = classify(&scope, &error);
                if failure == Failure::GuestError {
                    tracing::warn!(tenant = %scope.tenant, request_id = %scope.id, "guest failed: {error:#}");
                }
                Err(failure)
            }
            Err(_elapsed) => {
                // Marks the scope so the epoch callback interrupts a guest still running.
                scope.hit(LimitHit::Timeout);
                Err(Failure::Limit(LimitHit::Timeout))
            }
        }
    }
}

/// Chooses the failure: a limit recorded by the instance first, then what the error says.
fn classify(scope: &RequestScope, error: &wasmtime::Error) -> Failure {
    if let Some(hit) = scope.limit_hit() {
        return Failure::Limit(hit);
    }
    if let Some(hit) = limit_in(error) {
        return Failure::Limit(hit);
    }
    if error.is::<ExpirationError>() {
        return Failure::Limit(LimitHit::Timeout);
    }
    if error
        .chain()
        .any(|cause| cause.is::<InstantiationError<Arc<RequestScope>>>())
    {
        return Failure::NoInstance;
    }
    Failure::GuestError
}

/// The limit an error chain reports: our own [`LimitExceeded`], or wasmtime's fuel trap.
fn limit_in(error: &wasmtime::Error) -> Option<LimitHit> {
    for cause in error.chain() {
        if let Some(LimitExceeded(hit)) = cause.downcast_ref::<LimitExceeded>() {
            return Some(*hit);
        }
        if cause.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
            return Some(LimitHit::Cpu);
        }
    }
    None
}

/// Caps the request body: past `limit` bytes the guest's read fails and the request is
/// marked, so it ends with 413 whatever the guest does next.
fn body_with_limit(body: WasiBody, limit: u64, scope: Arc<RequestScope>) -> WasiBody {
    use http_body_util::BodyExt;
    http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .map_err(move |error| {
            if error.is::<http_body_util::LengthLimitError>() {
                scope.hit(LimitHit::Body);
                return wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit));
            }
            match error.downcast::<wasmtime_wasi_http::Error>() {
                Ok(error) => *error,
                Err(other) => wasmtime_wasi_http::Error::InternalError(Some(other.to_string())),
            }
        })
        .boxed_unsync()
}

/// Creates instances for a tenant's [`ProxyHandler`].
struct TenantInstances {
    name: Arc<str>,
    lanes: Lanes,
    engine: wasmtime::Engine,
    limits: Limits,
    vars: Vec<(String, String)>,
    reuse: bool,
    pre: ProxyPre<GuestState>,
    /// Its stores and outbound client.
    bindings: Arc<TenantBindings>,
    meters: TenantMeters,
}

impl TenantInstances {
    fn new_store(&self) -> wasmtime::Result<(Store<GuestState>, ScopeSlot)> {
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
        let state = GuestState {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks::new(self.bindings.outbound.clone(), Box::new(scope.clone())),
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
    fn trial_instantiate(&self) -> wasmtime::Result<()> {
        let (mut store, _) = self.new_store()?;
        // `instantiate_async` needs a runtime but nothing here waits on I/O.
        futures::executor::block_on(self.pre.instantiate_async(&mut store))?;
        Ok(())
    }
}

/// Each epoch tick while a guest runs: end it if it is past its deadline or CPU budget,
/// otherwise yield to tokio so other requests get the thread.
fn on_epoch_tick(store: StoreContextMut<'_, GuestState>) -> wasmtime::Result<UpdateDeadline> {
    let Some(scope) = store.data().scope.get() else {
        return Ok(UpdateDeadline::Yield(1));
    };
    if scope.limit_hit().is_some() || Instant::now() >= scope.deadline {
        let hit = scope.limit_hit().unwrap_or(LimitHit::Timeout);
        return Err(scope.hit(hit).into());
    }
    if let Some(budget) = scope.cpu_budget
        && scope.cpu.used() > budget
    {
        return Err(scope.hit(LimitHit::Cpu).into());
    }
    // A long runner: give back its lane, let others run, then queue for a lane of its
    // tenant to go on (see `lanes`). The CPU meter stops meanwhile: whatever runs on this
    // thread is not this guest's CPU time.
    let state = store.data();
    state.lane.release();
    let (lane, lanes) = (state.lane.clone(), state.lanes.clone());
    let meter = state.meter_cpu.then(|| {
        scope.cpu.pause();
        scope.cpu.clone()
    });
    Ok(UpdateDeadline::YieldCustom(
        1,
        Box::pin(async move {
            tokio::task::yield_now().await;
            lane.acquire(&lanes).await;
            // The release that handed us the lane woke us into tokio's LIFO slot, ahead of
            // every queued request: go to the back of the queue before computing again.
            tokio::task::yield_now().await;
            if let Some(meter) = meter {
                meter.resume();
            }
        }),
    ))
}

/// On every host call: give back a lane (the guest may now wait on I/O), and run the CPU
/// meter only while wasm executes.
fn on_call(store: StoreContextMut<'_, GuestState>, hook: CallHook) -> wasmtime::Result<()> {
    let state = store.data();
    if matches!(hook, CallHook::CallingHost) {
        state.lane.release();
    }
    if state.meter_cpu
        && let Some(scope) = state.scope.get()
    {
        match hook {
            CallHook::CallingWasm | CallHook::ReturningFromHost => scope.cpu.resume(),
            CallHook::ReturningFromWasm | CallHook::CallingHost => scope.cpu.pause(),
        }
    }
    Ok(())
}

impl HandlerState for TenantInstances {
    type StoreData = GuestState;
    type WorkerExpiration = InstanceExpiration;
    type WorkerState = InstanceState;

    async fn instantiate(
        &self,
    ) -> wasmtime::Result<Instance<GuestState, InstanceExpiration, InstanceState>> {
        let started = Instant::now();
        let (mut store, scope) = self.new_store()?;
        let proxy = self.pre.instantiate_async(&mut store).await?;
        self.meters
            .instantiation
            .observe(started.elapsed().as_secs_f64());
        Ok(Instance {
            store,
            proxy,
            view: GuestState::http,
            expiration: InstanceExpiration {
                scope: scope.clone(),
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
struct InstanceState {
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
struct InstanceExpiration {
    scope: ScopeSlot,
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
                // The request is finished: release its concurrency slot while idle.
                self.scope.set(None);
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

/// Loads every tenant, compiling on all cores at once; results are in `configs` order.
pub fn load_tenants(
    runtime: &Arc<Runtime>,
    configs: &[TenantConfig],
) -> Vec<Result<Tenant, Box<TenantLoadError>>> {
    in_parallel(configs, |config| Tenant::load(runtime, config))
}

/// `work` on every item, on all cores at once (compiling is CPU-bound); results are in
/// `items` order.
pub fn in_parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(index) else {
                        break;
                    };
                    let done = work(item);
                    *slots[index].lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every index is claimed by exactly one worker thread")
        })
        .collect()
}
