//! The engine seam: what the relay keeps that another node may need to see.
//! The token cache and client tokens, which session owns a user, and each
//! user's event stream (its sequence, the fan-out of a batch to the places
//! holding that user's clients). The registry and the façade reach this
//! state only through [`Engine`], so a shared store can replace the
//! in-memory one ([`memory::MemoryEngine`]) without touching them.
//!
//! Every call is batch-sized (one call per read from Rocket.Chat, not per
//! event) and answers with an [`Answer`]: the in-memory engine answers at
//! once, and the shard's hot path must not pay a poll and an allocation per
//! batch for a store that never waits; a store across the network answers
//! [`Answer::Later`] after its round trip.

#[cfg(test)]
pub(crate) mod deferred;
pub(crate) mod history;
pub(crate) mod memory;

use super::cache::Entry;
use crate::rocketchat::{Credentials, Event};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A round trip to a store, still under way.
pub(crate) type Pending<T> = Pin<Box<dyn Future<Output = Result<T, EngineError>> + Send>>;

/// An engine's answer: already known, or after a round trip.
pub(crate) enum Answer<T> {
    /// Known now (in memory: always).
    Now(T),
    /// After a round trip that may fail.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "answered by an engine across the network")
    )]
    Later(Pending<T>),
}

impl<T> Answer<T> {
    /// The answer, waiting for it when it is not known yet.
    pub(crate) async fn get(self) -> Result<T, EngineError> {
        match self {
            Answer::Now(v) => Ok(v),
            Answer::Later(f) => f.await,
        }
    }
}

/// Why the engine could not answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum EngineError {
    /// The store holding the shared state did not answer or refused.
    #[error("the session store is unavailable: {0}")]
    Unavailable(String),
}

/// The events of one read from Rocket.Chat, shared by the fan-out and the
/// history (never copied).
pub type Batch = Arc<[Event]>;

/// Where a client that dropped left off: the epoch of its stream and the
/// last sequence number it processed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Since {
    pub epoch: String,
    pub seq: u64,
}

/// A user's stream as a client joins it.
pub struct Joined {
    /// Changes whenever the numbering could restart (a new process, the
    /// stream ended): a `since` from another epoch cannot be trusted.
    pub epoch: Arc<str>,
    /// The last sequence number given out.
    pub last: u64,
    /// What the client missed, when it said where it left off.
    pub replay: Option<Replay>,
}

/// The answer to a [`Since`].
pub enum Replay {
    /// Everything after it is still held: these batches (each with its
    /// first event's number), covering it.
    Recovered(Vec<(u64, Batch)>),
    /// Another epoch, or older than the history: the client must reload.
    Lost,
}

impl Replay {
    /// The events after `since`, numbered, in order.
    pub(crate) fn events(&self, since: u64) -> impl Iterator<Item = (u64, &Event)> {
        let batches = match self {
            Replay::Recovered(b) => &b[..],
            Replay::Lost => &[],
        };
        batches
            .iter()
            .flat_map(|(first, b)| (*first..).zip(b.iter()))
            .filter(move |(seq, _)| *seq > since)
    }
}

/// The state a relay shares, behind one seam (see the module doc).
pub(crate) trait Engine: Send + Sync + 'static {
    /// The user's login if it has not expired.
    fn live(&self, username: &str) -> Answer<Option<Entry>>;

    /// Extends a live login's idle deadline; the login, unless it expired.
    fn touch(&self, username: &str) -> Answer<Option<Entry>>;

    /// Extends the login's deadline even if it has just passed (connected
    /// clients keep their user's session).
    fn extend(&self, username: &str) -> Answer<()>;

    /// Stores a Rocket.Chat login: a new generation unless the live login
    /// holds this token already; the client token survives it.
    fn install(&self, username: &str, creds: &Credentials) -> Answer<Entry>;

    /// The user whose live login holds this client token.
    fn user_for_client_token(&self, token: &str) -> Answer<Option<String>>;

    /// Users whose logins expire within `within` (or have expired), with
    /// their deadlines.
    fn expiring(&self, within: Duration) -> Answer<Vec<(String, Instant)>>;

    /// Every live login.
    fn logins(&self) -> Answer<Vec<(String, Entry)>>;

    /// Session `session` owns the user from now on (a newer login takes
    /// over from an older one).
    fn claim(&self, username: &str, session: u64) -> Answer<()>;

    /// Session `session` no longer owns the user (if it still did).
    fn release(&self, username: &str, session: u64) -> Answer<()>;

    /// Appends a batch to the user's stream (and its history) and carries
    /// it to the places holding the user's clients other than the caller's:
    /// the sequence number of the batch's first event (the rest follow it,
    /// in order).
    fn publish(&self, username: &str, batch: &Batch) -> Answer<u64>;

    /// A client joins the user's stream: its epoch and last number, and,
    /// given where the client left off, what it missed. Nothing can be
    /// published between this answer and the client's registration (the
    /// shard holds its mailbox), so the replay and the live events meet
    /// with no gap and no overlap.
    fn join(&self, username: &str, since: Option<&Since>) -> Answer<Joined>;

    /// The batches the user's history holds, oldest first (what a backfill
    /// must not deliver twice).
    fn recent(&self, username: &str) -> Answer<Vec<Batch>>;

    /// The user is over (logout, deletion, expiry): its login, its owner and
    /// its stream (with its history) go, so the next stream has a new
    /// epoch; the login it had.
    fn end(&self, username: &str) -> Answer<Option<Entry>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_is_the_same_now_or_later() {
        assert_eq!(Answer::Now(7).get().await.unwrap(), 7);
        let later: Answer<u32> = Answer::Later(Box::pin(async { Ok(7) }));
        assert_eq!(later.get().await.unwrap(), 7);
        let failed: Answer<u32> = Answer::Later(Box::pin(async {
            Err(EngineError::Unavailable("gone".into()))
        }));
        assert!(failed.get().await.is_err());
    }
}
