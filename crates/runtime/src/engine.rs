//! The node's one wasmtime [`Engine`]: pooling allocator, fuel, epoch interruption, WASI
//! 0.2 and 0.3 linked, and the compiled-component cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use outpost_bindings::NodeStores;
use outpost_config::NodeConfig;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::compile_cache::{CacheOutcome, CompileCache, wasm_hash};
use crate::compiler::{CompileFailure, Compiler};
use crate::guest_state::GuestState;

/// How often the epoch advances. Each tick a busy guest yields to tokio (so it never holds
/// a runtime thread others need) and its wall-clock and CPU budgets are checked; 1 ms
/// keeps both the yield latency and the enforcement slack at a millisecond.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Elements a guest table may hold (funcref tables of large guests run to tens of
/// thousands).
pub const MAX_TABLE_ELEMENTS: usize = 20_000;

/// WASI resources (fields, streams, pollables, requests) one instance may hold at once.
/// They live in host memory, outside the tenant's memory limit: wasmtime's default of a
/// million would let one request take hundreds of MiB of the node. Real handlers hold
/// tens; the cap turns a resource bomb into that request's trap.
pub const MAX_RESOURCES_PER_INSTANCE: usize = 10_000;

/// Per slot, how much of a memory is reset in place (and kept mapped) rather than
/// decommitted when its instance ends.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

/// Core instances, memories and tables one component may need: a Rust `wasm32-wasip2`
/// component is a main module plus a few adapter and shim modules.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 4;

/// Failure to set up the engine.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the engine settings.
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
    /// The compile cache directory cannot be created.
    #[error("cannot create the compile cache at {path}: {source}; check that data_dir is writable")]
    Cache {
        /// The directory under data_dir that could not be created.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What the instance pool keeps between requests (see [`Runtime::pool_usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Unused slots whose memory is kept resident for the next instance.
    pub warm_slots: u32,
    /// Bytes those slots keep resident.
    pub resident_bytes: u64,
}

/// A component compiled once per process, or why it could not be.
pub(crate) type LoadedComponent = OnceLock<Result<Component, CompileFailure>>;

/// The engine, linker and compiled components every tenant on the node shares.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<GuestState>,
    cache: CompileCache,
    /// Components by wasm hash: tenants that deploy the same wasm share its code. Weak,
    /// so code no tenant version uses any more (after deploys and reloads) is freed.
    loaded: Mutex<HashMap<[u8; 32], Weak<LoadedComponent>>>,
    pub(crate) stores: Arc<NodeStores>,
    pub(crate) meters: crate::meters::RuntimeMeters,
    /// The node's live Durable Objects, of every tenant.
    pub(crate) objects: Arc<crate::objects::ObjectDirectory>,
    /// Where background work (alarm schedulers) runs: the tokio runtime the node was
    /// built in, if any.
    pub(crate) tasks: Option<tokio::runtime::Handle>,
    _ticker: EpochTicker,
}

impl Runtime {
    /// The node's live Durable Objects.
    pub fn objects(&self) -> &crate::objects::ObjectDirectory {
        &self.objects
    }

    /// The node's stores and caches, as the embedder built them.
    pub fn stores(&self) -> &Arc<NodeStores> {
        &self.stores
    }

    /// Builds the engine for a node with `node.max_instances` instance slots; tenants'
    /// bindings come from `stores`, which the embedder built.
    pub fn new(node: &NodeConfig, stores: Arc<NodeStores>) -> Result<Arc<Runtime>, RuntimeError> {
        Runtime::with_compiler(node, stores, Compiler::InProcess)
    }

    /// Like [`Runtime::new`], compiling components with `compiler` (a node isolates
    /// them in child processes under its compile limits).
    pub fn with_compiler(
        node: &NodeConfig,
        stores: Arc<NodeStores>,
        compiler: Compiler,
    ) -> Result<Arc<Runtime>, RuntimeError> {
        let engine = Engine::new(&engine_config(node.max_instances))
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        add_interfaces(&mut linker).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let cache_dir = node.data_dir.join("compiled");
        let cache = CompileCache::new(
            cache_dir.clone(),
            &engine,
            compiler,
            node.compile,
            node.max_instances,
        )
        .map_err(|source| RuntimeError::Cache {
            path: cache_dir,
            source,
        })?;
        let ticker = EpochTicker::spawn(engine.clone());
        Ok(Arc::new(Runtime {
            engine,
            linker,
            cache,
            loaded: Mutex::new(HashMap::new()),
            stores,
            meters: Default::default(),
            objects: Arc::default(),
            tasks: tokio::runtime::Handle::try_current().ok(),
            _ticker: ticker,
        }))
    }

