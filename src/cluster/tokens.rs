//! The token cache in Redis, shared by every node: a login is a hash that
//! expires after the idle TTL (Redis's own expiry, so a node's clock or
//! death does not keep it), its client token a key that maps back to the
//! user, and a sorted set of deadlines (Redis's clock) for the sweep. The
//! Rocket.Chat token is sealed ([`Seal`]); each change is one script, so
//! two nodes installing the same user's login at once get one generation.
//!
//! Single Redis or Sentinel: the scripts name keys they derive (the client
//! token's), which Redis Cluster does not allow.

use super::seal::Seal;
use crate::core::cache::Entry;
use crate::core::engine::EngineError;
use crate::rocketchat::Credentials;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use rand::Rng;
use redis::aio::ConnectionManager;
use redis::Script;
use std::time::Duration;
use tokio::time::Instant;

/// The login's fields and the ms it has left, or nil.
const LIVE: &str = r"
local f = redis.call('HMGET', KEYS[1], 'uid', 'token', 'gen', 'ct')
if not f[1] then return false end
return {f[1], f[2], f[3], f[4], tostring(redis.call('PTTL', KEYS[1]))}
";

/// Redis's clock in ms, for the deadlines every node compares.
const NOW: &str = r"
local function now()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
";

/// A live login's deadline moved to now + ttl: its fields, or nil.
const TOUCH: &str = r"
local f = redis.call('HMGET', KEYS[1], 'uid', 'token', 'gen', 'ct')
if not f[1] then return false end
local ttl = tonumber(ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', ARGV[3] .. f[4], ttl)
redis.call('ZADD', KEYS[2], now() + ttl, ARGV[1])
return {f[1], f[2], f[3], f[4], ARGV[2]}
";

/// A Rocket.Chat login stored: the live one extended when it holds this
/// token already (by fingerprint), else a new generation keeping the live
/// login's client token.
const INSTALL: &str = r"
local ttl = tonumber(ARGV[6])
local f = redis.call('HMGET', KEYS[1], 'uid', 'token', 'gen', 'ct', 'fp')
local deadline = now() + ttl
if f[1] and f[5] == ARGV[4] then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', ARGV[7] .. f[4], ttl)
  redis.call('ZADD', KEYS[2], deadline, ARGV[1])
  return {f[1], f[2], f[3], f[4], ARGV[6]}
end
local gen = redis.call('INCR', KEYS[3])
local ct = f[4] or ARGV[5]
redis.call('HSET', KEYS[1], 'uid', ARGV[2], 'token', ARGV[3], 'fp', ARGV[4], 'gen', gen, 'ct', ct)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SET', ARGV[7] .. ct, ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], deadline, ARGV[1])
return {ARGV[2], ARGV[3], tostring(gen), ct, ARGV[6]}
";

/// The login removed with its client token and deadline: its fields, or nil.
const END: &str = r"
local f = redis.call('HMGET', KEYS[1], 'uid', 'token', 'gen', 'ct')
redis.call('ZREM', KEYS[2], ARGV[1])
if not f[1] then return false end
redis.call('DEL', KEYS[1], ARGV[2] .. f[4])
return {f[1], f[2], f[3], f[4], '0'}
";

/// Redis's now, then the users (and deadlines) due within ARGV[1] ms, at
/// most ARGV[2] of them.
const EXPIRING: &str = r"
local t = now()
local r = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', t + tonumber(ARGV[1]), 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
table.insert(r, 1, tostring(t))
return r
";

/// The most users one sweep or listing takes: every answer is bounded.
const MAX_LISTED: usize = 100_000;

/// The shared token cache.
pub(crate) struct RedisTokens {
    conn: ConnectionManager,
    seal: Seal,
    ttl: Duration,
    prefix: String,
    live: Script,
    touch: Script,
    install: Script,
    end: Script,
    expiring: Script,
}

fn unavailable(e: redis::RedisError) -> EngineError {
    EngineError::Unavailable(format!("redis: {e}"))
}

fn new_client_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

impl RedisTokens {
    /// Over `conn`, keys under `prefix`, tokens sealed with `secret`,
    /// logins expiring after `ttl` idle.
    pub(crate) fn new(conn: ConnectionManager, prefix: &str, secret: &[u8], ttl: Duration) -> Self {
        let with_now = |body: &str| Script::new(&format!("{NOW}{body}"));
        RedisTokens {
            conn,
            seal: Seal::new(secret),
            ttl,
            prefix: prefix.to_string(),
            live: Script::new(LIVE),
            touch: with_now(TOUCH),
            install: with_now(INSTALL),
            end: Script::new(END),
            expiring: with_now(EXPIRING),
        }
    }

    fn login_key(&self, username: &str) -> String {
        format!("{}login:{username}", self.prefix)
    }

    fn client_prefix(&self) -> String {
        format!("{}ct:", self.prefix)
    }

    fn deadlines_key(&self) -> String {
        format!("{}deadlines", self.prefix)
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis().max(1) as u64
    }

    /// An entry from a script's `{uid, sealed token, generation, client
    /// token, ms left}`.
    fn entry(&self, username: &str, f: Option<Vec<String>>) -> Result<Option<Entry>, EngineError> {
        let Some(f) = f else { return Ok(None) };
        let [uid, sealed, generation, client_token, left] =
            <[String; 5]>::try_from(f).map_err(|_| {
                EngineError::Unavailable("redis: a login record of another shape".into())
            })?;
        let rc_token = self
            .seal
            .open(username, &sealed)
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let left = left.parse::<i64>().unwrap_or(0).max(0) as u64;
        Ok(Some(Entry {
            rc_user_id: uid,
            rc_token,
            generation: generation.parse().unwrap_or(0),
            expires_at: Instant::now() + Duration::from_millis(left),
            client_token,
        }))
    }

    /// The user's login if it has not expired.
    pub(crate) async fn live(&self, username: &str) -> Result<Option<Entry>, EngineError> {
        let f: Option<Vec<String>> = self
            .live
            .key(self.login_key(username))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.entry(username, f)
    }

    /// A live login's idle deadline extended; the login, unless it expired.
    pub(crate) async fn touch(&self, username: &str) -> Result<Option<Entry>, EngineError> {
        let f: Option<Vec<String>> = self
            .touch
            .key(self.login_key(username))
            .key(self.deadlines_key())
            .arg(username)
            .arg(self.ttl_ms())
            .arg(self.client_prefix())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.entry(username, f)
    }

    /// Stores a Rocket.Chat login (see [`INSTALL`]).
    pub(crate) async fn install(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Entry, EngineError> {
        let f: Option<Vec<String>> = self
            .install
            .key(self.login_key(username))
            .key(self.deadlines_key())
            .key(format!("{}generation", self.prefix))
            .arg(username)
            .arg(&creds.user_id)
            .arg(self.seal.seal(username, &creds.token))
            .arg(self.seal.fingerprint(&creds.token))
            .arg(new_client_token())
            .arg(self.ttl_ms())
            .arg(self.client_prefix())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.entry(username, f)?
            .ok_or_else(|| EngineError::Unavailable("redis: the login was not stored".into()))
    }

    /// The user whose live login holds this client token.
    pub(crate) async fn user_for_client_token(
        &self,
        token: &str,
    ) -> Result<Option<String>, EngineError> {
        redis::cmd("GET")
            .arg(format!("{}{token}", self.client_prefix()))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    /// Users whose logins expire within `within` (or have expired: Redis
    /// dropped them), with their deadlines on this node's clock.
    pub(crate) async fn expiring(
        &self,
        within: Duration,
    ) -> Result<Vec<(String, Instant)>, EngineError> {
        let r: Vec<String> = self
            .expiring
            .key(self.deadlines_key())
            .arg(within.as_millis() as u64)
            .arg(MAX_LISTED)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let (now, here) = (
            r.first().and_then(|t| t.parse::<f64>().ok()).unwrap_or(0.0),
            Instant::now(),
        );
        Ok(r[1.min(r.len())..]
            .chunks_exact(2)
            .map(|p| {
                let at = p[1].parse::<f64>().unwrap_or(now) - now;
                let deadline = if at >= 0.0 {
                    here + Duration::from_millis(at as u64)
                } else {
                    here.checked_sub(Duration::from_millis(-at as u64))
                        .unwrap_or(here)
                };
                (p[0].clone(), deadline)
            })
            .collect())
    }

    /// Every live login.
    pub(crate) async fn logins(&self) -> Result<Vec<(String, Entry)>, EngineError> {
        let users: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.deadlines_key())
            .arg(0)
            .arg(MAX_LISTED as i64 - 1)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            if let Some(e) = self.live(&u).await? {
                out.push((u, e));
            }
        }
        Ok(out)
    }

    /// The user's login removed; the login it was.
    pub(crate) async fn remove(&self, username: &str) -> Result<Option<Entry>, EngineError> {
        let f: Option<Vec<String>> = self
            .end
            .key(self.login_key(username))
            .key(self.deadlines_key())
            .arg(username)
            .arg(self.client_prefix())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.entry(username, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RedisServer;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    async fn node(redis: &RedisServer, secret: &[u8], ttl: Duration) -> RedisTokens {
        let client = redis::Client::open(redis.url()).unwrap();
        let conn = ConnectionManager::new(client).await.unwrap();
        RedisTokens::new(conn, "imrelay:", secret, ttl)
    }

    fn creds(token: &str) -> Credentials {
        Credentials {
            user_id: "u1".into(),
            token: token.into(),
        }
    }

    /// Every key and value Redis holds, as text.
    async fn everything(t: &RedisTokens) -> String {
        let mut c = t.conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut c)
            .await
            .unwrap();
        let mut out = keys.join(" ");
        for k in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&k)
                .query_async(&mut c)
                .await
                .unwrap();
            let values: Vec<String> = match kind.as_str() {
                "string" => vec![redis::cmd("GET").arg(&k).query_async(&mut c).await.unwrap()],
                "hash" => redis::cmd("HGETALL")
                    .arg(&k)
                    .query_async(&mut c)
                    .await
                    .unwrap(),
                "zset" => redis::cmd("ZRANGE")
                    .arg(&k)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
                    .unwrap(),
                other => panic!("unexpected {other} at {k}"),
            };
            out.push(' ');
            out.push_str(&values.join(" "));
        }
        out
    }

    #[tokio::test]
    async fn a_login_stored_by_one_node_is_live_on_another_and_sealed_at_rest() {
        let redis = RedisServer::start();
        let ttl = Duration::from_secs(60);
        let (a, b) = (
            node(&redis, SECRET, ttl).await,
            node(&redis, SECRET, ttl).await,
        );
        let first = a.install("alice", &creds("rc-token-1")).await.unwrap();
        let seen = b
            .live("alice")
            .await
            .unwrap()
            .expect("live on the other node");
        assert_eq!(
            (seen.rc_token.as_str(), seen.generation, &seen.client_token),
            ("rc-token-1", first.generation, &first.client_token)
        );
        assert_eq!(
            b.user_for_client_token(&first.client_token)
                .await
                .unwrap()
                .as_deref(),
            Some("alice")
        );
        let again = b.install("alice", &creds("rc-token-1")).await.unwrap();
        assert_eq!(
            again.generation, first.generation,
            "the same token: the same login"
        );
        let newer = b.install("alice", &creds("rc-token-2")).await.unwrap();
        assert!(newer.generation > first.generation);
        assert_eq!(
            newer.client_token, first.client_token,
            "clients stay connected"
        );
        assert_eq!(
            a.live("alice").await.unwrap().unwrap().rc_token,
            "rc-token-2"
        );
        let stored = everything(&a).await;
        assert!(
            !stored.contains("rc-token"),
            "no Rocket.Chat token in plain text"
        );
        let stranger = node(&redis, b"a node with another secret......", ttl).await;
        assert!(
            stranger.live("alice").await.is_err(),
            "another secret reads nothing"
        );
        let logins = b.logins().await.unwrap();
        assert_eq!(logins.len(), 1);
        assert_eq!(logins[0].0, "alice");
    }

    #[tokio::test]
    async fn an_idle_login_expires_in_redis_and_a_touch_keeps_it() {
        let redis = RedisServer::start();
        let t = node(&redis, SECRET, Duration::from_millis(400)).await;
        let bob = t.install("bob", &creds("t-bob")).await.unwrap();
        let carol = t.install("carol", &creds("t-carol")).await.unwrap();
        let due = t.expiring(Duration::from_secs(1)).await.unwrap();
        assert_eq!(due.len(), 2, "both due within a second: {due:?}");
        assert!(t.expiring(Duration::ZERO).await.unwrap().is_empty());
        // Touch bob until carol has expired (Redis's clock decides).
        let deadline = Instant::now() + Duration::from_secs(5);
        while t.live("carol").await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "carol did not expire");
            assert!(t.touch("bob").await.unwrap().is_some());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(t.live("bob").await.unwrap().is_some(), "touched: kept");
        assert_eq!(
            t.user_for_client_token(&carol.client_token).await.unwrap(),
            None
        );
        assert!(
            t.touch("carol").await.unwrap().is_none(),
            "an expired login is not revived"
        );
        let due = t.expiring(Duration::ZERO).await.unwrap();
        assert_eq!(
            due.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(),
            ["carol"]
        );
        let ended = t.remove("bob").await.unwrap().expect("bob was live");
        assert_eq!(ended.rc_token, "t-bob");
        assert_eq!(
            t.user_for_client_token(&bob.client_token).await.unwrap(),
            None
        );
        assert!(t.remove("carol").await.unwrap().is_none());
        assert!(
            t.expiring(Duration::from_secs(60))
                .await
                .unwrap()
                .is_empty(),
            "the sweep's set is clean"
        );
    }

    #[tokio::test]
    async fn redis_gone_is_a_clear_error() {
        let redis = RedisServer::start();
        let t = node(&redis, SECRET, Duration::from_secs(60)).await;
        drop(redis);
        let e = t.live("alice").await.unwrap_err();
        assert!(
            e.to_string().contains("session store is unavailable"),
            "{e}"
        );
    }
}
