//! A user's recent events, bounded by count and age, for clients that come
//! back after a drop: what they missed is replayed if the history still
//! reaches back to it. Batches are kept as published (shared with the
//! fan-out, not copied), so an event costs its payload once.

use super::{Batch, Replay};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// How much history to keep.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    /// At most this many events (0: none).
    pub size: usize,
    /// None older than this.
    pub ttl: Duration,
}

/// One user's history.
#[derive(Default)]
pub(crate) struct History {
    /// Each batch with the sequence number of its first event and when it
    /// was published, oldest first.
    batches: VecDeque<(u64, Instant, Batch)>,
    /// Events held, over all batches.
    held: usize,
}

impl History {
    /// Keeps a batch whose first event is `first`, then drops what is past
    /// the bounds (whole batches, oldest first).
    pub(crate) fn push(&mut self, first: u64, batch: &Batch, bounds: Bounds) {
        if bounds.size == 0 {
            return;
        }
        self.batches
            .push_back((first, Instant::now(), Batch::clone(batch)));
        self.held += batch.len();
        while self.held > bounds.size {
            self.pop();
        }
        self.expire(bounds.ttl);
    }

    /// What follows `since` up to `last` (the stream's last sequence
    /// number), if the history still holds all of it.
    pub(crate) fn since(&mut self, since: u64, last: u64, ttl: Duration) -> Replay {
        if since > last {
            // Numbers this stream never gave out: another stream's.
            return Replay::Lost;
        }
        if since == last {
            return Replay::Recovered(vec![]);
        }
        self.expire(ttl);
        match self.batches.front() {
            Some((first, ..)) if *first <= since + 1 => {}
            _ => return Replay::Lost,
        }
        let batches = self
            .batches
            .iter()
            .filter(|(first, _, b)| first + b.len() as u64 > since)
            .map(|(first, _, b)| (*first, Batch::clone(b)))
            .collect();
        Replay::Recovered(batches)
    }

    /// The batches held, oldest first.
    pub(crate) fn batches(&self) -> Vec<Batch> {
        self.batches
            .iter()
            .map(|(_, _, b)| Batch::clone(b))
            .collect()
    }

    fn expire(&mut self, ttl: Duration) {
        let now = Instant::now();
        while self
            .batches
            .front()
            .is_some_and(|(_, at, _)| now.duration_since(*at) > ttl)
        {
            self.pop();
        }
    }

    fn pop(&mut self) {
        if let Some((_, _, b)) = self.batches.pop_front() {
            self.held -= b.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rocketchat::{Event, EventData};

    fn batch(n: usize) -> Batch {
        (0..n)
            .map(|i| Event {
                name: "x",
                data: EventData::raw(&i.to_string()),
            })
            .collect::<Vec<_>>()
            .into()
    }

    /// The sequence numbers a replay from `since` carries.
    fn replayed(r: &Replay, since: u64) -> Option<Vec<u64>> {
        match r {
            Replay::Recovered(_) => Some(r.events(since).map(|(seq, _)| seq).collect()),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn it_replays_what_it_still_holds_and_says_so_when_it_does_not() {
        let bounds = Bounds {
            size: 5,
            ttl: Duration::from_secs(60),
        };
        let mut h = History::default();
        h.push(1, &batch(2), bounds); // 1, 2
        h.push(3, &batch(3), bounds); // 3, 4, 5
        let ttl = bounds.ttl;
        // (since, last, what is replayed: None for lost)
        let cases: [(u64, u64, Option<Vec<u64>>); 6] = [
            (0, 5, Some(vec![1, 2, 3, 4, 5])),
            (1, 5, Some(vec![2, 3, 4, 5])),
            (3, 5, Some(vec![4, 5])),
            (5, 5, Some(vec![])),
            (6, 5, None),
            (4, 5, Some(vec![5])),
        ];
        for (since, last, want) in cases {
            assert_eq!(
                replayed(&h.since(since, last, ttl), since),
                want,
                "since {since}"
            );
        }
        h.push(6, &batch(1), bounds); // over 5: the batch 1, 2 goes
        assert_eq!(replayed(&h.since(0, 6, ttl), 0), None, "1 is gone");
        assert_eq!(replayed(&h.since(2, 6, ttl), 2), Some(vec![3, 4, 5, 6]));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(replayed(&h.since(5, 6, ttl), 5), None, "too old");
        assert_eq!(
            replayed(&h.since(6, 6, ttl), 6),
            Some(vec![]),
            "nothing missed"
        );
        assert_eq!(h.held, 0);
    }

    #[test]
    fn size_zero_keeps_nothing() {
        let mut h = History::default();
        let bounds = Bounds {
            size: 0,
            ttl: Duration::from_secs(60),
        };
        h.push(1, &batch(3), bounds);
        assert!(h.batches.is_empty());
        assert!(matches!(h.since(0, 3, bounds.ttl), Replay::Lost));
    }
}
