//! Whose tail is it? The load's clients share the machine with rcsim and
//! the relay, so a client thread that waits for a core delays every event
//! it holds at once. A relay-side stall delays users of every client thread
//! alike (users go to client threads by index, to relay shards by a hash of
//! the name), so a burst of slow events that sits on one client thread is
//! the load generator's own scheduling delay, not the relay's.

/// Latency above which a sample counts as tail (the p99 target).
pub const OVER_US: u64 = 2_000;
/// Bursts are counted per window of emit time.
const WINDOW_US: u64 = 100_000;
/// A window with fewer tail samples is not a burst.
const MIN_BURST: usize = 20;
/// Share of a burst's samples one thread must hold to own it.
const OWNED: f64 = 0.9;

/// Of the tail samples (emit times in µs, one list per client thread):
/// how many there are, and how many sit in bursts owned by one thread.
pub fn single_thread_bursts(by_thread: &[Vec<u64>]) -> (usize, usize) {
    let mut windows: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
    for (t, emits) in by_thread.iter().enumerate() {
        for e in emits {
            let w = windows
                .entry(e / WINDOW_US)
                .or_insert_with(|| vec![0; by_thread.len()]);
            w[t] += 1;
        }
    }
    let total = by_thread.iter().map(Vec::len).sum();
    let owned = windows
        .values()
        .map(|counts| {
            let n: usize = counts.iter().sum();
            let top = counts.iter().copied().max().unwrap_or(0);
            if n >= MIN_BURST && top as f64 >= OWNED * n as f64 {
                n
            } else {
                0
            }
        })
        .sum();
    (total, owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_on_one_thread_is_owned_and_a_shared_one_is_not() {
        // 0.05 s: 30 slow events all on thread 0; 0.35 s: 40 spread evenly.
        let mut t0: Vec<u64> = (0..30).map(|i| 50_000 + i).collect();
        let mut t1 = vec![];
        for i in 0..20 {
            t0.push(350_000 + i);
            t1.push(350_000 + i);
        }
        // A few stragglers that make no burst.
        t1.extend([900_000, 1_900_000]);
        assert_eq!(single_thread_bursts(&[t0, t1]), (72, 30));
        assert_eq!(single_thread_bursts(&[]), (0, 0));
    }
}
