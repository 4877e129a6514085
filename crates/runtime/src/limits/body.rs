//! The request body limit while it streams (a declared `Content-Length` over the limit
//! is refused by the server before the guest runs).

use std::sync::Arc;

use wasmtime_wasi_http::WasiBody;

use crate::scope::{LimitHit, RequestScope};

/// Caps the request body: past `limit` bytes the guest's read fails and the request is
/// marked, so it ends with 413 whatever the guest does next.
pub(crate) fn body_with_limit(body: WasiBody, limit: u64, scope: Arc<RequestScope>) -> WasiBody {
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
