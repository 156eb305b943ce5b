//! SignalR stateful reconnect (`docs/protocol/signalr.md` §5.3), the state a
//! connection keeps so that a new transport can take over where a dropped
//! one left off: the sequence ids of both directions and what the client
//! has not acknowledged yet.
//!
//! An event is not buffered as a frame: what was pushed is the user's event
//! `seq`, and the user's history holds the event itself, so an un-acked
//! push costs a few bytes here and a replay writes it again from the
//! history. Only the hub's own sequenced records (completions) are kept as
//! text.

use bytestring::ByteString;
use std::collections::VecDeque;
use std::sync::Arc;

/// Un-acknowledged records past this many make a connection unresumable
/// (its client stopped acking): the bound on what one connection holds.
pub(crate) const MAX_UNACKED: usize = 10_000;

/// A sequenced record the client has not acknowledged.
#[derive(Clone, Debug, PartialEq)]
enum Sent {
    /// The user's event with this `seq`.
    Event(u64),
    /// A hub record, as sent.
    Record(ByteString),
}

/// What a connection needs to resume on a new transport.
#[derive(Debug)]
pub(crate) struct Resumable {
    /// The user's stream the pushes come from.
    pub epoch: Arc<str>,
    /// The last event `seq` pushed.
    pub delivered: u64,
    /// The id our next sequenced record gets.
    next_out: u64,
    /// Ours, from the oldest un-acked id on.
    unacked: VecDeque<Sent>,
    /// The id the client's next sequenced record has.
    next_in: u64,
    /// The highest client id processed.
    last_in: u64,
    /// The highest client id we have acknowledged.
    acked_in: u64,
    /// Too much went un-acked: the state no longer covers it.
    pub overflowed: bool,
}

/// What a resumed transport sends first, in order: the Sequence id, then
/// these, then whatever was published while it was away.
pub(crate) enum Resend {
    /// The user's event with this `seq`, from the history.
    Event(u64),
    /// A hub record as it was sent.
    Record(ByteString),
}

impl Resumable {
    /// A fresh connection on the user's stream `epoch`, which has given out
    /// events up to `delivered`.
    pub(crate) fn new(epoch: Arc<str>, delivered: u64) -> Self {
        Resumable {
            epoch,
            delivered,
            next_out: 1,
            unacked: VecDeque::new(),
            next_in: 1,
            last_in: 0,
            acked_in: 0,
            overflowed: false,
        }
    }

    fn sent(&mut self, what: Sent) {
        if self.overflowed {
            return;
        }
        self.next_out += 1;
        self.unacked.push_back(what);
        if self.unacked.len() > MAX_UNACKED {
            self.overflowed = true;
            self.unacked.clear();
        }
    }

    /// The event `seq` was pushed.
    pub(crate) fn sent_event(&mut self, seq: u64) {
        self.delivered = seq;
        self.sent(Sent::Event(seq));
    }

    /// A hub record (a completion) was sent.
    pub(crate) fn sent_record(&mut self, text: &ByteString) {
        self.sent(Sent::Record(text.clone()));
    }

    /// The client acknowledged everything up to `id`.
    pub(crate) fn acked(&mut self, id: u64) {
        let oldest = self.next_out - self.unacked.len() as u64;
        let done = id.saturating_add(1).saturating_sub(oldest);
        let done = (done as usize).min(self.unacked.len());
        self.unacked.drain(..done);
    }

    /// The client's next sequenced record has id `id` (its Sequence record).
    pub(crate) fn client_sequence(&mut self, id: u64) {
        self.next_in = id;
    }

    /// A sequenced record from the client arrived: whether it is new (one
    /// it replayed after a reconnect that was processed already is not).
    pub(crate) fn received(&mut self) -> bool {
        let id = self.next_in;
        // The client sets where this starts (its Sequence): never overflow.
        self.next_in = self.next_in.saturating_add(1);
        if id <= self.last_in {
            return false;
        }
        self.last_in = id;
        true
    }

    /// The Ack to send, if the client has records we have not acknowledged.
    pub(crate) fn ack_due(&mut self) -> Option<u64> {
        (self.last_in > self.acked_in).then(|| {
            self.acked_in = self.last_in;
            self.last_in
        })
    }

    /// Taking over on a new transport: the id of the first record it sends
    /// (its Sequence), and the records to send again from there. The ids
    /// continue from the last one given out.
    pub(crate) fn resume(&mut self) -> (u64, Vec<Resend>) {
        let first = self.next_out - self.unacked.len() as u64;
        let again = std::mem::take(&mut self.unacked);
        self.next_out = first;
        // Sent anew, they are un-acked anew: the caller sends each through
        // sent_event / sent_record.
        let again = again
            .into_iter()
            .map(|s| match s {
                Sent::Event(seq) => Resend::Event(seq),
                Sent::Record(r) => Resend::Record(r),
            })
            .collect();
        (first, again)
    }

    /// The oldest event `seq` the client may not have: a replay from the
    /// user's history starts after the one before it.
    pub(crate) fn replay_from(&self) -> u64 {
        self.unacked
            .iter()
            .find_map(|s| match s {
                Sent::Event(seq) => Some(*seq),
                Sent::Record(_) => None,
            })
            .unwrap_or(self.delivered + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(r: &Resumable) -> Vec<Sent> {
        r.unacked.iter().cloned().collect()
    }

    #[test]
    fn acks_free_what_they_cover_and_a_resume_sends_the_rest_with_their_ids() {
        let mut r = Resumable::new("e".into(), 10);
        r.sent_event(11); // id 1
        r.sent_record(&"done".into()); // id 2
        r.sent_event(12); // id 3
        r.sent_event(13); // id 4
        r.acked(2);
        assert_eq!(ids(&r), vec![Sent::Event(12), Sent::Event(13)]);
        r.acked(1);
        assert_eq!(ids(&r).len(), 2, "an old ack frees nothing more");
        assert_eq!(r.replay_from(), 12);
        let (first, again) = r.resume();
        assert_eq!(first, 3, "the Sequence names the oldest un-acked id");
        assert!(matches!(again[..], [Resend::Event(12), Resend::Event(13)]));
        for s in [12, 13] {
            r.sent_event(s);
        }
        r.sent_event(14); // id 5: new
        r.acked(5);
        assert!(r.unacked.is_empty());
        assert_eq!(r.replay_from(), 15, "all delivered and acked");
        r.acked(99);
        assert!(r.unacked.is_empty());
    }

    #[test]
    fn the_clients_replayed_records_are_dropped_and_acks_come_once() {
        let mut r = Resumable::new("e".into(), 0);
        assert!(r.received());
        assert!(r.received());
        assert_eq!(r.ack_due(), Some(2));
        assert_eq!(r.ack_due(), None);
        // A new transport: the client replays from its id 2.
        r.client_sequence(2);
        assert!(!r.received(), "2 was processed");
        assert!(r.received(), "3 is new");
        assert_eq!(r.ack_due(), Some(3));
        // A hostile Sequence cannot make the count overflow.
        r.client_sequence(u64::MAX);
        assert!(r.received());
        assert!(!r.received());
    }

    #[test]
    fn a_client_that_never_acks_makes_the_connection_unresumable_not_larger() {
        let mut r = Resumable::new("e".into(), 0);
        for seq in 1..=MAX_UNACKED as u64 + 1 {
            r.sent_event(seq);
        }
        assert!(r.overflowed);
        assert!(r.unacked.is_empty());
    }
}
