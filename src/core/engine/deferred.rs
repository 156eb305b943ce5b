//! An engine that answers every call after a round trip, as one across the
//! network does: the in-memory engine's state, reached only when the answer
//! is polled. Each answer comes back sooner than the one asked before it,
//! so nothing but the caller's own ordering keeps them in order. It runs
//! the registry through [`Answer::Later`] in tests.

use super::memory::MemoryEngine;
use super::{Answer, Batch, Engine, Joined, Since};
use crate::core::cache::Entry;
use crate::rocketchat::Credentials;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// [`MemoryEngine`] behind a round trip.
pub(crate) struct Deferred {
    inner: Arc<MemoryEngine>,
    calls: AtomicUsize,
}

impl Deferred {
    pub(crate) fn new(inner: Arc<MemoryEngine>) -> Self {
        Deferred {
            inner,
            calls: AtomicUsize::new(0),
        }
    }

    fn later<T: Send + 'static>(
        &self,
        op: impl FnOnce(&MemoryEngine) -> Answer<T> + Send + 'static,
    ) -> Answer<T> {
        let inner = Arc::clone(&self.inner);
        let turns = 8 - self.calls.fetch_add(1, Ordering::Relaxed) % 8;
        Answer::Later(Box::pin(async move {
            for _ in 0..turns {
                tokio::task::yield_now().await;
            }
            op(&inner).get().await
        }))
    }
}

impl Engine for Deferred {
    fn live(&self, username: &str) -> Answer<Option<Entry>> {
        let u = username.to_string();
        self.later(move |e| e.live(&u))
    }

    fn touch(&self, username: &str) -> Answer<Option<Entry>> {
        let u = username.to_string();
        self.later(move |e| e.touch(&u))
    }

    fn extend(&self, username: &str) -> Answer<()> {
        let u = username.to_string();
        self.later(move |e| e.extend(&u))
    }

    fn install(&self, username: &str, creds: &Credentials) -> Answer<Entry> {
        let (u, c) = (username.to_string(), creds.clone());
        self.later(move |e| e.install(&u, &c))
    }

    fn user_for_client_token(&self, token: &str) -> Answer<Option<String>> {
        let t = token.to_string();
        self.later(move |e| e.user_for_client_token(&t))
    }

    fn expiring(&self, within: Duration) -> Answer<Vec<(String, Instant)>> {
        self.later(move |e| e.expiring(within))
    }

    fn logins(&self) -> Answer<Vec<(String, Entry)>> {
        self.later(|e| e.logins())
    }

    fn claim(&self, username: &str, session: u64) -> Answer<()> {
        let u = username.to_string();
        self.later(move |e| e.claim(&u, session))
    }

    fn release(&self, username: &str, session: u64) -> Answer<()> {
        let u = username.to_string();
        self.later(move |e| e.release(&u, session))
    }

    fn publish(&self, username: &str, batch: &Batch) -> Answer<u64> {
        let (u, batch) = (username.to_string(), Batch::clone(batch));
        self.later(move |e| e.publish(&u, &batch))
    }

    fn join(&self, username: &str, since: Option<&Since>) -> Answer<Joined> {
        let (u, since) = (username.to_string(), since.cloned());
        self.later(move |e| e.join(&u, since.as_ref()))
    }

    fn recent(&self, username: &str) -> Answer<Vec<Batch>> {
        let u = username.to_string();
        self.later(move |e| e.recent(&u))
    }

    fn end(&self, username: &str) -> Answer<Option<Entry>> {
        let u = username.to_string();
        self.later(move |e| e.end(&u))
    }
}
