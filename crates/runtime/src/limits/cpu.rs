//! CPU time a guest spends, measured on the OS thread's CPU clock.
//!
//! Wall time overcounts when the OS deschedules a thread and fuel is an abstract unit;
//! CPU milliseconds are what Workers users budget in. The guest only runs inside polls of
//! its store's future, so the meter runs between "entering wasm" and "leaving wasm" (call
//! hooks, and around each epoch yield) and reads `CLOCK_THREAD_CPUTIME_ID` at both ends.
//! Time the guest is suspended (waiting on I/O, or yielded so others can run) is not
//! counted, even when another task then runs on the same thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Accumulated guest CPU time for one request. Shared with the epoch-yield future, which
/// resumes the meter after the guest is polled again, so it lives behind atomics.
#[derive(Debug, Default)]
pub(crate) struct CpuMeter {
    used_ns: AtomicU64,
    /// Thread CPU clock when the meter last started; 0 while stopped.
    started_ns: AtomicU64,
}

impl CpuMeter {
    /// Starts counting (the guest is about to run on this thread).
    pub(crate) fn resume(&self) {
        self.started_ns
            .store(thread_cpu_ns().max(1), Ordering::Relaxed);
    }

    /// Stops counting (the guest is leaving this thread or calling the host).
    pub(crate) fn pause(&self) {
        let started = self.started_ns.swap(0, Ordering::Relaxed);
        if started != 0 {
            let elapsed = thread_cpu_ns().saturating_sub(started);
            self.used_ns.fetch_add(elapsed, Ordering::Relaxed);
        }
    }

    /// CPU time so far, including the slice running now.
    pub(crate) fn used(&self) -> Duration {
        let started = self.started_ns.load(Ordering::Relaxed);
        let running = if started == 0 {
            0
        } else {
            thread_cpu_ns().saturating_sub(started)
        };
        Duration::from_nanos(self.used_ns.load(Ordering::Relaxed) + running)
    }
}

/// The calling thread's CPU time in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant the
    // kernel always supports for the calling thread.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spins until this thread has used `duration` of CPU (not wall) time.
    fn burn(duration: Duration) {
        let start = thread_cpu_ns();
        let mut x = 0u64;
        while thread_cpu_ns() - start < duration.as_nanos() as u64 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    #[test]
    fn counts_running_time_and_ignores_paused_time() {
        let meter = CpuMeter::default();
        meter.resume();
        burn(Duration::from_millis(30));
        meter.pause();
        let after_run = meter.used();
        assert!(after_run >= Duration::from_millis(30), "{after_run:?}");

        // Sleeping while paused costs no CPU and must not be counted.
        std::thread::sleep(Duration::from_millis(30));
        burn(Duration::from_millis(30));
        assert_eq!(meter.used(), after_run);
    }

    #[test]
    fn used_includes_the_slice_in_progress() {
        let meter = CpuMeter::default();
        meter.resume();
        burn(Duration::from_millis(20));
        assert!(meter.used() >= Duration::from_millis(20));
    }
}
