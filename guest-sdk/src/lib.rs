//! Write outpost edge handlers in Rust.
//!
//! A handler is one async function, as on Cloudflare Workers:
//!
//! ```ignore
//! use outpost_sdk::{Env, Request, Response, Result};
//!
//! #[outpost_sdk::fetch]
//! async fn fetch(req: Request, env: Env) -> Result<Response> {
//!     let name = req.query_param("name").unwrap_or_else(|| "world".into());
//!     let greeting = env.var("GREETING").unwrap_or_else(|| "hello".into());
//!     Ok(Response::text(format!("{greeting}, {name}")))
//! }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` is a plain
//! `wasi:http/proxy` component, so `wasmtime serve` runs it too.
//!
//! Returning `Err` turns into a response: [`Error::new`] picks the status and text, and
//! any other error (`?` on I/O, JSON, …) becomes a 500 whose details go to the node's log,
//! not to the client. Work registered with [`Env::wait_until`] runs after the response
//! has been sent, under the same limits (Workers' `ctx.waitUntil`).

mod env;
mod error;
pub mod objects;
mod request;
mod response;
pub mod route;
pub mod router;
pub mod stores;

pub use env::Env;
pub use error::{Error, Result, StoreError};
pub use objects::{AlarmInfo, DurableObject, Message, WebSocket, ObjectClass, ObjectId, ObjectNamespace, State, Storage, Stub};
pub use outpost_sdk_macros::{durable_object, fetch};
pub use request::{BodyStream, Request};
pub use response::Response;
pub use router::{Params, Router};
pub use stores::blob::Bucket;
pub use stores::cache::{Cache, CacheOptions};
pub use stores::kv::Kv;
pub use stores::sql::Sql;
pub use wstd::http::{Body, HeaderMap, Method, StatusCode};

/// Waits for `duration` without holding the node's thread (the instance is suspended).
pub async fn sleep(duration: std::time::Duration) {
    wstd::task::sleep(duration.into()).await;
}

/// The pieces a guest may need beyond the SDK's own types.
pub mod reexports {
    pub use http;
    pub use serde_json;
    pub use wstd;
}

#[doc(hidden)]
pub mod __private {
    pub use wstd::__internal::wasip2;

    use crate::{Env, Request, Response, Result};
    use wasip2::http::types::{IncomingRequest, ResponseOutparam};

    /// Runs a fetch handler for one incoming request, then its `wait_until` work; in an
    /// instance that runs a Durable Object, the object's class from `objects` instead.
    pub fn serve<F, Fut>(
        request: IncomingRequest,
        out: ResponseOutparam,
        handler: F,
        objects: &[(&str, crate::objects::dispatch::Entry)],
    ) where
        F: FnOnce(Request, Env) -> Fut,
        Fut: Future<Output = Result<Response>>,
    {
        let responder = wstd::http::server::Responder::new(out);
        wstd::runtime::block_on(async move {
            let request = match wstd::http::request::try_from_incoming(request) {
                Ok(request) => request,
                Err(error) => return responder.fail(error),
            };
            let traceparent = request
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let env = Env::new(traceparent);
            let is_head = request.method() == wstd::http::Method::HEAD;
            let request = Request::from_http(request);
            let answer = match crate::objects::dispatch::current() {
                None => handler(request, env.clone()).await,
                Some(id) => match objects.iter().find(|(class, _)| *class == id.class) {
                    Some((_, entry)) => entry(request, env.clone(), id).await,
                    None => Err(crate::Error::internal(format!(
                        "durable object class `{}` is not in this component; list it in #[outpost_sdk::fetch(objects = [...])]",
                        id.class
                    ))),
                },
            };
            let response = match answer {
                Ok(response) => response,
                Err(error) => error.into_response(),
            };
            // wasi:http 0.2 checks content-length against the bytes written even for HEAD,
            // whose body is never sent: finishing a HEAD response that states its length
            // fails here although the client got exactly what it should.
            if let Err(error) = responder.respond(response.into_http()).await
                && !is_head
            {
                eprintln!("outpost-sdk: sending the response failed: {error}");
            }
            env.run_after_response().await;
        });
    }
}
