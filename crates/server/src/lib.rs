//! outpost's HTTP front: accepts connections (HTTP/1.1 and cleartext HTTP/2), routes each
//! request to a tenant, admits it under the tenant's concurrency limit, runs it, and turns
//! the outcome into a response. Every log line of a request carries its tenant and
//! request id.

pub mod admin;
pub mod assets;
mod context;
pub mod control;
mod edge_cache;
mod listener;
pub mod metrics;
mod prefetch;
mod request_id;
mod responses;
mod router;
mod send_watch;
pub mod tls;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use outpost_runtime::{BodyError, Refusal, Tenant, WasiBody};

pub use listener::{Front, FrontGauges};
pub use request_id::{REQUEST_ID_HEADER, request_id};
pub use router::Router;

/// One tenant as the node serves it: its guest, its routes and its static files.
pub struct Served {
    pub tenant: Arc<Tenant>,
    pub routes: Vec<outpost_config::Route>,
    pub assets: Option<Arc<assets::Assets>>,
    /// Its response cache, when `cache.enabled`.
    pub cache: Option<Arc<outpost_cache::TenantCache>>,
}

/// The tenants a node serves and the router that picks among them.
pub struct Node {
    /// This node's id, for logs and `x-outpost-node`.
    pub id: String,
    tenants: Vec<Arc<Tenant>>,
    /// Per tenant, in `tenants` order.
    assets: Vec<Option<Arc<assets::Assets>>>,
    /// Per tenant, in `tenants` order: its response cache, when enabled.
    caches: Vec<Option<Arc<outpost_cache::TenantCache>>>,
    router: Router,
    network: context::Network,
    /// Per tenant, in `tenants` order, when metrics are kept.
    meters: Vec<Option<metrics::TenantMeters>>,
    prefetch: prefetch::BodyPrefetch,
}

impl Node {
    /// A node serving `tenants`, each on its routes.
    pub fn new(id: String, tenants: Vec<Served>) -> Node {
        let router = Router::new(
            tenants
                .iter()
                .enumerate()
                .map(|(index, served)| (index, served.routes.as_slice())),
        );
        Node {
            id,
            meters: tenants.iter().map(|_| None).collect(),
            assets: tenants.iter().map(|served| served.assets.clone()).collect(),
            caches: tenants.iter().map(|served| served.cache.clone()).collect(),
            tenants: tenants.into_iter().map(|served| served.tenant).collect(),
            router,
            network: context::Network::default(),
            prefetch: prefetch::BodyPrefetch {
                bytes: 64 << 10,
                timeout: std::time::Duration::from_secs(10),
            },
        }
    }

    /// Reads up to `bytes` of each request body, within `timeout`, before its guest is
    /// admitted (`server.body_prefetch`, `server.body_timeout`).
    pub fn with_body_prefetch(mut self, bytes: u64, timeout: std::time::Duration) -> Node {
        self.prefetch = prefetch::BodyPrefetch { bytes, timeout };
        self
    }

    /// Counts requests, latency and limit hits per tenant in `metrics`.
    pub fn with_metrics(mut self, metrics: &metrics::Metrics) -> Node {
        self.meters = self
            .tenants
            .iter()
            .map(|tenant| Some(metrics.tenant(&tenant.info().name)))
            .collect();
        self
    }

    /// Believes `x-forwarded-for` from `trusted_proxies` (the load balancers in front)
    /// and tells guests a client's country from `geo`.
    pub fn with_network(
        mut self,
        trusted_proxies: Vec<ipnet::IpNet>,
        geo: Vec<(ipnet::IpNet, String)>,
    ) -> Node {
        self.network = context::Network {
            trusted_proxies,
            geo,
        };
        self
    }

