//! The tenant's stores: KV, SQL and blobs, opened by the binding names its config
//! declares (`env.kv("SESSIONS")`, `env.sql("DB")`, `env.blob("ASSETS")`).
//!
//! Calls are `async`, as on Workers, so code reads the same when WASI 0.3 makes them
//! truly concurrent; today each runs to completion before the next starts (the host
//! imports are synchronous), so `join!` on two store calls runs them one after the
//! other. Outbound `fetch` calls do run concurrently.
//!
//! A failed call is [`Error::Store`](crate::Error::Store) with a
//! [`StoreError`](crate::StoreError) to `match` on; returned from the handler it answers
//! by its kind (400 for an invalid argument or a limit, 416 for a range, else 500).

pub mod blob;
pub mod cache;
pub mod kv;
pub mod sql;

pub(crate) mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "outpost:edge/imports",
        with: {
            "wasi:io/streams@0.2.12": wstd::__internal::wasip2::io::streams,
            "wasi:io/poll@0.2.12": wstd::__internal::wasip2::io::poll,
            "wasi:io/error@0.2.12": wstd::__internal::wasip2::io::error,
        },
    });
}

pub(crate) use wit::outpost::edge::types::Error as HostError;

use crate::StoreError;

/// Makes a host error the SDK's, saying which operation failed.
pub(crate) fn store_error(what: std::fmt::Arguments<'_>, error: HostError) -> crate::Error {
    let with = |text: String| format!("{what}: {text}");
    crate::Error::Store(match error {
        HostError::NoSuchBinding(text) => StoreError::NotDeclared(with(text)),
        HostError::NotFound(text) => StoreError::NotFound(with(text)),
        HostError::InvalidArgument(text) => StoreError::InvalidArgument(with(text)),
        HostError::LimitExceeded(hit) => StoreError::LimitExceeded {
            limit: hit.limit,
            reason: with(hit.reason),
        },
        HostError::RangeNotSatisfiable(size) => StoreError::RangeNotSatisfiable { size },
        HostError::Full(text) => StoreError::Full(with(text)),
        HostError::Deadline => StoreError::Deadline,
        HostError::Unavailable(text) => StoreError::Unavailable(with(text)),
        HostError::Store(text) => StoreError::Failed(with(text)),
    })
}
