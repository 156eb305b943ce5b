//! The token cache: `username → Entry`. A new Rocket.Chat login makes a new
//! generation; an entry expires after `idle_ttl` without activity (backend
//! logins and connected clients count as activity). Client tokens map back
//! to usernames. Never hold a map reference across an `.await`.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use dashmap::DashMap;
use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
// tokio's clock, so expiry can be tested on a paused clock; it is the
// monotonic clock otherwise.
use tokio::time::Instant;

/// One logged-in user.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Rocket.Chat `_id`.
    pub rc_user_id: String,
    /// Rocket.Chat token (never logged).
    pub rc_token: String,
    /// Bumped by each new Rocket.Chat login.
    pub generation: u64,
    /// Idle deadline.
    pub expires_at: Instant,
    /// The token imrelay gave the backend for the user's clients.
    pub client_token: String,
}

impl Entry {
    /// The deadline as wall-clock time, for APIs.
    pub fn expires_at_system(&self) -> SystemTime {
        let now = Instant::now();
        SystemTime::now() + self.expires_at.saturating_duration_since(now)
    }

    /// The Rocket.Chat credentials.
    pub fn credentials(&self) -> crate::rocketchat::Credentials {
        crate::rocketchat::Credentials {
            user_id: self.rc_user_id.clone(),
            token: self.rc_token.clone(),
        }
    }
}

/// The cache.
pub struct TokenCache {
    entries: DashMap<String, Entry>,
    clients: DashMap<String, String>,
    generation: AtomicU64,
    ttl: Duration,
}

fn new_client_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

impl TokenCache {
    /// An empty cache with an idle TTL.
    pub fn new(ttl: Duration) -> Self {
        TokenCache {
            entries: DashMap::new(),
            clients: DashMap::new(),
            generation: AtomicU64::new(0),
            ttl,
        }
    }

    /// The entry if it has not expired.
    pub fn live(&self, username: &str) -> Option<Entry> {
        let e = self.entries.get(username)?.clone();
        (e.expires_at > Instant::now()).then_some(e)
    }

    /// Extends the idle deadline; returns the entry.
    pub fn touch(&self, username: &str) -> Option<Entry> {
        let mut e = self.entries.get_mut(username)?;
        let now = Instant::now();
        if e.expires_at <= now {
            return None;
        }
        e.expires_at = now + self.ttl;
        Some(e.clone())
    }

    /// Extends an entry's deadline even if it has just passed (connected
    /// clients keep their user's session).
    pub fn extend(&self, username: &str) {
        if let Some(mut e) = self.entries.get_mut(username) {
            e.expires_at = Instant::now() + self.ttl;
        }
    }

    /// Stores a Rocket.Chat login: the same generation, extended, when the
    /// live entry already holds this token (a session resumed with it),
    /// else a new generation. The client token survives a generation change
    /// (clients stay connected across it).
    pub fn install(&self, username: &str, rc_user_id: &str, rc_token: &str) -> Entry {
        if let Some(e) = self.touch(username).filter(|e| e.rc_token == rc_token) {
            return e;
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let client_token = self
            .entries
            .get(username)
            .filter(|e| e.expires_at > Instant::now())
            .map(|e| e.client_token.clone())
            .unwrap_or_else(new_client_token);
        let entry = Entry {
            rc_user_id: rc_user_id.to_string(),
            rc_token: rc_token.to_string(),
            generation,
            expires_at: Instant::now() + self.ttl,
            client_token: client_token.clone(),
        };
        if let Some(old) = self.entries.insert(username.to_string(), entry.clone()) {
            if old.client_token != client_token {
                self.clients.remove(&old.client_token);
            }
        }
        self.clients.insert(client_token, username.to_string());
        entry
    }

    /// Removes a user's entry (and its client token).
    pub fn remove(&self, username: &str) -> Option<Entry> {
        let (_, e) = self.entries.remove(username)?;
        self.clients.remove(&e.client_token);
        Some(e)
    }

    /// The user a client token belongs to, if its entry is live.
    pub fn user_for_client_token(&self, token: &str) -> Option<String> {
        let username = self.clients.get(token)?.clone();
        self.live(&username).map(|_| username)
    }

    /// Users whose entries expire within `within` (or have expired), with
    /// their deadlines.
    pub fn expiring(&self, within: Duration) -> Vec<(String, Instant)> {
        let deadline = Instant::now() + within;
        self.entries
            .iter()
            .filter(|e| e.expires_at <= deadline)
            .map(|e| (e.key().clone(), e.expires_at))
            .collect()
    }

    /// All live entries.
    pub fn snapshot(&self) -> Vec<(String, Entry)> {
        let now = Instant::now();
        self.entries
            .iter()
            .filter(|e| e.expires_at > now)
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// Number of entries, live or not yet swept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn generations_client_tokens_and_expiry() {
        let c = TokenCache::new(Duration::from_secs(3600));
        let a = c.install("alice", "u1", "t1");
        assert_eq!(a.client_token.len(), 43);
        assert_eq!(
            c.user_for_client_token(&a.client_token).as_deref(),
            Some("alice")
        );
        let same = c.install("alice", "u1", "t1");
        assert_eq!(
            same.generation, a.generation,
            "a resumed token is the same login"
        );
        let b = c.install("alice", "u1", "t2");
        assert!(b.generation > a.generation);
        assert_eq!(
            b.client_token, a.client_token,
            "clients survive a new generation"
        );
        assert!(c.live("alice").is_some(), "live until the TTL passes");
        tokio::time::advance(Duration::from_secs(3601)).await;
        assert!(c.live("alice").is_none());
        assert!(
            c.touch("alice").is_none(),
            "an expired entry is not revived"
        );
        let expiring = c.expiring(Duration::ZERO);
        assert_eq!(expiring.len(), 1);
        assert_eq!(expiring[0].0, "alice");
        assert!(c.user_for_client_token(&a.client_token).is_none());
        assert!(c.remove("alice").is_some());
        assert!(c.is_empty());
    }
}
