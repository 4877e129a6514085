//! Running Durable Objects: one live instance per object, one event at a time.
//!
//! The node's [`ObjectDirectory`] maps each live object (tenant, class, id) to the task
//! that owns its instance ([`actor`]). A request for an object is queued to that task, or
//! starts it; the task runs events one after another on the same instance, so the
//! object's memory lives across events and a read-modify-write is never interleaved.
//! The task ends (and the instance with it) after the class's idle time, when an event
//! hits a limit or traps, and when an event comes from a newer version of the tenant (a
//! deploy), whose instance it then builds instead.

mod actor;
mod alarms;
mod sockets;

pub use sockets::ClaimedSocket;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::channel::oneshot;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use outpost_bindings::EdgeResult;
use outpost_bindings::objects::{
    Caller, ObjectId, ObjectNamespace, ObjectRouter, ObjectSockets, SocketMessage, SocketOwner,
};
use tokio::sync::{Notify, mpsc};
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::ProxyHandler;

use crate::error::{Failure, classify};
use crate::instance::TenantInstances;
use crate::scope::{LimitHit, RequestScope};
use crate::tenant::{GuestRequest, GuestResponse};

/// Events waiting for one object; past this, requests are answered 503 at once rather
/// than queued behind a hot object without bound.
pub const OBJECT_QUEUE_DEPTH: usize = 256;

/// The header on every answer the node gives for an object that did not answer itself:
/// why (`overloaded`, `cpu`, `memory`, `timeout`, `error`, `unavailable`).
pub const OBJECT_FAILURE_HEADER: &str = "outpost-object-failure";

/// After an event fails, how long to wait for the object task's verdict.
const EXIT_VERDICT_WAIT: Duration = Duration::from_millis(250);

/// The node's live objects.
#[derive(Default)]
pub struct ObjectDirectory {
    live: Mutex<HashMap<ObjectKey, LiveObject>>,
    /// Each tenant's newest version, which WebSocket events go to.
    routers: Mutex<HashMap<Arc<str>, Weak<TenantObjects>>>,
    sockets: sockets::SocketRegistry,
}

/// A live object, as the directory sees it.
struct LiveObject {
    queue: mpsc::Sender<Event>,
    /// Asks its task to end once its queue is empty (to make room under
    /// `limits.live_objects`).
    retire: Arc<Notify>,
    retiring: bool,
    last_event: Instant,
    /// Events queued or running: idle (a candidate to retire) only at 0. An empty queue
    /// is not enough, as the running event has left it.
    in_flight: Arc<AtomicUsize>,
}

/// Why an event was not queued.
enum Refused {
    /// The object's queue is full.
    Overloaded,
    /// The tenant is at `limits.live_objects` and none of them is idle.
    TooManyLive(u32),
}

/// An object's address on the node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjectKey {
    tenant: Arc<str>,
    class: Arc<str>,
    id: ObjectId,
}

/// One event for an object: a request, from one version of its tenant.
struct Event {
    version: Version,
    namespace: Arc<ObjectNamespace>,
    scope: Arc<RequestScope>,
    request: GuestRequest,
    reply: oneshot::Sender<Result<GuestResponse, wasmtime::Error>>,
}

impl ObjectDirectory {
    /// How many objects are live on the node.
    pub fn live(&self) -> usize {
        self.lock().len()
    }

    /// How many WebSockets of objects are open (or accepted and being opened).
    pub fn sockets_open(&self) -> usize {
        self.sockets.open()
    }