    /// Adds the runtime's per-tenant meters (instantiation time, fuel, peak memory, store
    /// operations) to the node's metrics.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.meters.register(registry);
        self.stores.meters().register(registry);
    }

    /// Loads `wasm` through the on-disk compile cache only, bypassing the in-process
    /// sharing of components: what a restart does per distinct component. For benchmarks.
    pub fn load_through_compile_cache(&self, wasm: &[u8]) -> Result<CacheOutcome, String> {
        let hash = wasm_hash(wasm);
        self.cache
            .load(&self.engine, wasm, &hash)
            .map(|(_, outcome)| outcome)
            .map_err(|failure| match failure {
                CompileFailure::Invalid(reason) | CompileFailure::Stopped(reason) => reason,
            })
    }

    /// Compiles (or loads from the cache) the component in `wasm`. The returned cell keeps
    /// the code shared while the caller holds it.
    pub(crate) fn component(
        &self,
        wasm: &[u8],
    ) -> Result<(Component, CacheOutcome, [u8; 32], Arc<LoadedComponent>), CompileFailure> {
        let hash = wasm_hash(wasm);
        let cell = {
            let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            match loaded.get(&hash).and_then(Weak::upgrade) {
                Some(cell) => cell,
                None => {
                    loaded.retain(|_, cell| cell.strong_count() > 0);
                    let cell = Arc::new(LoadedComponent::new());
                    loaded.insert(hash, Arc::downgrade(&cell));
                    cell
                }
            }
        };
        let mut outcome = CacheOutcome::Shared;
        let component = cell.get_or_init(|| {
            self.cache
                .load(&self.engine, wasm, &hash)
                .map(|(component, fresh)| {
                    outcome = fresh;
                    component
                })
        });
        let component = component.clone()?;
        Ok((component, outcome, hash, cell))
    }

    /// What the instance pool holds between requests: slots kept warm for the next
    /// instance, and the memory they keep resident. Bounded: wasmtime keeps at most 100
    /// warm slots, each with at most `KEEP_RESIDENT_BYTES` of memory and tables.
    pub fn pool_usage(&self) -> PoolUsage {
        self.engine
            .pooling_allocator_metrics()
            .map_or(PoolUsage::default(), |pool| PoolUsage {
                warm_slots: pool.unused_warm_memories(),
                resident_bytes: (pool.unused_memory_bytes_resident()
                    + pool.unused_table_bytes_resident()) as u64,
            })
    }

    /// How many distinct components are in memory (shared by the tenants using them).
    pub fn components_in_memory(&self) -> usize {
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded
            .values()
            .filter(|cell| cell.strong_count() > 0)
            .count()
    }
}

pub(crate) fn engine_config(max_instances: u32) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(max_instances)
        .total_core_instances(max_instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(max_instances.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(max_instances.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(max_instances.saturating_mul(2))
        .max_memories_per_module(1)
        .table_elements(MAX_TABLE_ELEMENTS)
        // Tenants' caps are enforced per store by `GuestLimiter`; the pool only has to
        // reserve room for the largest a 32-bit memory can be.
        .max_memory_size(outpost_config::MAX_MEMORY_BYTES as usize)
        // A fresh instance per request makes slot reset the hot path. With PAGEMAP_SCAN
        // (Linux 6.7+) only the pages a request dirtied are reset, by memset, and stay
        // mapped: no madvise, TLB shootdown or page faults on the next request. The
        // workspace carries wasmtime #14357 (vendor/wasmtime/OUTPOST-PATCH.md): without
        // it a dirty page the kernel swapped out stayed in the slot for the next tenant.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES / 16);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .wasm_component_model_async(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

fn add_interfaces(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    // The full WASI CLI world, not just the proxy world: Rust's std imports
    // wasi:cli/environment (for vars) and wasi:filesystem even in HTTP components. The
    // context grants no preopened directories and no sockets, so they reach nothing.
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi::p3::add_to_linker(linker)?;
    outpost_bindings::http::add_to_linker(linker)?;
    outpost_bindings::add_to_linker(linker)?;
    Ok(())
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    fn spawn(engine: Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("outpost-epoch".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawning the epoch thread must succeed at start-up");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
