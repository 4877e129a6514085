//! The tenant's stores: KV, SQL and blobs, opened by the binding names its config
//! declares (`env.kv("SESSIONS")`, `env.sql("DB")`, `env.blob("ASSETS")`).
//!
//! Every call is `async` as on Workers. A store error is an [`Error`](crate::Error) that
//! answers 500 if returned from the handler (its text goes to the node's log); match on
//! it to handle it yourself.

pub mod blob;
pub mod kv;
pub mod sql;

mod wit {
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

use wit::outpost::edge::types::Error as HostError;

/// Makes a host error an SDK error, saying which operation failed.
fn store_error(what: std::fmt::Arguments<'_>, error: HostError) -> crate::Error {
    match error {
        HostError::InvalidArgument(text) => {
            crate::Error::invalid_argument(format!("{what}: {text}"))
        }
        HostError::NoSuchBinding(text) | HostError::Store(text) => {
            crate::Error::internal(format!("{what}: {text}"))
        }
    }
}
