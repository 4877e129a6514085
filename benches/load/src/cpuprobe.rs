//! `outpost-bench cpu-probe SECONDS`: how much CPU time the kernel charges a thread that
//! the thread's own work did not use. It repeats a fixed ~20 µs of arithmetic and reads
//! the thread's CPU clock (what `limits.cpu` meters) around each window: the work cannot
//! vary, so a window charged far more is time spent on the thread's behalf by someone
//! else (interrupts, on a kernel without `CONFIG_IRQ_TIME_ACCOUNTING`). Pin it to the
//! node's core (`taskset -c 0`) on a busy machine; docs/security.md has a run.

use std::time::{Duration, Instant};

/// Upper edges of the histogram's buckets, in nanoseconds of thread CPU time per window.
const BUCKETS: [u64; 7] = [
    50_000, 100_000, 250_000, 500_000, 1_000_000, 2_000_000, 5_000_000,
];

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn work(iterations: u64) -> u64 {
    let mut x = 1u64;
    for i in 0..iterations {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

/// Runs the probe for `seconds` and prints the histogram and the worst window.
pub fn run(seconds: u64) -> anyhow::Result<()> {
    let start = thread_cpu_ns();
    work(1_000_000);
    let ns_per_iteration = (thread_cpu_ns() - start) as f64 / 1e6;
    let iterations = (20_000.0 / ns_per_iteration.max(0.01)) as u64;
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut counts = [0u64; BUCKETS.len() + 1];
    let (mut worst, mut worst_wall) = (0u64, Duration::ZERO);
    while Instant::now() < end {
        let (cpu, wall) = (thread_cpu_ns(), Instant::now());
        work(iterations);
        let charged = thread_cpu_ns() - cpu;
        let bucket = BUCKETS.iter().position(|&edge| charged < edge);
        counts[bucket.unwrap_or(BUCKETS.len())] += 1;
        if charged > worst {
            (worst, worst_wall) = (charged, wall.elapsed());
        }
    }
    let windows: u64 = counts.iter().sum();
    println!("{windows} windows of ~20 µs of work, by thread CPU time charged:");
    for (i, count) in counts.iter().enumerate() {
        let label = match BUCKETS.get(i) {
            Some(edge) => format!("< {} µs", edge / 1000),
            None => format!(">= {} µs", BUCKETS[BUCKETS.len() - 1] / 1000),
        };
        println!("  {label:>10}: {count}");
    }
    println!(
        "worst: {} µs charged over {} µs of wall clock",
        worst / 1000,
        worst_wall.as_micros()
    );
    Ok(())
}
