//! The token cache in Redis, shared by every node. A login is a hash with
//! its deadline on Redis's clock (every node compares the same time); the
//! record outlives the deadline by [`GRACE`], as the in-memory entry does
//! until the sweep, so a user with connected clients can be extended and a
//! late sweep still finds the token to log out with; then Redis drops it.
//! The client token maps back to the user through a key named by its
//! keyed fingerprint; both tokens are sealed in the hash ([`Seal`]), so a
//! dump of Redis holds no credential. A sorted set of deadlines feeds the
//! sweep. Each change is one script: two nodes changing one user's login
//! see each other's change whole.
//!
//! Single Redis or Sentinel: the scripts name keys they derive (the client
//! token's), which Redis Cluster does not allow.

use super::seal::{Seal, Unsealed};
use super::{script, unavailable};
use crate::core::cache::Entry;
use crate::core::engine::EngineError;
use crate::rocketchat::Credentials;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use rand::Rng;
use redis::aio::ConnectionManager;
use redis::Script;
use std::time::Duration;
use tokio::time::Instant;

/// How long a record outlives its deadline.
pub(crate) const GRACE: Duration = Duration::from_secs(600);

/// The login's fields and the ms it has left, or nil past its deadline.
const LIVE: &str = r"
local f = redis.call('HMGET', KEYS[1], 'uid', 'token', 'gen', 'ct', 'deadline')
if not f[1] then return false end
local left = tonumber(f[5]) - now()
if left <= 0 then return false end
return {f[1], f[2], f[3], f[4], tostring(left)}
";

/// The deadline moved to now + ARGV[2]: the fields, or nil. Past the
/// deadline only when ARGV[5] is '1' (clients keep their user's login).
const TOUCH: &str = r"
local f = redis.call('HMGET', KEYS[1], 'uid', 'token', 'gen', 'ct', 'deadline', 'ctfp')
if not f[1] then return false end
local t = now()
if ARGV[5] ~= '1' and tonumber(f[5]) <= t then return false end
local deadline = t + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'deadline', tostring(deadline))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', ARGV[3] .. f[6], ARGV[4])
redis.call('ZADD', KEYS[2], tostring(deadline), ARGV[1])
return {f[1], f[2], f[3], f[4], ARGV[2]}
";

/// A Rocket.Chat login stored: the live one extended when it holds this
/// token already (by fingerprint), else a new generation keeping the live
/// login's client token.
const INSTALL: &str = r"
local f = redis.call('HMGET', KEYS[1], 'uid', 'token', 'gen', 'ct', 'fp', 'deadline', 'ctfp')
local t = now()
local deadline = tostring(t + tonumber(ARGV[7]))
local live = f[1] and tonumber(f[6]) > t
if live and f[5] == ARGV[4] then
  redis.call('HSET', KEYS[1], 'deadline', deadline)
  redis.call('PEXPIRE', KEYS[1], ARGV[9])
  redis.call('PEXPIRE', ARGV[8] .. f[7], ARGV[9])
  redis.call('ZADD', KEYS[2], deadline, ARGV[1])
  return {f[1], f[2], f[3], f[4], ARGV[7]}
end
local gen = redis.call('INCR', KEYS[3])
local ct, ctfp = ARGV[5], ARGV[6]
if live then
  ct, ctfp = f[4], f[7]
elseif f[7] then
  redis.call('DEL', ARGV[8] .. f[7])
end
redis.call('HSET', KEYS[1], 'uid', ARGV[2], 'token', ARGV[3], 'fp', ARGV[4], 'gen', gen,
  'ct', ct, 'ctfp', ctfp, 'deadline', deadline)
redis.call('PEXPIRE', KEYS[1], ARGV[9])
redis.call('SET', ARGV[8] .. ctfp, ARGV[1], 'PX', ARGV[9])
redis.call('ZADD', KEYS[2], deadline, ARGV[1])
return {ARGV[2], ARGV[3], tostring(gen), ct, ARGV[7]}
";

/// The user whose live login holds the client token ARGV[1] fingerprints.
const CLIENT: &str = r"
local u = redis.call('GET', KEYS[1])
if not u then return false end
local d = redis.call('HGET', ARGV[1] .. u, 'deadline')
if not d or tonumber(d) <= now() then return false end
return u
";

/// The login removed with its client token and deadline: its fields, or
/// nil. With ARGV[3] '1' only if its deadline has passed (a sweep: a login
/// renewed meanwhile, on any node, stays).
const END: &str = r"
local f = redis.call('HMGET', KEYS[1], 'uid', 'token', 'gen', 'ct', 'deadline', 'ctfp')
if not f[1] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return false
end
if ARGV[3] == '1' and tonumber(f[5]) > now() then return false end
redis.call('DEL', KEYS[1], ARGV[2] .. f[6])
redis.call('ZREM', KEYS[2], ARGV[1])
return {f[1], f[2], f[3], f[4], '0'}
";

