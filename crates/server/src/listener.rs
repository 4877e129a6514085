//! The public listeners: accept, optionally TLS, HTTP/1.1 and HTTP/2, under the
//! connection limits; and graceful shutdown. Slow or idle clients are cut off: a request
//! head must arrive within `header_timeout` (slowloris), a TLS handshake too, and a
//! connection with no request in flight for `idle_timeout` (since one last started or
//! ended; pings and other bytes do not count) is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioIo, TokioTimer};
use outpost_config::ConnectionLimits;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::Node;
use crate::send_watch::{Counted, Label, SendClock, StreamExecutor, Watched};
use outpost_runtime::WasiBody;

/// HTTP/2 streams one connection may have open at once (hyper's default is 200).
const MAX_STREAMS_PER_CONNECTION: u32 = 100;

/// What one HTTP/2 stream may buffer for a client that reads slowly (hyper's default is
/// 400 KiB). A window held at zero buffers nothing: hyper waits for send capacity before
/// it reads the body.
const H2_SEND_BUFFER: usize = 64 << 10;

/// The listeners' gauges, read at each scrape.
pub struct FrontGauges(std::sync::Weak<Front>);

impl std::fmt::Debug for FrontGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrontGauges")
    }
}

impl prometheus_client::collector::Collector for FrontGauges {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let Some(front) = self.0.upgrade() else {
            return Ok(());
        };
        let gauge = crate::metrics::encode_gauge;
        gauge(
            &mut encoder,
            "connections",
            "Open client connections",
            front.connections() as i64,
        )?;
        gauge(
            &mut encoder,
            "requests_in_flight",
            "Requests being handled on the node",
            front.in_flight() as i64,
        )?;
        gauge(
            &mut encoder,
            "open_requests",
            "Requests open on the node until their responses are sent (server.max_open_requests)",
            front.open_requests() as i64,
        )
    }
}

/// What both public listeners share: the serving node, the connection budget, and the
/// shutdown signal.
pub struct Front {
    live: Arc<ArcSwap<Node>>,
    limits: ConnectionLimits,
    connections: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    /// Requests in flight across the node.
    in_flight: Arc<AtomicUsize>,
    /// Requests open across the node, until their responses are sent.
    open: Arc<AtomicUsize>,
    started: Instant,
}

