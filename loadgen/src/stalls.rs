//! The machine's own latency floor. One thread per core, pinned, spins on
//! the monotonic clock and never yields; any gap between two readings is
//! time its core ran something else or did not run at all (on a VM, a vCPU
//! the host took away). An event that crosses several threads meets such
//! gaps on the way no matter what the relay does, so a latency tail can
//! only be read against this floor, measured on the same box just before.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// What one core's spinner saw.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Core {
    /// Gaps longer than the threshold.
    pub gaps: u64,
    /// Of those, gaps over 2 ms (the p99 target).
    pub over_2ms: u64,
    /// The longest gap.
    pub longest: Duration,
    /// All gaps over the threshold, summed.
    pub lost: Duration,
    /// How long the spinner ran.
    pub ran: Duration,
}

impl Core {
    /// The share of the time lost to gaps.
    pub fn lost_share(&self) -> f64 {
        self.lost.as_secs_f64() / self.ran.as_secs_f64().max(1e-9)
    }
}

/// Spins on `core` for `secs`, counting gaps over `threshold`.
fn spin(core: usize, secs: Duration, threshold: Duration) -> Core {
    pin(core);
    let start = Instant::now();
    let mut last = start;
    let mut c = Core::default();
    loop {
        let now = Instant::now();
        let gap = now - last;
        if gap > threshold {
            c.gaps += 1;
            c.over_2ms += u64::from(gap > Duration::from_millis(2));
            c.longest = c.longest.max(gap);
            c.lost += gap;
        }
        last = now;
        if now - start >= secs {
            c.ran = now - start;
            return c;
        }
    }
}

/// Pins the calling thread to `core`; unpinned (and then only roughly per
/// core) if the kernel refuses.
fn pin(core: usize) {
    // SAFETY: `set` is a plain bit set on the stack, sized as the call says.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// One spinner per core, all at once, for `secs`.
pub fn measure(cores: usize, secs: Duration, threshold: Duration) -> Vec<Core> {
    std::thread::scope(|s| {
        let spinners: Vec<_> = (0..cores)
            .map(|i| s.spawn(move || spin(i, secs, threshold)))
            .collect();
        spinners
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// The cores as JSON.
pub fn to_json(cores: &[Core], threshold: Duration) -> Value {
    json!({
        "threshold_ms": threshold.as_secs_f64() * 1e3,
        "cores": cores.iter().map(|c| json!({
            "seconds": c.ran.as_secs_f64(), "gaps": c.gaps, "gaps_over_2ms": c.over_2ms,
            "longest_ms": c.longest.as_secs_f64() * 1e3, "lost_share": c.lost_share(),
        })).collect::<Vec<_>>(),
    })
}

/// One line per core for people.
pub fn describe(cores: &[Core], threshold: Duration) -> String {
    cores
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "core {i}: {} gaps over {:.1} ms ({} over 2 ms), longest {:.2} ms, {:.2} % of the time lost",
                c.gaps,
                threshold.as_secs_f64() * 1e3,
                c.over_2ms,
                c.longest.as_secs_f64() * 1e3,
                c.lost_share() * 100.0
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_reports_and_loses_no_more_than_it_ran() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let r = measure(cores, Duration::from_millis(50), Duration::from_millis(1));
        assert_eq!(r.len(), cores);
        for c in &r {
            assert!(c.ran >= Duration::from_millis(50), "{c:?}");
            assert!(c.lost <= c.ran && c.longest <= c.lost, "{c:?}");
            assert!(c.over_2ms <= c.gaps, "{c:?}");
        }
        let j = to_json(&r, Duration::from_millis(1));
        assert_eq!(j["cores"].as_array().map(Vec::len), Some(cores));
    }
}
