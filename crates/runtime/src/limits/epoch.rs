//! The hooks wasmtime calls while a guest runs: the epoch callback (deadline, CPU budget,
//! time slicing through lanes) and the call hook (lanes and the CPU meter around host
//! calls).

use std::time::Instant;

use wasmtime::{CallHook, StoreContextMut, UpdateDeadline};

use crate::guest_state::GuestState;
use crate::scope::LimitHit;

/// Each epoch tick while a guest runs: end it if it is past its deadline or CPU budget,
/// otherwise yield to tokio so other requests get the thread.
pub(crate) fn on_epoch_tick(
    store: StoreContextMut<'_, GuestState>,
) -> wasmtime::Result<UpdateDeadline> {
    let Some(scope) = store.data().scope.get() else {
        return Ok(UpdateDeadline::Yield(1));
    };
    if scope.limit_hit().is_some() || Instant::now() >= scope.deadline {
        let hit = scope.limit_hit().unwrap_or(LimitHit::Timeout);
        return Err(scope.hit(hit).into());
    }
    if let Some(budget) = scope.cpu_budget
        && scope.cpu.used() > budget
    {
        return Err(scope.hit(LimitHit::Cpu).into());
    }
    // A long runner: give back its lane, let others run, then queue for a lane of its
    // tenant to go on (see `lanes`). The CPU meter stops meanwhile: whatever runs on this
    // thread is not this guest's CPU time.
    let state = store.data();
    state.lane.release();
    let (lane, lanes) = (state.lane.clone(), state.lanes.clone());
    let meter = state.meter_cpu.then(|| {
        scope.cpu.pause();
        scope.cpu.clone()
    });
    Ok(UpdateDeadline::YieldCustom(
        1,
        Box::pin(async move {
            tokio::task::yield_now().await;
            lane.acquire(&lanes).await;
            // The release that handed us the lane woke us into tokio's LIFO slot, ahead of
            // every queued request: go to the back of the queue before computing again.
            tokio::task::yield_now().await;
            if let Some(meter) = meter {
                meter.resume();
            }
        }),
    ))
}

/// On every host call: give back a lane (the guest may now wait on I/O), and run the CPU
/// meter only while wasm executes.
pub(crate) fn on_call(
    store: StoreContextMut<'_, GuestState>,
    hook: CallHook,
) -> wasmtime::Result<()> {
    let state = store.data();
    if matches!(hook, CallHook::CallingHost) {
        state.lane.release();
    }
    if state.meter_cpu
        && let Some(scope) = state.scope.get()
    {
        match hook {
            CallHook::CallingWasm | CallHook::ReturningFromHost => scope.cpu.resume(),
            CallHook::ReturningFromWasm | CallHook::CallingHost => scope.cpu.pause(),
        }
    }
    Ok(())
}