impl Front {
    /// A front for `live` under `limits`, stopping when `shutdown` turns true.
    pub fn new(
        live: Arc<ArcSwap<Node>>,
        limits: ConnectionLimits,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Front> {
        Arc::new(Front {
            live,
            connections: Arc::new(Semaphore::new(limits.max_connections as usize)),
            limits,
            shutdown,
            in_flight: Arc::default(),
            open: Arc::default(),
            started: Instant::now(),
        })
    }

    /// Open client connections.
    pub fn connections(&self) -> usize {
        (self.limits.max_connections as usize).saturating_sub(self.connections.available_permits())
    }

    /// Requests being handled.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests open until their responses are sent.
    pub fn open_requests(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The gauges the metrics read at each scrape (connections, requests in flight);
    /// register them with [`Metrics::register`](crate::metrics::Metrics::register).
    pub fn gauges(self: &Arc<Self>) -> FrontGauges {
        FrontGauges(Arc::downgrade(self))
    }

    /// Accepts on `listener` until shutdown; with `tls`, every connection is TLS first.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) {
        let mut shutdown = self.shutdown.clone();
        loop {
            // Past the connection budget, new clients wait in the kernel's backlog.
            let permit = tokio::select! {
                _ = crate::stopped(&mut shutdown) => return,
                permit = self.connections.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let (stream, peer) = tokio::select! {
                _ = crate::stopped(&mut shutdown) => return,
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
            let front = self.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tls {
                    None => front.serve_connection(stream, peer, false).await,
                    Some(tls) => {
                        let handshake =
                            tokio::time::timeout(front.limits.header_timeout, tls.accept(stream));
                        match handshake.await {
                            Ok(Ok(stream)) => {
                                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                                front.serve_connection(stream, peer, h2).await;
                            }
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, "TLS handshake failed: {error}")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            });
        }
    }

    async fn serve_connection<S>(self: Arc<Self>, stream: S, peer: SocketAddr, h2_only: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let connection = Arc::new(Connection {
            activity: AtomicU64::new(self.started.elapsed().as_millis() as u64),
            in_flight: Arc::default(),
            open: Arc::default(),
            clock: SendClock::new(),
        });
        let service = {
            let front = self.clone();
            let connection = connection.clone();
            hyper::service::service_fn(move |request| {
                let front = front.clone();
                let connection = connection.clone();
                async move {
                    let response = front.request(&connection, request, peer).await;
                    Ok::<_, std::convert::Infallible>(response)
                }
            })
        };
        let mut builder = hyper_util::server::conn::auto::Builder::new(StreamExecutor {
            timeout: self.limits.send_timeout,
        });
        let max_header = usize::try_from(self.limits.max_header_size).unwrap_or(usize::MAX);
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_buf_size(max_header);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(max_header).unwrap_or(u32::MAX))
            // Streams at once per connection; more are refused (REFUSED_STREAM).
            .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
            // Rapid reset (CVE-2023-44487): this many streams cancelled before they
            // were served, and the connection is closed with ENHANCE_YOUR_CALM.
            .max_pending_accept_reset_streams(Some(20))
            .max_local_error_reset_streams(Some(1024))
            // What a stream may buffer towards a slow reader: the body's producer
            // waits, not the node's memory.
            .max_send_buf_size(H2_SEND_BUFFER)
            .keep_alive_interval(Some(self.limits.idle_timeout / 2))
            .keep_alive_timeout(Duration::from_secs(20));
        let builder = if h2_only {
            builder.http2_only()
        } else {
            builder
        };
        // With upgrades: a WebSocket's connection outlives its request (`websocket`).
        let serving = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(serving);
        let mut shutdown = self.shutdown.clone();
        let mut idle_check = tokio::time::interval(self.limits.idle_timeout / 4);
        let mut closing = false;
        loop {
            tokio::select! {
                result = serving.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, "connection ended: {error}");
                    }
                    return;
                }
                () = connection.clock.stalled(self.limits.send_timeout) => {
                    // An HTTP/1.1 client that takes none of its response: the guest
                    // streaming it is released with the connection.
                    tracing::debug!(%peer, "closing a connection whose client takes no bytes");
                    return;
                }
                _ = crate::stopped(&mut shutdown), if !closing => {
                    closing = true;
                    serving.as_mut().graceful_shutdown();
                }
                _ = idle_check.tick(), if !closing => {
                    let quiet = self.started.elapsed().as_millis() as u64 - connection.activity.load(Ordering::Relaxed);
                    if connection.in_flight.load(Ordering::Relaxed) == 0
                        && quiet >= self.limits.idle_timeout.as_millis() as u64
                    {
                        tracing::debug!(%peer, "closing an idle connection");
                        closing = true;
                        serving.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }

    /// Serves one request of `connection`: under the node's bound on open requests, on
    /// the node of the moment (a deploy or reload never changes a request that has
    /// started), its body watched for a client that takes no bytes.
    async fn request(
        &self,
        connection: &Connection,
        request: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> http::Response<Watched<WasiBody>> {
        let _busy = Counted::new(&self.in_flight, &connection.in_flight);
        let _touch = Touch::new(&connection.activity, self.started);
        // Here, in the stream's own task: an HTTP/2 stream has its own clock.
        let clock = SendClock::current(&connection.clock);
        let send_timeout = self.limits.send_timeout;
        let max = self.limits.max_open_requests;
        let Some(open) = Counted::admit_open(&self.open, &connection.open, max, self.connections())
        else {
            tracing::warn!(%peer, "node at server.max_open_requests ({max}); refusing a request");
            // A head alone needs no flow-control window: a refusal cannot be held open.
            let refusal = crate::responses::too_many_open_requests();
            let label = Label::default();
            return refusal.map(|body| Watched::new(body, clock, send_timeout, label, None));
        };
        let node = self.live.load_full();
        let (tenant, response) = node.handle(request, peer).await;
        let label = Label {
            tenant,
            request_id: response.headers().get(crate::REQUEST_ID_HEADER).cloned(),
        };
        response.map(|body| Watched::new(body, clock, send_timeout, label, Some(open)))
    }

    /// After shutdown is signalled: waits for every connection to close (in-flight
    /// requests finish; idle connections close at once), then for work guests do after
    /// their response, up to `grace` in all. Returns whether everything finished.
    pub async fn drain(&self, tenants: impl Fn() -> usize) -> bool {
        let deadline = tokio::time::Instant::now() + self.limits.shutdown_grace;
        let all = self.limits.max_connections;
        let connections_closed =
            tokio::time::timeout_at(deadline, self.connections.acquire_many(all)).await;
        if connections_closed.is_err() {
            return false;
        }
        while tenants() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// What a connection's requests share.
struct Connection {
    /// When a request last started or ended here: bytes on the wire are not activity,
    /// or HTTP/2's own keep-alive pings would keep an idle connection open.
    activity: AtomicU64,
    /// Requests being handled here.
    in_flight: Arc<AtomicUsize>,
    /// Requests open here, until their responses are sent.
    open: Arc<AtomicUsize>,
    /// HTTP/1.1's one response at a time waits on this; each HTTP/2 stream has its own.
    clock: Arc<SendClock>,
}

/// Notes the time in `activity` when a request starts and when it ends: the idle
/// timeout counts from the later.
struct Touch<'a> {
    activity: &'a AtomicU64,
    epoch: Instant,
}

impl<'a> Touch<'a> {
    fn new(activity: &'a AtomicU64, epoch: Instant) -> Touch<'a> {
        let touch = Touch { activity, epoch };
        touch.now();
        touch
    }

    fn now(&self) {
        self.activity
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for Touch<'_> {
    fn drop(&mut self) {
        self.now();
    }
}
