//! Clients that take no bytes, and the node-wide bound on open requests.
//!
//! A response waits on its client when the body has handed a chunk to the connection
//! and has not been asked for the next: the client's HTTP/2 window is shut, or it does
//! not read its socket. After `server.send_timeout` of that the response is cut off: an
//! HTTP/2 stream is reset (the connection and its other streams carry on), an HTTP/1.1
//! connection is closed. The guest streaming the body, and its tenant's concurrency
//! slot, are released then, not at the tenant's `limits.timeout`.
//!
//! Each open request (HTTP/2 stream or HTTP/1.1 request, until its body is done) costs
//! the node memory whatever its connection; `server.max_open_requests` bounds them all,
//! so many connections each holding its 100 streams open cannot add up without bound,
//! and refuses the connections holding more than their share rather than everyone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};

tokio::task_local! {
    /// The clock of the HTTP/2 stream whose task is running.
    static STREAM_CLOCK: Arc<SendClock>;
}

/// Whether, and since when, a response has been waiting on its client.
pub(crate) struct SendClock {
    /// Milliseconds since `epoch`, plus one, when the body last handed over a chunk
    /// that the connection has not yet taken; 0 when it is not waiting on the client.
    waiting_since: AtomicU64,
    epoch: Instant,
}

impl SendClock {
    pub(crate) fn new() -> Arc<SendClock> {
        Arc::new(SendClock {
            waiting_since: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// The running HTTP/2 stream's clock, or `connection`'s for HTTP/1.1.
    pub(crate) fn current(connection: &Arc<SendClock>) -> Arc<SendClock> {
        STREAM_CLOCK
            .try_with(Arc::clone)
            .unwrap_or_else(|_| connection.clone())
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn waiting(&self) {
        self.waiting_since.store(self.now() + 1, Ordering::Relaxed);
    }

    fn not_waiting(&self) {
        self.waiting_since.store(0, Ordering::Relaxed);
    }

    /// How long the response has waited on its client, if it is waiting.
    fn waited(&self) -> Option<Duration> {
        match self.waiting_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis(self.now().saturating_sub(since - 1))),
        }
    }

    /// Resolves once a response has waited on its client for `timeout`.
    pub(crate) async fn stalled(&self, timeout: Duration) {
        loop {
            let next_look = match self.waited() {
                Some(waited) if waited >= timeout => return,
                Some(waited) => timeout - waited,
                // Not waiting: look again a quarter of the timeout on, so a stall is
                // caught within 1.25 times the timeout without a wake-up per chunk.
                None => timeout / 4,
            };
            tokio::time::sleep(next_look).await;
        }
    }
}

/// Spawns each HTTP/2 stream's task with its own clock, and drops the task (hyper and
/// h2 then reset the stream with CANCEL) once the stream has waited on its client for
/// `timeout`.
#[derive(Clone)]
pub(crate) struct StreamExecutor {
    pub(crate) timeout: Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        let clock = SendClock::new();
        let timeout = self.timeout;
        tokio::spawn(async move {
            tokio::select! {
                biased;
                () = STREAM_CLOCK.scope(clock.clone(), stream) => {}
                () = clock.stalled(timeout) => {}
            }
        });
    }
}

/// One request counted on the node and on its connection while it is alive: in flight,
/// or open (against `server.max_open_requests`).
pub(crate) struct Counted {
    node: Arc<AtomicUsize>,
    connection: Arc<AtomicUsize>,
}

impl Counted {
    pub(crate) fn new(node: &Arc<AtomicUsize>, connection: &Arc<AtomicUsize>) -> Counted {
        node.fetch_add(1, Ordering::Relaxed);
        connection.fetch_add(1, Ordering::Relaxed);
        Counted {
            node: node.clone(),
            connection: connection.clone(),
        }
    }

    /// Counts a request open on `node` and `connection`. Past `max` across the node it is
    /// refused if its connection already holds its share (`max` over the `connections`
    /// open): one client with many streams is refused, not everyone. So the node holds
    /// about `max` open requests, plus at most one per connection.
    pub(crate) fn admit_open(
        node: &Arc<AtomicUsize>,
        connection: &Arc<AtomicUsize>,
        max: u32,
        connections: usize,
    ) -> Option<Counted> {
        let max = max as usize;
        let share = (max / connections.max(1)).max(1);
        if node.load(Ordering::Relaxed) >= max && connection.load(Ordering::Relaxed) >= share {
            return None;
        }
        Some(Counted::new(node, connection))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.node.fetch_sub(1, Ordering::Relaxed);
        self.connection.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Who a response is for, for the log line when it is cut off.
#[derive(Default)]
pub(crate) struct Label {
    pub(crate) tenant: Option<Arc<str>>,
    pub(crate) request_id: Option<HeaderValue>,
}

/// A response body that tells its clock when it waits on the client, and holds its
/// request's place among the open requests until it is dropped.
pub(crate) struct Watched<B> {
    inner: B,
    clock: Arc<SendClock>,
    timeout: Duration,
    label: Label,
    _open: Option<Counted>,
}

impl<B: Body + Unpin> Watched<B> {
    pub(crate) fn new(
        inner: B,
        clock: Arc<SendClock>,
        timeout: Duration,
        label: Label,
        open: Option<Counted>,
    ) -> Watched<B> {
        if inner.is_end_stream() {
            clock.not_waiting();
        } else {
            // Handed over with its head: waiting until the connection asks for a chunk.
            clock.waiting();
        }
        Watched {
            inner,
            clock,
            timeout,
            label,
            _open: open,
        }
    }
}

impl<B: Body + Unpin> Body for Watched<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        // Asked for more: the client took what it had, or has room for it.
        self.clock.not_waiting();
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if frame.is_data() => self.clock.waiting(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Watched<B> {
    fn drop(&mut self) {
        if self
            .clock
            .waited()
            .is_some_and(|waited| waited >= self.timeout)
        {
            tracing::warn!(
                tenant = self.label.tenant.as_deref().unwrap_or("-"),
                request_id = self
                    .label
                    .request_id
                    .as_ref()
                    .and_then(|id| id.to_str().ok())
                    .unwrap_or("-"),
                "response cut off: the client took none of it for server.send_timeout ({:?})",
                self.timeout
            );
        }
        // An HTTP/1.1 connection's clock serves its next request.
        self.clock.not_waiting();
    }
}
