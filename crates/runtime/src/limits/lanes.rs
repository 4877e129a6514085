//! Fair CPU between tenants for guests that compute for long stretches.
//!
//! tokio schedules tasks, not tenants: eight spinning requests of one tenant would get
//! eight turns for every one a short request of another tenant gets, and with the 1 ms
//! epoch slice that starves everyone else. So a guest that is still computing when an
//! epoch tick arrives (a "long runner"; short requests never see a tick) must hold one of
//! its tenant's lanes to go on. A tenant has half the node's threads as lanes (at least
//! one), handed out first come, first served: its long runners take turns on them, and the
//! rest of the node always has threads for everyone else.
//!
//! A guest gives its lane back at every tick and whenever it calls the host, so a guest
//! waiting on I/O never holds one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A tenant's lanes.
pub(crate) type Lanes = Arc<Semaphore>;

/// Lanes per tenant on this machine: half the threads, at least one.
pub(crate) fn lanes_per_tenant() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The lane one instance holds while it computes, if any.
#[derive(Default)]
pub(crate) struct LaneSlot {
    held: AtomicBool,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl LaneSlot {
    /// Gives the lane back, if held; cheap when not (every host call asks).
    pub(crate) fn release(&self) {
        // A plain load first: almost every host call comes from a guest holding no lane.
        if self.held.load(Ordering::Relaxed) && self.held.swap(false, Ordering::Relaxed) {
            *self.permit.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// Waits for one of `lanes`, then holds it.
    pub(crate) async fn acquire(&self, lanes: &Lanes) {
        // `acquire` fails only on a closed semaphore, which lanes never are; running on
        // without a lane is the harmless fallback.
        if let Ok(permit) = lanes.clone().acquire_owned().await {
            *self.permit.lock().unwrap_or_else(|e| e.into_inner()) = Some(permit);
            self.held.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_lane_is_returned_on_release() {
        let lanes: Lanes = Arc::new(Semaphore::new(1));
        let first = LaneSlot::default();
        let second = Arc::new(LaneSlot::default());
        first.acquire(&lanes).await;
        assert_eq!(lanes.available_permits(), 0);

        let waiter = tokio::spawn({
            let (second, lanes) = (second.clone(), lanes.clone());
            async move { second.acquire(&lanes).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "the second long runner waits for the lane"
        );

        first.release();
        waiter.await.unwrap();
        assert!(second.held.load(Ordering::Relaxed));
        first.release(); // releasing twice is harmless
        second.release();
        assert_eq!(lanes.available_permits(), 1);
    }
}