    /// Handles one request from `peer` end to end; never fails (failures are responses).
    /// Returns the name of the tenant it was routed to, if any, beside the response.
    pub async fn handle(
        self: &Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> (Option<Arc<str>>, http::Response<WasiBody>) {
        let started = Instant::now();
        let id = request_id(request.headers().get(REQUEST_ID_HEADER));
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let host = request
            .uri()
            .host()
            .map(str::to_string)
            .or_else(|| {
                let host = request.headers().get(http::header::HOST)?;
                host.to_str().ok().map(str::to_string)
            })
            .unwrap_or_default();

        let (tenant_name, mut response) = match self.router.route(&host, &path) {
            _ if ambiguous_host(&request) => (None, responses::bad_host()),
            None => (None, responses::no_route()),
            Some(index) => {
                let tenant = &self.tenants[index];
                let name = tenant.info().name.clone();
                let meters = self.meters[index].as_ref();
                let from_files = self.assets[index].as_ref().and_then(|assets| {
                    assets.respond(request.method(), request.uri(), request.headers())
                });
                let mut request = request.map(|body| body.map_err(BodyError::from).boxed_unsync());
                websocket::mark_upgrade(&mut request);
                let response = match (from_files, &self.caches[index]) {
                    (Some(response), _) => response,
                    (None, _) if websocket::is_upgrade(&request) => {
                        self.run_upgrade(index, &id, request, peer).await
                    }
                    (None, Some(cache)) => {
                        self.through_cache(index, cache, &host, &id, request, peer)
                            .await
                    }
                    (None, None) => self.run(index, &id, request, peer).await,
                };
                if let Some(meters) = meters {
                    meters.observe(response.status().as_u16(), started.elapsed().as_secs_f64());
                }
                (Some(name), response)
            }
        };
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        tracing::info!(
            tenant = tenant_name.as_deref().unwrap_or("-"),
            request_id = %id,
            %method,
            host,
            path,
            status = response.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        );
        (tenant_name, response)
    }

    /// Runs tenant `index`'s guest for `request`, under its body and concurrency limits.
    async fn run(
        &self,
        index: usize,
        id: &str,
        request: Request<WasiBody>,
        peer: SocketAddr,
    ) -> http::Response<WasiBody> {
        let tenant = &self.tenants[index];
        let meters = self.meters[index].as_ref();
        let declared_length = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let limit_hit = |kind| {
            if let Some(meters) = meters {
                meters.limit_hit(kind);
            }
        };
        if declared_length.is_some_and(|len| len > tenant.limits().body) {
            limit_hit("body");
            return responses::body_too_large();
        }
        // No more than the tenant would accept: one byte past its limit is enough to
        // refuse the body, and the guest's reads enforce the limit as they go.
        let at_most = self
            .prefetch
            .bytes
            .min(tenant.limits().body.saturating_add(1));
        let Ok(request) = prefetch::prefetch(request, at_most, self.prefetch.timeout).await else {
            tracing::warn!(tenant = %tenant.info().name, request_id = id, "request body too slow: {at_most} bytes not sent within server.body_timeout");
            limit_hit("body_timeout");
            return responses::body_too_slow();
        };
        let (mut parts, body) = request.into_parts();
        if let Ok(value) = HeaderValue::from_str(id) {
            parts.headers.insert(REQUEST_ID_HEADER, value);
        }
        let client = context::apply(
            &mut parts.headers,
            peer.ip().to_canonical(),
            &self.network,
            &self.id,
        );
        let admission = match tenant.try_admit(client) {
            Ok(admission) => admission,
            Err(Refusal::TenantFull) => {
                tracing::warn!(tenant = %tenant.info().name, request_id = id, "tenant at its concurrency limit");
                limit_hit("concurrency");
                return responses::tenant_busy();
            }
            Err(Refusal::ClientFull) => {
                tracing::warn!(tenant = %tenant.info().name, request_id = id, %client, "client at the tenant's limits.per_client");
                limit_hit("per_client");
                return responses::client_busy();
            }
        };
        match tenant
            .handle(admission, Arc::from(id), Request::from_parts(parts, body))
            .await
        {
            Ok(response) => response,
            Err(failure) => {
                if let outpost_runtime::Failure::Limit(hit) = failure {
                    limit_hit(hit.as_str());
                }
                responses::failure(failure, id)
            }
        }
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Whether the request does not say unambiguously which host it is for (RFC 9112 §3.2:
/// answered 400): more than one `Host` line, or an HTTP/1.1 request with none. A
/// request in absolute form names its host in the target, which wins over `Host`.
fn ambiguous_host<B>(request: &Request<B>) -> bool {
    let hosts = request.headers().get_all(http::header::HOST).iter().count();
    hosts > 1
        || (hosts == 0
            && request.version() == http::Version::HTTP_11
            && request.uri().host().is_none())
}
