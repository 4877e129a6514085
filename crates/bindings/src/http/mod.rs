//! Outbound HTTP (`wasi:http/outgoing-handler`, `wasi:http/client`): a guest reaches only
//! the origins its tenant lists in `outbound`. The check runs twice: on the request's
//! origin, and in the connector on the addresses DNS returned, so a listed *name* that
//! resolves to a loopback, private or link-local address is refused.
//!
//! The capability's parts follow wasmtime-wasi-http's own: [`OutboundClient`] is the
//! tenant's state (its `…Ctx`: origins, connection pool, limits); [`OutboundHooks`] is
//! the [`WasiHttpHooks`] policy each instance's `WasiHttpCtxView` carries; the store data
//! implements wasmtime's `WasiHttpView`; and [`add_to_linker`] links WASI 0.2 and 0.3
//! HTTP. `client.rs` sends, `guard.rs` is the SSRF guard.

mod cached;
mod client;
mod drain;
mod guard;

use std::sync::Arc;

use drain::{Drain, DrainedOnDrop};
use http_body_util::BodyExt;

use wasmtime::component::Linker;
use wasmtime_wasi_http::{WasiBody, WasiHttpHooks, WasiHttpView};

pub use cached::{
    CACHE_EVERYTHING, CACHE_FETCH, CACHE_KEY, CACHE_STATUS, CACHE_TTL, CACHE_TTL_BY_STATUS,
};
pub use client::OutboundClient;
use outpost_cache::TenantCache;

use crate::objects::{Caller, OBJECT_HEADER, ObjectsCtx};

/// Counts the current request's subrequests; the runtime implements it on whatever
/// knows which request an instance is serving.
pub trait SubrequestCounter: Send + Sync + 'static {
    /// Counts one more subrequest and returns how many the request has made before it.
    fn count(&self) -> u32;

    /// The current request's id, which an object's event it sends goes on logging under.
    fn request_id(&self) -> Option<Arc<str>> {
        None
    }
}

/// The outbound policy of one instance: the tenant's client (none: every request is
/// refused) and the per-request cap on how many requests it may send.
pub struct OutboundHooks {
    client: Option<Arc<OutboundClient>>,
    counter: Box<dyn SubrequestCounter>,
    /// The tenant's cache, when enabled: `GET`s go through it ([`cached`]).
    cache: Option<Arc<TenantCache>>,
    /// The tenant's object classes, and the object this instance is (if one): requests
    /// with an [`OBJECT_HEADER`] go to an object instead of the network.
    objects: Option<(Arc<ObjectsCtx>, Caller)>,
}

impl OutboundHooks {
    /// The policy for an instance of a tenant with `client` (`None`: no origins listed).
    pub fn new(client: Option<Arc<OutboundClient>>, counter: Box<dyn SubrequestCounter>) -> Self {
        OutboundHooks {
            client,
            counter,
            cache: None,
            objects: None,
        }
    }

    /// Sends requests that name an object to it; `caller` is the object this instance
    /// runs as, if it is one.
    pub fn with_objects(mut self, objects: Arc<ObjectsCtx>, caller: Caller) -> Self {
        self.objects = Some((objects, caller));
        self
    }

    /// Sends `GET`s through the tenant's cache.
    pub fn with_cache(mut self, cache: Option<Arc<TenantCache>>) -> Self {
        self.cache = cache;
        self
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl OutboundHooks {
    /// A request for an object (its [`OBJECT_HEADER`] already taken off): counted as a
    /// subrequest, then run as the object's event.
    fn send_to_object(
        &mut self,
        target: http::HeaderValue,
        request: http::Request<WasiBody>,
    ) -> SendFuture {
        use wasmtime_wasi_http::Error;
        let Some((objects, caller)) = self.objects.clone() else {
            return Box::new(async { Err(Error::HttpRequestDenied) });
        };
        let max = objects.max_subrequests;
        if self.counter.count() >= max {
            return Box::new(async move {
                Err(Error::InternalError(Some(format!(
                    "a request may make at most {max} subrequests (limits.subrequests)"
                ))))
            });
        }
        let request_id = self.counter.request_id();
        let span = tracing::Span::current();
        Box::new(tracing::Instrument::instrument(
            async move {
                let target = target.to_str().unwrap_or_default();
                let response = objects.deliver(target, request_id, caller, request).await?;
                let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                    Box::new(async { Ok(()) });
                Ok((response, done))
            },
            span,
        ))
    }
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        use wasmtime_wasi_http::Error;
        // Whatever happens to the request, the guest's writes to its body succeed, so
        // the guest reads the real answer or reason from the response.
        let mut request =
            request.map(|body| DrainedOnDrop::new(body, Drain::REQUEST).boxed_unsync());
        if let Some(target) = request.headers_mut().remove(OBJECT_HEADER) {
            return self.send_to_object(target, request);
        }
        let Some(client) = self.client.clone() else {
            return Box::new(async { Err(Error::HttpRequestDenied) });
        };
        let max = client.max_subrequests;
        let url = request.uri().to_string();
        if self.counter.count() >= max {
            tracing::warn!(%url, "subrequest refused: over limits.subrequests = {max}");
            return Box::new(async move {
                Err(Error::InternalError(Some(format!(
                    "a request may make at most {max} subrequests (limits.subrequests)"
                ))))
            });
        }
        let first_byte = options.and_then(|o| o.first_byte_timeout);
        let cache = self.cache.clone();
        let span = tracing::Span::current();
        Box::new(tracing::Instrument::instrument(
            async move {
                let sent = match cache {
                    Some(cache) => cached::send(client, cache, request, first_byte).await,
                    None => {
                        client
                            .send(cached::without_options(request), first_byte)
                            .await
                    }
                };
                // The guest often sees only that its request body's stream closed, so
                // the node's log is where the reason is kept.
                let response = sent.inspect_err(|error| {
                    tracing::warn!(%url, %error, "subrequest failed");
                })?;
                let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                    Box::new(async { Ok(()) });
                Ok((response, done))
            },
            span,
        ))
    }
}

/// Adds `wasi:http` (0.2 and 0.3) to `linker`; requests go through the store data's
/// `WasiHttpView`, whose hooks should be an [`OutboundHooks`].
pub fn add_to_linker<T: WasiHttpView + wasmtime_wasi::WasiView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    wasmtime_wasi_http::p3::add_to_linker(linker)?;
    Ok(())
}
