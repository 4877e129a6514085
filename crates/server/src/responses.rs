//! The responses outpost itself writes: no route, busy, and the limit outcomes. Bodies
//! are short and name no internals; details go to the node's log.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use outpost_runtime::{Failure, LimitHit, WasiBody};

/// Seconds a client should wait before retrying a busy tenant or node.
pub const RETRY_AFTER_SECS: u32 = 1;

/// `bytes` as a response body.
pub fn body(bytes: impl Into<Bytes>) -> WasiBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A plain-text response from outpost.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> http::Response<WasiBody> {
    let mut response = http::Response::new(self::body(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// 404 for a request no tenant's route covers.
pub fn no_route() -> http::Response<WasiBody> {
    text(StatusCode::NOT_FOUND, "no route")
}

/// 400 for a request whose host is ambiguous (two `Host` lines, or none in HTTP/1.1).
pub fn bad_host() -> http::Response<WasiBody> {
    text(
        StatusCode::BAD_REQUEST,
        "a request needs exactly one Host header",
    )
}

/// 503 with `Retry-After` for a tenant at its concurrency limit.
pub fn tenant_busy() -> http::Response<WasiBody> {
    retry_later(text(StatusCode::SERVICE_UNAVAILABLE, "tenant busy"))
}

/// 503 with `Retry-After` and no body for a request past `server.max_open_requests`.
pub fn too_many_open_requests() -> http::Response<WasiBody> {
    let mut response = retry_later(http::Response::new(body(Bytes::new())));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

/// 429 with `Retry-After` for a client holding its share of a tenant's slots
/// (`limits.per_client`).
pub fn client_busy() -> http::Response<WasiBody> {
    retry_later(text(
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests from this client at once",
    ))
}

/// 413 for a request body over the tenant's limit.
pub fn body_too_large() -> http::Response<WasiBody> {
    text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
}

/// 408 for a client that did not send the start of its body within `body_timeout`; the
/// connection closes, since the rest of that body may still be on its way.
pub fn body_too_slow() -> http::Response<WasiBody> {
    let mut response = text(StatusCode::REQUEST_TIMEOUT, "request body too slow");
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

/// The response for a request that ended without the guest's response.
pub fn failure(failure: Failure, request_id: &str) -> http::Response<WasiBody> {
    match failure {
        Failure::Limit(LimitHit::Cpu) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "cpu limit exceeded")
        }
        Failure::Limit(LimitHit::Memory) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "memory limit exceeded")
        }
        Failure::Limit(LimitHit::Timeout) => text(StatusCode::GATEWAY_TIMEOUT, "timeout"),
        Failure::Limit(LimitHit::Body) => body_too_large(),
        Failure::GuestError => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error (request id {request_id})"),
        ),
        Failure::NoInstance => retry_later(text(StatusCode::SERVICE_UNAVAILABLE, "node busy")),
    }
}

fn retry_later(mut response: http::Response<WasiBody>) -> http::Response<WasiBody> {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}
