//! A CPU burner for one experiment: does the relay's tail come from its
//! place on the events' path or from the CPU it takes on a shared box?
//! Run beside the direct mode, it takes about what the relay takes (each
//! thread spins, then sleeps, in short slices as event handling does)
//! without touching any event.

use std::time::{Duration, Instant};

/// Burns on `threads` threads for `secs`: spin `spin`, sleep `sleep`, over
/// and over. Returns the CPU share one thread aimed at.
pub fn run(threads: usize, spin: Duration, sleep: Duration, secs: Duration) -> f64 {
    let end = Instant::now() + secs;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(move || {
                while Instant::now() < end {
                    let t = Instant::now();
                    while t.elapsed() < spin {
                        std::hint::spin_loop();
                    }
                    std::thread::sleep(sleep);
                }
            });
        }
    });
    spin.as_secs_f64() / (spin + sleep).as_secs_f64().max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_stops_on_time() {
        let t = Instant::now();
        let share = run(
            2,
            Duration::from_micros(100),
            Duration::from_micros(300),
            Duration::from_millis(50),
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!((share - 0.25).abs() < 1e-9);
    }
}
