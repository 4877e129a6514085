//! How a host call fails: an [`ErrorCode`] the guest receives and can `match` on, or a
//! trap that ends the instance (a guest that passes a dead resource handle has a bug
//! no error code could help with).
//!
//! Host functions return [`EdgeResult`] and use `?` on both kinds; bindgen's
//! `trappable_error_type` turns the result into the WIT `result<_, error>` or a trap.

use crate::generated::outpost::edge::types::{Error as ErrorCode, LimitExceeded};

/// A failed host call; see the module docs.
#[derive(Debug)]
pub struct EdgeError(Failure);

#[derive(Debug)]
enum Failure {
    Code(ErrorCode),
    Trap(wasmtime::Error),
}

/// What every `outpost:edge` host function returns.
pub type EdgeResult<T> = Result<T, EdgeError>;

impl EdgeError {
    /// An argument the guest passed is malformed.
    pub fn invalid(reason: impl Into<String>) -> EdgeError {
        ErrorCode::InvalidArgument(reason.into()).into()
    }

    /// An argument or result is over the limit named `limit` (as the docs name it).
    pub fn limit(limit: &str, reason: impl Into<String>) -> EdgeError {
        ErrorCode::LimitExceeded(LimitExceeded {
            limit: limit.to_string(),
            reason: reason.into(),
        })
        .into()
    }

    /// The store failed or refused; `reason` is its message.
    pub fn store(reason: impl Into<String>) -> EdgeError {
        ErrorCode::Store(reason.into()).into()
    }

    /// The store cannot be reached now.
    pub fn unavailable(reason: impl Into<String>) -> EdgeError {
        ErrorCode::Unavailable(reason.into()).into()
    }

    /// The error code for the guest, or the trap.
    pub(crate) fn into_code(self) -> wasmtime::Result<ErrorCode> {
        match self.0 {
            Failure::Code(code) => Ok(code),
            Failure::Trap(trap) => Err(trap),
        }
    }

    /// The error code, if this is one (for tests).
    #[cfg(test)]
    pub(crate) fn code(&self) -> Option<&ErrorCode> {
        match &self.0 {
            Failure::Code(code) => Some(code),
            Failure::Trap(_) => None,
        }
    }
}

impl From<ErrorCode> for EdgeError {
    fn from(code: ErrorCode) -> EdgeError {
        EdgeError(Failure::Code(code))
    }
}

impl From<wasmtime::Error> for EdgeError {
    fn from(trap: wasmtime::Error) -> EdgeError {
        EdgeError(Failure::Trap(trap))
    }
}

impl From<wasmtime::component::ResourceTableError> for EdgeError {
    fn from(error: wasmtime::component::ResourceTableError) -> EdgeError {
        EdgeError(Failure::Trap(error.into()))
    }
}

/// Implements the `types` interface's error conversion for a capability's view (each
/// interface that uses `types.error` needs it on its own view type).
macro_rules! convert_edge_errors {
    ($view:ty) => {
        impl crate::generated::outpost::edge::types::Host for $view {
            fn convert_error(
                &mut self,
                error: crate::EdgeError,
            ) -> wasmtime::Result<crate::ErrorCode> {
                error.into_code()
            }
        }
    };
}
pub(crate) use convert_edge_errors;
