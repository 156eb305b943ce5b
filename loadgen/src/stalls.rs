//! The machine's own latency floor. One thread per CPU this process may
//! run on, pinned, spins on the monotonic clock and never yields; any gap
//! between two readings is time its CPU ran something else or did not run
//! at all (on a VM, a vCPU the host took away). An event that crosses
//! several threads meets such gaps on the way no matter what the relay
//! does, so a latency tail can only be read against this floor, measured
//! on the same box just before.
//!
//! With every CPU spinning the box is fully busy, so every guest wake-up
//! must preempt a spinner: the floor overstates what guest tasks cost a
//! box that is only partly loaded. Which gaps were the host's and which
//! another guest task's, only a scheduler trace (`perf sched`) tells: on
//! the kernel this was written on, the spinners' own schedstat run-queue
//! wait disagreed with the trace, so it is not reported.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// What one CPU's spinner saw.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Core {
    /// The CPU it was meant to run on.
    pub cpu: usize,
    /// Whether the kernel pinned it there (if not, spinners may share a
    /// CPU and their gaps are each other's).
    pub pinned: bool,
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

/// Spins on `cpu` for `secs`, counting gaps over `threshold`.
fn spin(cpu: usize, secs: Duration, threshold: Duration) -> Core {
    let mut c = Core {
        cpu,
        pinned: pin(cpu),
        ..Core::default()
    };
    let start = Instant::now();
    let mut last = start;
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

/// Pins the calling thread to `cpu`; false if the kernel refused.
fn pin(cpu: usize) -> bool {
    // SAFETY: `set` is a plain bit set on the stack, sized as the call says;
    // CPU_SET checks the index against the set's size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// The CPUs this process may run on (its affinity mask), so that under
/// `taskset` the spinners go where the load would.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: as in `pin`; CPU_ISSET reads within the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&i| libc::CPU_ISSET(i, &set))
            .collect()
    }
}

/// One spinner per allowed CPU, all at once, for `secs`.
pub fn measure(secs: Duration, threshold: Duration) -> Result<Vec<Core>, String> {
    std::thread::scope(|s| {
        let spinners: Vec<_> = allowed_cpus()
            .into_iter()
            .map(|cpu| s.spawn(move || spin(cpu, secs, threshold)))
            .collect();
        spinners
            .into_iter()
            .map(|h| h.join().map_err(|_| "a spinner panicked".to_string()))
            .collect()
    })
}

/// The cores as JSON.
pub fn to_json(cores: &[Core], threshold: Duration) -> Value {
    json!({
        "threshold_ms": threshold.as_secs_f64() * 1e3,
        "cores": cores.iter().map(|c| json!({
            "cpu": c.cpu, "pinned": c.pinned,
            "seconds": c.ran.as_secs_f64(), "gaps": c.gaps, "gaps_over_2ms": c.over_2ms,
            "longest_ms": c.longest.as_secs_f64() * 1e3, "lost_share": c.lost_share(),
        })).collect::<Vec<_>>(),
    })
}

/// One line per core for people.
pub fn describe(cores: &[Core], threshold: Duration) -> String {
    cores
        .iter()
        .map(|c| {
            format!(
                "cpu {}{}: {} gaps over {:.1} ms ({} over 2 ms), longest {:.2} ms, {:.2} % of the time lost",
                c.cpu,
                if c.pinned { "" } else { " (not pinned)" },
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
    fn every_allowed_cpu_reports_pinned_and_loses_no_more_than_it_ran() {
        let r = measure(Duration::from_millis(50), Duration::from_millis(1)).expect("spinners");
        assert!(!r.is_empty());
        for c in &r {
            assert!(c.pinned, "{c:?}");
            assert!(c.ran >= Duration::from_millis(50), "{c:?}");
            assert!(c.lost <= c.ran && c.longest <= c.lost, "{c:?}");
            assert!(c.over_2ms <= c.gaps, "{c:?}");
        }
        let j = to_json(&r, Duration::from_millis(1));
        assert_eq!(j["cores"].as_array().map(Vec::len), Some(r.len()));
    }
}