/// Redis's now, then the users (and deadlines) due within ARGV[1] ms, at
/// most ARGV[2] of them.
const EXPIRING: &str = r"
local t = now()
local r = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', tostring(t + tonumber(ARGV[1])), 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
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
    client: Script,
    end: Script,
    expiring: Script,
}

fn unreadable(what: &str) -> EngineError {
    EngineError::Unavailable(format!("redis: a login record with {what}"))
}

fn new_client_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What a client token is sealed for (not the Rocket.Chat token's AAD).
fn client_aad(username: &str) -> String {
    format!("{username}\nclient")
}

impl RedisTokens {
    /// Over `conn`, keys under `prefix`, tokens sealed with `seal`, logins
    /// expiring after `ttl` idle.
    pub(crate) fn new(conn: ConnectionManager, prefix: &str, seal: Seal, ttl: Duration) -> Self {
        RedisTokens {
            conn,
            seal,
            ttl,
            prefix: prefix.to_string(),
            live: script(LIVE),
            touch: script(TOUCH),
            install: script(INSTALL),
            client: script(CLIENT),
            end: script(END),
            expiring: script(EXPIRING),
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

    fn ttl_ms(&self) -> String {
        self.ttl.as_millis().max(1).to_string()
    }

    fn keep_ms(&self) -> String {
        (self.ttl + GRACE).as_millis().to_string()
    }

    /// An entry from a script's `{uid, sealed token, generation, sealed
    /// client token, ms left}`. A token that does not open (another
    /// `cluster.secret` on the node that wrote it) is no login: the user
    /// logs in again, and the log says why.
    fn entry(&self, username: &str, f: Option<Vec<String>>) -> Result<Option<Entry>, EngineError> {
        let Some(f) = f else { return Ok(None) };
        let [uid, sealed, generation, client, left] =
            <[String; 5]>::try_from(f).map_err(|_| unreadable("another shape"))?;
        let opened = self
            .seal
            .open(username, &sealed)
            .and_then(|rc| Ok((rc, self.seal.open(&client_aad(username), &client)?)));
        let (rc_token, client_token) = match opened {
            Ok(t) => t,
            Err(Unsealed) => {
                log::warn!("the login of {username} in Redis does not open with this node's cluster.secret: taken as no login (do all nodes have the same secret?)");
                return Ok(None);
            }
        };
        Ok(Some(Entry {
            rc_user_id: uid,
            rc_token,
            generation: generation
                .parse()
                .map_err(|_| unreadable("a bad generation"))?,
            expires_at: Instant::now()
                + Duration::from_millis(left.parse().map_err(|_| unreadable("a bad deadline"))?),
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

    async fn touch_with(
        &self,
        username: &str,
        even_if_due: bool,
    ) -> Result<Option<Entry>, EngineError> {
        let f: Option<Vec<String>> = self
            .touch
            .key(self.login_key(username))
            .key(self.deadlines_key())
            .arg(username)
            .arg(self.ttl_ms())
            .arg(self.client_prefix())
            .arg(self.keep_ms())
            .arg(if even_if_due { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.entry(username, f)
    }

    /// A live login's idle deadline extended; the login, unless it expired.
    pub(crate) async fn touch(&self, username: &str) -> Result<Option<Entry>, EngineError> {
        self.touch_with(username, false).await
    }

    /// The login's deadline extended even if it has just passed (connected
    /// clients keep their user's session), while Redis still holds it.
    pub(crate) async fn extend(&self, username: &str) -> Result<(), EngineError> {
        self.touch_with(username, true).await.map(|_| ())
    }

    /// Stores a Rocket.Chat login (see [`INSTALL`]).
    pub(crate) async fn install(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Entry, EngineError> {
        let client = new_client_token();
        let f: Option<Vec<String>> = self
            .install
            .key(self.login_key(username))
            .key(self.deadlines_key())
            .key(format!("{}generation", self.prefix))
            .arg(username)
            .arg(&creds.user_id)
            .arg(self.seal.seal(username, &creds.token))
            .arg(self.seal.fingerprint(&creds.token))
            .arg(self.seal.seal(&client_aad(username), &client))
            .arg(self.seal.fingerprint(&client))
            .arg(self.ttl_ms())
            .arg(self.client_prefix())
            .arg(self.keep_ms())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.entry(username, f)?
            .ok_or_else(|| unreadable("a token this node cannot open"))
    }

    /// The user whose live login holds this client token.
    pub(crate) async fn user_for_client_token(
        &self,
        token: &str,
    ) -> Result<Option<String>, EngineError> {
        self.client
            .key(format!(
                "{}{}",
                self.client_prefix(),
                self.seal.fingerprint(token)
            ))
            .arg(format!("{}login:", self.prefix))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    /// Users whose logins expire within `within` (or have expired), with
    /// their deadlines on this node's clock.
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
        let ms = |t: &str| t.parse::<f64>().map_err(|_| unreadable("a bad deadline"));
        let now = ms(r.first().ok_or_else(|| unreadable("no time"))?)?;
        let here = Instant::now();
        r[1..]
            .chunks_exact(2)
            .map(|p| {
                let at = ms(&p[1])? - now;
                let deadline = if at >= 0.0 {
                    here + Duration::from_millis(at as u64)
                } else {
                    here.checked_sub(Duration::from_millis(-at as u64))
                        .unwrap_or(here)
                };
                Ok((p[0].clone(), deadline))
            })
            .collect()
    }

    /// Every live login (at most [`MAX_LISTED`]).
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

    async fn end_with(&self, username: &str, only_due: bool) -> Result<Option<Entry>, EngineError> {
        let f: Option<Vec<String>> = self
            .end
            .key(self.login_key(username))
            .key(self.deadlines_key())
            .arg(username)
            .arg(self.client_prefix())
            .arg(if only_due { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.entry(username, f)
    }

    /// The user's login removed (a logout, a deletion); the login it was.
    pub(crate) async fn remove(&self, username: &str) -> Result<Option<Entry>, EngineError> {
        self.end_with(username, false).await
    }

    /// The sweep's removal: only if the deadline has passed, so a login
    /// renewed meanwhile (on any node) stays; the login it was.
    pub(crate) async fn remove_due(&self, username: &str) -> Result<Option<Entry>, EngineError> {
        self.end_with(username, true).await
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
        RedisTokens::new(conn, "imrelay:", Seal::new(secret).unwrap(), ttl)
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

    /// Waits (5 s at most) until `user`'s login is past its deadline.
    async fn until_expired(t: &RedisTokens, user: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while t.live(user).await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "{user} did not expire");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
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
        let user = b.user_for_client_token(&first.client_token).await.unwrap();
        assert_eq!(user.as_deref(), Some("alice"));
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
        assert!(
            !stored.contains(&first.client_token),
            "no client token either"
        );
        let stranger = node(&redis, b"a node with another secret......", ttl).await;
        assert!(
            stranger.live("alice").await.unwrap().is_none(),
            "another secret reads nothing"
        );
        let logins = b.logins().await.unwrap();
        assert_eq!(logins.len(), 1);
        assert_eq!(logins[0].0, "alice");
    }

    #[tokio::test]
    async fn an_idle_login_expires_on_redis_clock_and_the_sweep_still_finds_it() {
        let redis = RedisServer::start();
        let t = node(&redis, SECRET, Duration::from_millis(400)).await;
        let bob = t.install("bob", &creds("t-bob")).await.unwrap();
        let carol = t.install("carol", &creds("t-carol")).await.unwrap();
        let due = t.expiring(Duration::from_secs(1)).await.unwrap();
        assert_eq!(due.len(), 2, "both due within a second: {due:?}");
        assert!(t.expiring(Duration::ZERO).await.unwrap().is_empty());
        // Touch bob until carol has expired.
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
            "a touch does not revive it"
        );
        assert!(
            t.remove_due("bob").await.unwrap().is_none(),
            "bob is not due"
        );
        // Connected clients keep a login just past its deadline, as the
        // in-memory cache does until its sweep.
        t.extend("carol").await.unwrap();
        assert!(t.live("carol").await.unwrap().is_some(), "extended");
        until_expired(&t, "carol").await;
        let due = t.expiring(Duration::ZERO).await.unwrap();
        assert!(due.iter().any(|(u, _)| u == "carol"), "due: {due:?}");
        let swept = t.remove_due("carol").await.unwrap();
        assert_eq!(
            swept.map(|e| e.rc_token).as_deref(),
            Some("t-carol"),
            "the sweep has the token to log out of Rocket.Chat with"
        );
        let ended = t.remove("bob").await.unwrap().expect("bob was live");
        assert_eq!(ended.rc_token, "t-bob");
        assert_eq!(
            t.user_for_client_token(&bob.client_token).await.unwrap(),
            None
        );
        assert!(
            t.expiring(Duration::from_secs(60))
                .await
                .unwrap()
                .is_empty(),
            "the sweep's set is clean"
        );
        assert_eq!(
            everything(&t).await.trim(),
            "imrelay:generation 2",
            "nothing else left"
        );
    }

    #[tokio::test]
    async fn a_login_anew_after_expiry_gets_a_new_client_token() {
        let redis = RedisServer::start();
        let t = node(&redis, SECRET, Duration::from_millis(200)).await;
        let old = t.install("dora", &creds("t1")).await.unwrap();
        until_expired(&t, "dora").await;
        let new = t.install("dora", &creds("t1")).await.unwrap();
        assert!(new.generation > old.generation, "expired: a new login");
        assert_ne!(new.client_token, old.client_token);
        assert_eq!(
            t.user_for_client_token(&old.client_token).await.unwrap(),
            None
        );
        let user = t.user_for_client_token(&new.client_token).await.unwrap();
        assert_eq!(user.as_deref(), Some("dora"));
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
