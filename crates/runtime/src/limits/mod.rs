//! Where each per-request limit is enforced (the request's record of which limit ended
//! it is [`crate::scope::RequestScope`]):
//!
//! | limit | where |
//! |---|---|
//! | CPU time (`limits.cpu`) | `cpu.rs` (the meter) and `epoch.rs` (the check every tick) |
//! | fuel (`limits.fuel`) | set per request in `crate::instance`; wasmtime traps when it runs out |
//! | wall clock (`limits.timeout`) | `epoch.rs`, the instance's expiration (`crate::instance`) and `Tenant::handle` |
//! | time slicing between tenants | `lanes.rs`, driven by `epoch.rs` |
//! | memory and tables (`limits.memory`) | `memory.rs` |
//! | request body (`limits.body`) | `body.rs` (while streaming) |
//! | concurrency (`limits.concurrency`, `limits.per_client`) | `Tenant::try_admit` |
//! | subrequests | `outpost_bindings::http` (counted per request through the scope) |
//! | log volume | `crate::guest_log` |

pub(crate) mod body;
pub(crate) mod cpu;
pub(crate) mod epoch;
pub(crate) mod lanes;
pub(crate) mod memory;
