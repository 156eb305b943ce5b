//! The in-memory engine: one node keeps everything. Logins sit in the
//! [`TokenCache`]; beside them, one record per user holds the session that
//! owns it and its stream: epoch, last sequence number, history. Every
//! client is on this node, so a batch needs carrying nowhere else.

use super::history::{Bounds, History};
use super::{Answer, Batch, Engine, Joined, Since};
use crate::core::cache::{Entry, TokenCache};
use crate::rocketchat::Credentials;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use dashmap::DashMap;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Everything on this node.
pub(crate) struct MemoryEngine {
    tokens: TokenCache,
    users: DashMap<String, Record>,
    history: Bounds,
}

/// What the engine keeps of a user besides the login: one entry, not one
/// per concern, as the per-user cost is what bounds a node.
struct Record {
    /// The session owning the user (0: none).
    owner: u64,
    /// The stream's epoch: new with each record, so a process restart or a
    /// user's end changes it.
    epoch: Arc<str>,
    /// The stream's last sequence number.
    seq: u64,
    history: History,
}

impl Record {
    fn new() -> Self {
        let bytes: [u8; 9] = rand::rng().random();
        Record {
            owner: 0,
            epoch: URL_SAFE_NO_PAD.encode(bytes).into(),
            seq: 0,
            history: History::default(),
        }
    }
}

impl MemoryEngine {
    /// Empty, with logins that expire after `idle_ttl` without activity
    /// and each user's history kept within `history`.
    pub(crate) fn new(idle_ttl: Duration, history: Bounds) -> Self {
        MemoryEngine {
            tokens: TokenCache::new(idle_ttl),
            users: DashMap::new(),
            history,
        }
    }
}

impl MemoryEngine {
    /// Changes the user's record, made if it has none: the name is copied
    /// once per user, not once per call.
    fn record<T>(&self, username: &str, change: impl FnOnce(&mut Record) -> T) -> T {
        if let Some(mut r) = self.users.get_mut(username) {
            return change(&mut r);
        }
        change(
            &mut self
                .users
                .entry(username.to_string())
                .or_insert_with(Record::new),
        )
    }
}

impl Engine for MemoryEngine {
    fn live(&self, username: &str) -> Answer<Option<Entry>> {
        Answer::Now(self.tokens.live(username))
    }

    fn touch(&self, username: &str) -> Answer<Option<Entry>> {
        Answer::Now(self.tokens.touch(username))
    }

    fn extend(&self, username: &str) -> Answer<()> {
        self.tokens.extend(username);
        Answer::Now(())
    }

    fn install(&self, username: &str, creds: &Credentials) -> Answer<Entry> {
        Answer::Now(self.tokens.install(username, &creds.user_id, &creds.token))
    }

    fn user_for_client_token(&self, token: &str) -> Answer<Option<String>> {
        Answer::Now(self.tokens.user_for_client_token(token))
    }

    fn expiring(&self, within: Duration) -> Answer<Vec<(String, Instant)>> {
        Answer::Now(self.tokens.expiring(within))
    }

    fn logins(&self) -> Answer<Vec<(String, Entry)>> {
        Answer::Now(self.tokens.snapshot())
    }

    fn claim(&self, username: &str, session: u64) -> Answer<()> {
        self.record(username, |r| r.owner = session);
        Answer::Now(())
    }

    fn release(&self, username: &str, session: u64) -> Answer<()> {
        if let Some(mut r) = self.users.get_mut(username) {
            if r.owner == session {
                r.owner = 0;
            }
        }
        Answer::Now(())
    }

    fn publish(&self, username: &str, batch: &Batch) -> Answer<u64> {
        let n = batch.len() as u64;
        let first = self.record(username, |r| {
            let first = r.seq + 1;
            r.seq += n;
            r.history.push(first, batch, self.history);
            first
        });
        Answer::Now(first)
    }

    fn join(&self, username: &str, since: Option<&Since>) -> Answer<Joined> {
        Answer::Now(self.record(username, |r| Joined {
            epoch: Arc::clone(&r.epoch),
            last: r.seq,
            replay: since.map(|s| {
                if *s.epoch == *r.epoch {
                    r.history.since(s.seq, r.seq, self.history.ttl)
                } else {
                    super::Replay::Lost
                }
            }),
        }))
    }

    fn recent(&self, username: &str) -> Answer<Vec<Batch>> {
        Answer::Now(
            self.users
                .get(username)
                .map(|r| r.history.batches())
                .unwrap_or_default(),
        )
    }

    fn end(&self, username: &str) -> Answer<Option<Entry>> {
        self.users.remove(username);
        Answer::Now(self.tokens.remove(username))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(token: &str) -> Credentials {
        Credentials {
            user_id: "u1".into(),
            token: token.into(),
        }
    }

    async fn get<T>(a: Answer<T>) -> T {
        a.get().await.unwrap()
    }

    fn engine() -> MemoryEngine {
        let history = Bounds {
            size: 10,
            ttl: Duration::from_secs(60),
        };
        MemoryEngine::new(Duration::from_secs(60), history)
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_numbers_batches_in_order_and_restarts_after_the_end() {
        let e = engine();
        let event = || crate::rocketchat::Event {
            name: "x",
            data: crate::rocketchat::EventData::raw("{}"),
        };
        let batch = |n| -> Batch { (0..n).map(|_| event()).collect::<Vec<_>>().into() };
        assert_eq!(get(e.publish("alice", &batch(3))).await, 1);
        assert_eq!(get(e.publish("alice", &batch(1))).await, 4);
        assert_eq!(
            get(e.publish("bob", &batch(2))).await,
            1,
            "one stream per user"
        );
        let joined = get(e.join("alice", None)).await;
        assert_eq!((joined.last, joined.replay.is_none()), (4, true));
        let since = |epoch: &str, seq| Since {
            epoch: epoch.into(),
            seq,
        };
        let back = get(e.join("alice", Some(&since(&joined.epoch, 1)))).await;
        let seqs: Vec<u64> = back.replay.unwrap().events(1).map(|(s, _)| s).collect();
        assert_eq!(seqs, vec![2, 3, 4]);
        let other = get(e.join("alice", Some(&since("another", 1)))).await;
        assert!(matches!(other.replay, Some(super::super::Replay::Lost)));
        get(e.install("alice", &creds("t1"))).await;
        let ended = get(e.end("alice")).await;
        assert_eq!(ended.map(|e| e.rc_token).as_deref(), Some("t1"));
        assert!(get(e.live("alice")).await.is_none());
        assert_eq!(get(e.publish("alice", &batch(1))).await, 1);
        let anew = get(e.join("alice", None)).await;
        assert_ne!(anew.epoch, joined.epoch, "a new stream, a new epoch");
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_session_does_not_release_a_newer_ones_claim() {
        let e = engine();
        get(e.claim("alice", 1)).await;
        get(e.claim("alice", 2)).await;
        get(e.release("alice", 1)).await;
        assert_eq!(e.users.get("alice").map(|r| r.owner), Some(2));
        get(e.release("alice", 2)).await;
        assert_eq!(e.users.get("alice").map(|r| r.owner), Some(0));
    }
}
