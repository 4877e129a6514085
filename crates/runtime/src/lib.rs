//! outpost's wasm runtime: one wasmtime engine per node, each tenant's component compiled
//! once (and cached on disk) and pre-instantiated, and each request run in a fresh
//! instance under the tenant's limits (fuel, CPU time, memory, wall clock, concurrency,
//! body size).
//!
//! The server crate turns a [`Failure`] into a status code; everything about how a guest
//! runs lives here.

mod compile_cache;
mod compiler;
mod engine;
mod error;
mod guest_log;
mod guest_state;
mod instance;
mod limits;
mod meters;
mod objects;
mod parallel;
mod scope;
mod tenant;

pub use compile_cache::{CacheOutcome, hex, wasm_hash};
pub use compiler::{COMPILE_SUBCOMMAND, Compiler, compile_component_main};
pub use engine::{EPOCH_TICK, PoolUsage, Runtime, RuntimeError};
pub use error::{Failure, LoadError, TenantLoadError};
pub use guest_log::LOG_ALLOWANCE_BYTES;
pub use instance::{REUSE_IDLE_TIMEOUT, REUSE_MAX_REQUESTS};
pub use objects::{ClaimedSocket, OBJECT_FAILURE_HEADER, OBJECT_QUEUE_DEPTH, ObjectDirectory};
pub use outpost_bindings::objects::SOCKET_HEADER as OBJECT_SOCKET_HEADER;
pub use parallel::in_parallel;
pub use scope::{LimitExceeded, LimitHit};
pub use tenant::{
    Admission, GuestRequest, GuestResponse, HttpWorld, Refusal, Tenant, TenantInfo, load_tenants,
};
pub use wasmtime_wasi_http::{Error as BodyError, WasiBody};
