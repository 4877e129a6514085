//! Why a tenant does not load, and how a request ends when it does not end with the
//! guest's response (the server maps a [`Failure`] to its status code).

use std::sync::Arc;

use outpost_config::Location;
use wasmtime::Trap;
use wasmtime_wasi_http::handler::{ExpirationError, InstantiationError};

use crate::scope::{LimitExceeded, LimitHit, RequestScope};

/// Why a tenant's component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component file could not be read.
    #[error("cannot read component {path}: {source}")]
    Unreadable {
        /// The component file its config names.
        path: std::path::PathBuf,
        /// The read error.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("{path} is not a valid WebAssembly component: {reason}")]
    NotAComponent {
        /// Where the bytes came from (the file, or an upload).
        path: std::path::PathBuf,
        /// wasmtime's explanation, with its causes.
        reason: String,
    },
    /// Compiling the component was stopped (at `node.compile_memory` or
    /// `node.compile_timeout`), or the compiler could not run.
    #[error("{path} was not compiled: {reason}")]
    NotCompiled {
        /// Where the bytes came from (the file, or an upload).
        path: std::path::PathBuf,
        /// Which limit stopped it, and what to do.
        reason: String,
    },
    /// The component imports something outpost does not provide.
    #[error(
        "the component cannot be linked: {reason}; outpost provides WASI 0.2 and 0.3 (cli, clocks, random, io, http)"
    )]
    Unlinkable {
        /// The import wasmtime could not satisfy, and why.
        reason: String,
    },
    /// The component exports neither `wasi:http` handler.
    #[error(
        "the component exports neither wasi:http/incoming-handler@0.2 nor wasi:http/handler@0.3; build it as a wasi:http proxy ({reason})"
    )]
    NotHttp {
        /// What the component exports instead.
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
        /// The trap or limit that stopped it.
        reason: String,
    },
}

/// A [`LoadError`] with the tenant and the config line that names the component.
#[derive(Debug, thiserror::Error)]
#[error("{at}: tenant `{tenant}`: `{key}`: {error}")]
pub struct TenantLoadError {
    /// The tenant's name.
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

/// Chooses the failure: a limit recorded by the instance first, then what the error says.
pub(crate) fn classify(scope: &RequestScope, error: &wasmtime::Error) -> Failure {
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
pub(crate) fn limit_in(error: &wasmtime::Error) -> Option<LimitHit> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> RequestScope {
        let permit = Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .expect("a permit");
        RequestScope::new(
            "t".into(),
            "id".into(),
            std::time::Duration::from_secs(1),
            None,
            Some(crate::tenant::Admission {
                _slot: permit,
                _client: None,
            }),
        )
    }

    #[test]
    fn a_limit_in_the_error_chain_is_found_behind_context() {
        let ours = wasmtime::Error::from(LimitExceeded(LimitHit::Memory)).context("in the guest");
        assert_eq!(limit_in(&ours), Some(LimitHit::Memory));
        let fuel = wasmtime::Error::from(Trap::OutOfFuel).context("wasm trap");
        assert_eq!(limit_in(&fuel), Some(LimitHit::Cpu));
        assert_eq!(limit_in(&wasmtime::Error::msg("a panic")), None);
    }

    #[test]
    fn the_limit_the_scope_recorded_wins_over_the_error() {
        let scope = scope();
        let fuel = wasmtime::Error::from(Trap::OutOfFuel);
        assert_eq!(classify(&scope, &fuel), Failure::Limit(LimitHit::Cpu));
        scope.hit(LimitHit::Timeout);
        assert_eq!(classify(&scope, &fuel), Failure::Limit(LimitHit::Timeout));
    }

    #[test]
    fn anything_else_is_the_guests_error() {
        let trap = wasmtime::Error::from(Trap::UnreachableCodeReached);
        assert_eq!(classify(&scope(), &trap), Failure::GuestError);
    }
}
