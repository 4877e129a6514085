//! One live object: the task that owns its instance and runs its events in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use outpost_bindings::objects::{ObjectNamespace, ObjectSelf, ObjectStorage};
use tokio::sync::{Notify, mpsc};
use wasmtime::{AsContextMut, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{Prepared, Proxy};

use super::{Event, ObjectDirectory, ObjectKey, Version};
use crate::error::limit_in;
use crate::guest_state::GuestState;
use crate::scope::{LimitExceeded, LimitHit, RequestScope, ScopeSlot};

/// An object's instance, kept between events.
struct Live {
    /// The tenant version it was built from.
    serial: u64,
    store: Store<GuestState>,
    proxy: Proxy,
    scope: ScopeSlot,
    fuel: u64,
}

/// What the directory and an object's task share.
pub(super) struct Signals {
    /// Asks the task to end once its queue is empty.
    pub retire: Arc<Notify>,
    /// Events queued or running; the task counts each down as it ends.
    pub in_flight: Arc<AtomicUsize>,
}

/// Runs the object at `key` until it has had no event for `idle`.
pub(super) async fn run(
    directory: Arc<ObjectDirectory>,
    key: ObjectKey,
    idle: Duration,
    mut events: mpsc::Receiver<Event>,
    signals: Signals,
) {
    let Signals { retire, in_flight } = signals;
    let mut live: Option<Live> = None;
    loop {
        let event = tokio::select! {
            next = tokio::time::timeout(idle, events.recv()) => match next {
                Ok(Some(event)) => event,
                // The directory holds the sender while the object is listed.
                Ok(None) => break,
                Err(_idle) if directory.retire(&key, &events) => break,
                Err(_idle) => continue,
            },
            // Room is needed for another of the tenant's objects.
            () = retire.notified() => {
                if directory.retire(&key, &events) {
                    break;
                }
                continue;
            }
        };
        let current = match live.take() {
            Some(kept) if kept.serial == event.version.serial => Some(kept),
            replaced => {
                if let Some(mut old) = replaced {
                    tracing::info!(tenant = %key.tenant, object = %key.id, "object replaced by a new version of its tenant");
                    end_event(&mut old).await;
                }
                None
            }
        };
        let started = match current {
            Some(kept) => Ok(kept),
            None => start(&key, &event.version, &event.namespace, &event.scope).await,
        };
        match started {
            Ok(kept) => live = handle(kept, event).await,
            Err(error) => {
                tracing::warn!(tenant = %key.tenant, request_id = %event.scope.id, object = %key.id,
                    "object cannot start: {error:#}");
                let _ = event.reply.send(Err(error));
                event.scope.instance_exited();
            }
        }
        in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    if let Some(mut kept) = live {
        end_event(&mut kept).await;
    }
    tracing::debug!(tenant = %key.tenant, object = %key.id, "object evicted after {idle:?} idle");
}

/// Builds the object's instance from the event's tenant version.
async fn start(
    key: &ObjectKey,
    version: &Version,
    namespace: &Arc<ObjectNamespace>,
    scope: &Arc<RequestScope>,
) -> wasmtime::Result<Live> {
    let started = Instant::now();
    let instances = version.instances();
    let storage = instances.bindings.objects.storage(namespace, key.id)?;
    let object = ObjectSelf {
        namespace: namespace.clone(),
        id: key.id,
        storage,
    };
    let (mut store, slot) = instances.new_store(Some(object))?;
    // Its constructor's work counts against the first event.
    slot.set(Some(scope.clone()));
    let proxy = instances.pre.instantiate_async(&mut store).await?;
    instances
        .meters
        .instantiation
        .observe(started.elapsed().as_secs_f64());
    Ok(Live {
        serial: version.serial,
        store,
        proxy,
        scope: slot,
        fuel: instances.limits.fuel,
    })
}

/// Runs one event; answers the instance to keep, or none when the event ended it.
async fn handle(mut live: Live, event: Event) -> Option<Live> {
    let Event {
        version,
        scope,
        request,
        reply,
        ..
    } = event;
    let outcome = run_event(&mut live, scope.clone(), request, reply).await;
    let meters = &version.instances().meters;
    let left = live.store.get_fuel().unwrap_or(live.fuel);
    meters.fuel.inc_by(live.fuel.saturating_sub(left));
    let kept = match outcome {
        Ok(()) => {
            end_event(&mut live).await;
            Some(live)
        }
        Err(error) => {
            let hit = scope.limit_hit().or_else(|| limit_in(&error));
            match hit {
                Some(hit) => {
                    scope.hit(hit);
                    tracing::warn!(tenant = %scope.tenant, request_id = %scope.id, limit = hit.as_str(),
                        "object stopped: {}", LimitExceeded(hit));
                }
                None => {
                    tracing::warn!(tenant = %scope.tenant, request_id = %scope.id, "object failed: {error:?}")
                }
            }
            end_event(&mut live).await;
            None
        }
    };
    scope.instance_exited();
    kept
}

/// Drives the guest's handler for one request until it returns (its response and body
/// sent), under the event's fuel, CPU budget and deadline.
async fn run_event(
    live: &mut Live,
    scope: Arc<RequestScope>,
    request: crate::GuestRequest,
    reply: futures::channel::oneshot::Sender<Result<crate::GuestResponse, wasmtime::Error>>,
) -> wasmtime::Result<()> {
    live.store.set_fuel(live.fuel)?;
    live.store.set_epoch_deadline(1);
    let deadline = tokio::time::Instant::from_std(scope.deadline);
    live.scope.set(Some(scope.clone()));
    let prepared = Prepared::new(
        live.store.as_context_mut(),
        &live.proxy,
        request,
        GuestState::http,
        reply,
    )?;
    let run = live.store.run_concurrent(async |accessor| {
        prepared
            .run(accessor, tokio::time::sleep_until(deadline))
            .await
    });
    // The epoch callback stops a guest that computes past the deadline; this stops one
    // waiting on I/O.
    let responded = match tokio::time::timeout_at(deadline, run).await {
        Ok(result) => result??,
        Err(_elapsed) => false,
    };
    live.scope.set(None);
    // A guest that computed through an epoch tick holds one of the tenant's lanes until
    // its next host call: an idle object must not keep it from the tenant's requests.
    live.store.data().lane.release();
    if responded {
        Ok(())
    } else {
        Err(scope.hit(LimitHit::Timeout).into())
    }
}

/// Ends the event in the object's storage: a transaction left open is rolled back (the
/// database connection outlives the instance, which is dropped after this when it ends).
async fn end_event(live: &mut Live) {
    if let Some(object) = &live.store.data().object {
        let storage: &ObjectStorage = &object.storage;
        storage.end_event().await;
    }
}
