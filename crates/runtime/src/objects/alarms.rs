//! A tenant version's alarm scheduler: waits for the earliest alarm, runs it as an event
//! of its object, and settles it (done, or retried later) in the tenant's alarm table.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use outpost_bindings::objects::{
    ALARM_ATTEMPT_HEADER, ALARM_RETRIES, AlarmIndex, DueAlarm, EVENT_HEADER, NextAlarm,
};
use tokio::sync::Semaphore;

use super::TenantObjects;

/// How long to wait before reading the alarm table again after it failed.
const TABLE_RETRY: Duration = Duration::from_secs(5);
/// A tenant's alarms running at once, at most (and at most half its `live_objects`, so
/// requests find room too). A burst (10,000 alarms set for the same second, or due
/// together after the node was down) runs this many at a time, the rest as these finish,
/// instead of all at once against the tenant's live-objects limit and failing into retries.
pub(crate) const ALARMS_AT_ONCE: usize = 32;

/// Starts `objects`' scheduler on `runtime`.
pub(super) fn start(objects: &Arc<TenantObjects>, runtime: Option<&tokio::runtime::Handle>) {
    let instances = objects.version.instances();
    let Some(runtime) = runtime else {
        return;
    };
    let alarms = match instances.bindings.objects.alarms() {
        Ok(alarms) => alarms,
        Err(error) => {
            tracing::error!(tenant = %instances.name, "alarms cannot run: {error}");
            return;
        }
    };
    let task = runtime.spawn(schedule(Arc::downgrade(objects), alarms));
    if let Ok(mut slot) = objects.alarms.lock() {
        *slot = Some(task.abort_handle());
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn schedule(objects: Weak<TenantObjects>, alarms: Arc<AlarmIndex>) {
    let (tenant, at_once) = match objects.upgrade() {
        Some(objects) => {
            let instances = objects.version.instances();
            let half = (instances.limits.live_objects as usize).div_ceil(2);
            (instances.name.clone(), half.clamp(1, ALARMS_AT_ONCE))
        }
        None => return,
    };
    // Events that were running when the node stopped run again.
    if let Err(error) = alarms.release_claims().await {
        tracing::warn!(%tenant, "alarms: {error}");
    }
    let running = Arc::new(Semaphore::new(at_once));
    loop {
        // Claimed only with a free place, so a waiting alarm stays unclaimed.
        let Ok(place) = running.clone().acquire_owned().await else {
            return;
        };
        match alarms.next().await {
            Ok(NextAlarm::None) => {
                drop(place);
                alarms.changed(Duration::from_secs(3600)).await;
            }
            Ok(NextAlarm::At(at_ms)) => {
                drop(place);
                let wait = Duration::from_millis(at_ms.saturating_sub(now_ms()).max(0) as u64);
                alarms.changed(wait).await;
            }
            Ok(NextAlarm::Due(due)) => {
                let Some(objects) = objects.upgrade() else {
                    return;
                };
                let alarms = alarms.clone();
                tokio::spawn(async move {
                    fire(objects, alarms, due).await;
                    drop(place);
                });
            }
            Err(error) => {
                drop(place);
                tracing::warn!(%tenant, "alarms: reading the alarm table failed: {error}");
                alarms.changed(TABLE_RETRY).await;
            }
        }
    }
}

/// Runs one due alarm as its object's event, then settles it.
async fn fire(objects: Arc<TenantObjects>, alarms: Arc<AlarmIndex>, due: DueAlarm) {
    let instances = objects.version.instances();
    let tenant = instances.name.clone();
    let request_id: Arc<str> = Arc::from(format!(
        "alarm-{}-{}",
        due.id.get(..16).unwrap_or(&due.id),
        due.attempt
    ));
    let Some(namespace) = instances
        .bindings
        .objects
        .namespace_of_class(&due.class)
        .cloned()
    else {
        tracing::warn!(%tenant, request_id = %request_id, class = %due.class,
            "alarm dropped: the tenant no longer declares the class");
        let _ = alarms.settle(&due, true).await;
        return;
    };
    let id = match namespace.key.parse(&due.id, &namespace.class) {
        Ok(id) => id,
        Err(error) => {
            tracing::warn!(%tenant, request_id = %request_id, "alarm dropped: {error}");
            let _ = alarms.settle(&due, true).await;
            return;
        }
    };
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri("http://object/alarm")
        .header(EVENT_HEADER, "alarm")
        .header(ALARM_ATTEMPT_HEADER, due.attempt)
        .body(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
    let Ok(request) = request else {
        return;
    };
    let response = objects
        .event(namespace, id, request_id.clone(), request)
        .await;
    let status = response.status();
    // The body is the object's business; reading it lets its event finish.
    let _ = response.into_body().collect().await;
    let succeeded = status.is_success();
    match alarms.settle(&due, succeeded).await {
        Ok(None) if succeeded => {}
        Ok(None) => tracing::error!(%tenant, request_id = %request_id, object = %id,
            "alarm given up after {ALARM_RETRIES} retries; last status {}", status.as_u16()),
        Ok(Some(retry_at)) => tracing::warn!(%tenant, request_id = %request_id, object = %id,
            "alarm failed with status {}; retried in {} ms", status.as_u16(), retry_at - now_ms()),
        Err(error) => tracing::warn!(%tenant, request_id = %request_id, object = %id,
            "alarm ran, but settling it failed (it may run again): {error}"),
    }
}
