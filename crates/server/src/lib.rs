//! outpost's HTTP front: accepts connections (HTTP/1.1 and cleartext HTTP/2), routes each
//! request to a tenant, admits it under the tenant's concurrency limit, runs it, and turns
//! the outcome into a response. Every log line of a request carries its tenant and
//! request id.

mod context;
mod request_id;
mod responses;
mod router;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use outpost_runtime::{BodyError, Tenant, WasiBody};
use tokio::net::TcpListener;

pub use request_id::{REQUEST_ID_HEADER, request_id};
pub use router::Router;

/// How long a client may take to send a request's headers before the connection is
/// closed (slowloris protection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The tenants a node serves and the router that picks among them.
pub struct Node {
    /// This node's id, for logs and `x-outpost-node`.
    pub id: String,
    tenants: Vec<Arc<Tenant>>,
    router: Router,
    network: context::Network,
}

impl Node {
    /// A node serving `tenants`, each with its routes.
    pub fn new(id: String, tenants: Vec<(Arc<Tenant>, Vec<outpost_config::Route>)>) -> Node {
        let router = Router::new(
            tenants
                .iter()
                .enumerate()
                .map(|(index, (_, routes))| (index, routes.as_slice())),
        );
        Node {
            id,
            tenants: tenants.into_iter().map(|(tenant, _)| tenant).collect(),
            router,
            network: context::Network::default(),
        }
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
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> http::Response<WasiBody> {
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
            None => (None, responses::no_route()),
            Some(index) => {
                let tenant = &self.tenants[index];
                let name = tenant.info().name.clone();
                (Some(name), self.run(tenant, &id, request, peer).await)
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
        response
    }

    async fn run(
        &self,
        tenant: &Tenant,
        id: &str,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> http::Response<WasiBody> {
        let declared_length = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_length.is_some_and(|len| len > tenant.limits().body) {
            return responses::body_too_large();
        }
        let Some(admission) = tenant.try_admit() else {
            tracing::warn!(tenant = %tenant.info().name, request_id = id, "tenant at its concurrency limit");
            return responses::tenant_busy();
        };
        let (mut parts, body) = request.into_parts();
        if let Ok(value) = HeaderValue::from_str(id) {
            parts.headers.insert(REQUEST_ID_HEADER, value);
        }
        context::apply(
            &mut parts.headers,
            peer.ip().to_canonical(),
            &self.network,
            &self.id,
        );
        let body = body.map_err(BodyError::from).boxed_unsync();
        match tenant
            .handle(admission, Arc::from(id), Request::from_parts(parts, body))
            .await
        {
            Ok(response) => response,
            Err(failure) => responses::failure(failure, id),
        }
    }
}

/// Serves `node` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Guests may stream small chunks (server-sent events); Nagle would hold them back.
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        tokio::spawn(async move { serve_connection(stream, peer, node).await });
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, node: Arc<Node>) {
    let service = hyper::service::service_fn(move |request| {
        let node = node.clone();
        async move { Ok::<_, std::convert::Infallible>(node.handle(request, peer).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    if let Err(error) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%peer, "connection ended: {error}");
    }
}

/// Binds the public listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