    /// `tenant`'s newest version's router.
    fn router(&self, tenant: &str) -> Option<Arc<TenantObjects>> {
        let routers = self.routers.lock().unwrap_or_else(|e| e.into_inner());
        routers.get(tenant).and_then(Weak::upgrade)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, LiveObject>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `event` for its object, starting the object's task if it is not live.
    /// Sent under the lock, so a task that ends for idleness (which it decides under the
    /// same lock, with its queue empty) never drops an event. A tenant at `cap` live
    /// objects makes room by retiring its least recently used idle one.
    fn send(self: &Arc<Self>, key: ObjectKey, event: Event, cap: u32) -> Result<(), Refused> {
        let mut live = self.lock();
        let event = match live.get_mut(&key) {
            Some(object) => match object.queue.try_send(event) {
                Ok(()) => {
                    object.last_event = Instant::now();
                    object.in_flight.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
                Err(mpsc::error::TrySendError::Full(_)) => return Err(Refused::Overloaded),
                // Its task ended without taking itself out (it panicked): start anew.
                Err(mpsc::error::TrySendError::Closed(event)) => event,
            },
            None => event,
        };
        let staying = live
            .iter()
            .filter(|(other, object)| other.tenant == key.tenant && !object.retiring)
            .count();
        if staying >= cap as usize {
            let idle = live
                .iter_mut()
                .filter(|(other, object)| {
                    other.tenant == key.tenant
                        && !object.retiring
                        && object.in_flight.load(Ordering::SeqCst) == 0
                })
                .min_by_key(|(_, object)| object.last_event);
            let Some((_, victim)) = idle else {
                return Err(Refused::TooManyLive(cap));
            };
            victim.retiring = true;
            victim.retire.notify_one();
        }
        let (queue, events) = mpsc::channel(OBJECT_QUEUE_DEPTH);
        let idle = event.namespace.idle_timeout;
        // A fresh queue has room for the first event.
        let _ = queue.try_send(event);
        let retire = Arc::new(Notify::new());
        let in_flight = Arc::new(AtomicUsize::new(1));
        live.insert(
            key.clone(),
            LiveObject {
                queue,
                retire: retire.clone(),
                retiring: false,
                last_event: Instant::now(),
                in_flight: in_flight.clone(),
            },
        );
        let signals = actor::Signals { retire, in_flight };
        tokio::spawn(actor::run(self.clone(), key, idle, events, signals));
        Ok(())
    }

    /// Takes `key` out of the directory if no event is waiting for it; called by its task,
    /// which ends when this returns true.
    fn retire(&self, key: &ObjectKey, events: &mpsc::Receiver<Event>) -> bool {
        let mut live = self.lock();
        if !events.is_empty() {
            // Busy again: it stays, and counts again.
            if let Some(object) = live.get_mut(key) {
                object.retiring = false;
            }
            return false;
        }
        live.remove(key);
        true
    }
}

/// One version of a tenant: events it sends run on instances of this version.
#[derive(Clone)]
struct Version {
    /// Tells versions apart (a deploy makes a new one).
    serial: u64,
    handler: ProxyHandler<TenantInstances>,
}

impl Version {
    fn instances(&self) -> &TenantInstances {
        self.handler.state()
    }
}

/// A tenant version's objects router; the [`crate::Tenant`] holds it, its bindings reach
/// it through a `Weak`, so a replaced version's router goes with it.
pub(crate) struct TenantObjects {
    version: Version,
    directory: Arc<ObjectDirectory>,
    /// The version's alarm scheduler, stopped with it.
    alarms: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for TenantObjects {
    fn drop(&mut self) {
        if let Some(scheduler) = self.alarms.get_mut().ok().and_then(Option::take) {
            scheduler.abort();
        }
    }
}

impl TenantObjects {
    /// The objects router of a version; its alarms are scheduled on `runtime` (none
    /// without one: a node that only checks its config).
    pub(crate) fn new(
        handler: ProxyHandler<TenantInstances>,
        directory: Arc<ObjectDirectory>,
        runtime: Option<&tokio::runtime::Handle>,
    ) -> Arc<TenantObjects> {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let objects = Arc::new(TenantObjects {
            version: Version {
                serial: SERIAL.fetch_add(1, Ordering::Relaxed),
                handler,
            },
            directory,
            alarms: Mutex::new(None),
        });
        alarms::start(&objects, runtime);
        let tenant = objects.version.instances().name.clone();
        objects
            .directory
            .routers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant, Arc::downgrade(&objects));
        objects
    }

    pub(crate) fn directory(&self) -> Arc<ObjectDirectory> {
        self.directory.clone()
    }

    /// Runs `request` as an event of object `id`; answers its response, or the node's
    /// for an object that failed or is overloaded.
    async fn event(
        &self,
        namespace: Arc<ObjectNamespace>,
        id: ObjectId,
        request_id: Arc<str>,
        request: GuestRequest,
    ) -> GuestResponse {
        let instances = self.version.instances();
        let scope = Arc::new(RequestScope::new(
            instances.name.clone(),
            request_id,
            instances.limits.timeout,
            instances.limits.cpu,
            None,
        ));
        let key = ObjectKey {
            tenant: instances.name.clone(),
            class: namespace.class.clone(),
            id,
        };
        let (reply, response) = oneshot::channel();
        let event = Event {
            version: self.version.clone(),
            namespace,
            scope: scope.clone(),
            request,
            reply,
        };
        match self
            .directory
            .send(key, event, instances.limits.live_objects)
        {
            Ok(()) => {}
            Err(Refused::Overloaded) => {
                tracing::warn!(tenant = %scope.tenant, request_id = %scope.id,
                    object = %id, "object overloaded: {OBJECT_QUEUE_DEPTH} events waiting");
                return busy(format!(
                    "object overloaded: {OBJECT_QUEUE_DEPTH} events are waiting for it; shard hot keys over more objects"
                ));
            }
            Err(Refused::TooManyLive(cap)) => {
                tracing::warn!(tenant = %scope.tenant, request_id = %scope.id,
                    object = %id, "object not started: {cap} live objects (limits.live_objects), none idle");
                return busy(format!(
                    "the tenant has {cap} objects in memory (limits.live_objects), all busy; retry"
                ));
            }
        }
        let error = match response.await {
            Ok(Ok(response)) => return response,
            Ok(Err(error)) => error,
            Err(oneshot::Canceled) => wasmtime::Error::msg("the object ended the event unanswered"),
        };
        scope.wait_for_instance_exit(EXIT_VERDICT_WAIT).await;
        failure_answer(classify(&scope, &error), &scope.id)
    }
}

#[async_trait]
impl ObjectRouter for TenantObjects {
    async fn fetch(
        &self,
        namespace: Arc<ObjectNamespace>,
        id: ObjectId,
        request_id: Option<Arc<str>>,
        _caller: Caller,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, wasmtime_wasi_http::Error> {
        let request_id = request_id.unwrap_or_else(|| Arc::from("-"));
        Ok(self.event(namespace, id, request_id, request).await)
    }

    fn sockets(&self) -> &dyn ObjectSockets {
        self
    }
}

impl ObjectSockets for TenantObjects {
    fn accept(&self, owner: &SocketOwner, tags: Vec<String>) -> EdgeResult<String> {
        let limit = self.version.instances().limits.websockets;
        self.directory.sockets.accept(owner, tags, limit)
    }

    fn send(&self, owner: &SocketOwner, socket: &str, message: SocketMessage) -> EdgeResult<()> {
        self.directory.sockets.send(owner, socket, message)
    }

    fn close(
        &self,
        owner: &SocketOwner,
        socket: &str,
        code: u16,
        reason: String,
    ) -> EdgeResult<()> {
        self.directory.sockets.close(owner, socket, code, reason)
    }

    fn list(&self, owner: &SocketOwner, tag: Option<&str>) -> Vec<String> {
        self.directory.sockets.list(owner, tag)
    }

    fn set_attachment(
        &self,
        owner: &SocketOwner,
        socket: &str,
        attachment: Vec<u8>,
    ) -> EdgeResult<()> {
        self.directory
            .sockets
            .set_attachment(owner, socket, attachment)
    }

    fn attachment(&self, owner: &SocketOwner, socket: &str) -> EdgeResult<Option<Vec<u8>>> {
        self.directory.sockets.attachment(owner, socket)
    }

    fn tags(&self, owner: &SocketOwner, socket: &str) -> EdgeResult<Vec<String>> {
        self.directory.sockets.tags(owner, socket)
    }
}

/// 503 `overloaded`, retry in a second.
fn busy(text: String) -> GuestResponse {
    let mut refused = answer(StatusCode::SERVICE_UNAVAILABLE, "overloaded", text);
    refused
        .headers_mut()
        .insert(http::header::RETRY_AFTER, http::HeaderValue::from(1));
    refused
}

/// What the caller gets when the object did not answer.
fn failure_answer(failure: Failure, request_id: &str) -> GuestResponse {
    match failure {
        Failure::Limit(LimitHit::Cpu) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "cpu",
            "object stopped: cpu limit exceeded; it starts again from storage".into(),
        ),
        Failure::Limit(LimitHit::Memory) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "memory",
            "object stopped: memory limit exceeded; it starts again from storage".into(),
        ),
        Failure::Limit(LimitHit::Timeout) => answer(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "object stopped: timeout; it starts again from storage".into(),
        ),
        Failure::Limit(LimitHit::Body) => answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body",
            "request body too large".into(),
        ),
        Failure::NoInstance => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no instance for the object: the node is busy".into(),
        ),
        Failure::GuestError => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "error",
            format!("object failed (request id {request_id}); it starts again from storage"),
        ),
    }
}

fn answer(status: StatusCode, why: &'static str, text: String) -> GuestResponse {
    let body: WasiBody = Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(OBJECT_FAILURE_HEADER, http::HeaderValue::from_static(why));
    response
}
