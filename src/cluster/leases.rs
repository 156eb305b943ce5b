//! Which node owns each user's upstream session: a lease in Redis (SET NX
//! with expiry), renewed by its owner, with a fencing number that grows
//! with every new owner. A node that dies stops renewing and loses its
//! leases after the TTL; a stale owner that wakes up holds a fence that no
//! longer matches, so its renewals, releases (and, with the shared
//! history, its appends) fail instead of overwriting the new owner's.

use super::unavailable;
use crate::core::engine::EngineError;
use redis::aio::ConnectionManager;
use redis::Script;
use std::time::Duration;

/// Take the lease if free, keep it if ours: `{'owned', fence}` or
/// `{'other', node}`.
const CLAIM: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local node, fence = string.match(cur, '^(.*):(%d+)$')
  if node == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {'owned', fence}
  end
  return {'other', node or cur}
end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence, 'PX', ARGV[2])
return {'owned', tostring(fence)}
";

/// Extend the lease while it is still `node:fence`: 1, else 0.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Drop the lease while it is still `node:fence`: 1, else 0.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// The answer to a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// This node owns the user, under this fence.
    Owned(u64),
    /// Another node does.
    OwnedBy(String),
}

/// The leases of one node.
pub(crate) struct Leases {
    conn: ConnectionManager,
    node: String,
    ttl: Duration,
    prefix: String,
    claim: Script,
    renew: Script,
    release: Script,
}

impl Leases {
    /// Leases for `node` (an id unique in the cluster; it may hold `:`, as
    /// only the last one separates the fence), lasting `ttl` unless renewed.
    pub(crate) fn new(conn: ConnectionManager, prefix: &str, node: &str, ttl: Duration) -> Self {
        Leases {
            conn,
            node: node.to_string(),
            ttl,
            prefix: prefix.to_string(),
            claim: Script::new(CLAIM),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        }
    }

    fn key(&self, username: &str) -> String {
        format!("{}lease:{username}", self.prefix)
    }

    fn held(&self, fence: u64) -> String {
        format!("{}:{fence}", self.node)
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis().max(1) as u64
    }

    /// Claims the user for this node.
    pub(crate) async fn claim(&self, username: &str) -> Result<Claim, EngineError> {
        let (kind, value): (String, String) = self
            .claim
            .key(self.key(username))
            .key(format!("{}fence:{username}", self.prefix))
            .arg(&self.node)
            .arg(self.ttl_ms())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(match kind.as_str() {
            "owned" => Claim::Owned(value.parse().map_err(|_| {
                EngineError::Unavailable(format!("redis: a lease fenced by {value:?}"))
            })?),
            _ => Claim::OwnedBy(value),
        })
    }

    /// Extends the lease held under `fence`: false when it was lost (expired
    /// and taken, or released), and the session must stop.
    pub(crate) async fn renew(&self, username: &str, fence: u64) -> Result<bool, EngineError> {
        self.renew
            .key(self.key(username))
            .arg(self.held(fence))
            .arg(self.ttl_ms())
            .invoke_async(&mut self.conn.clone())
            .await
            .map(|n: i64| n == 1)
            .map_err(unavailable)
    }

    /// Gives the lease up (a graceful stop, a logout): another node can
    /// claim the user at once. False when it was no longer this one's.
    pub(crate) async fn release(&self, username: &str, fence: u64) -> Result<bool, EngineError> {
        self.release
            .key(self.key(username))
            .arg(self.held(fence))
            .invoke_async(&mut self.conn.clone())
            .await
            .map(|n: i64| n == 1)
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RedisServer;
    use tokio::time::Instant;

    async fn node(redis: &RedisServer, name: &str, ttl: Duration) -> Leases {
        let client = redis::Client::open(redis.url()).unwrap();
        let conn = ConnectionManager::new(client).await.unwrap();
        Leases::new(conn, "imrelay:", name, ttl)
    }

    #[tokio::test]
    async fn one_node_owns_a_user_and_a_stale_owner_cannot_take_it_back() {
        let redis = RedisServer::start();
        let ttl = Duration::from_millis(300);
        let (a, b) = (
            node(&redis, "node-a", ttl).await,
            node(&redis, "node-b", ttl).await,
        );
        let Claim::Owned(fa) = a.claim("alice").await.unwrap() else {
            panic!("the first claim wins");
        };
        assert_eq!(
            a.claim("alice").await.unwrap(),
            Claim::Owned(fa),
            "ours: kept"
        );
        assert_eq!(
            b.claim("alice").await.unwrap(),
            Claim::OwnedBy("node-a".into())
        );
        assert!(a.renew("alice", fa).await.unwrap());
        // A stops renewing (it died, or stalled): the lease runs out.
        let deadline = Instant::now() + Duration::from_secs(5);
        let fb = loop {
            if let Claim::Owned(f) = b.claim("alice").await.unwrap() {
                break f;
            }
            assert!(Instant::now() < deadline, "the lease did not expire");
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        assert!(fb > fa, "a new owner, a higher fence");
        assert!(
            !a.renew("alice", fa).await.unwrap(),
            "the stale owner's renewal fails"
        );
        assert!(
            !a.release("alice", fa).await.unwrap(),
            "and so does its release"
        );
        assert_eq!(
            a.claim("alice").await.unwrap(),
            Claim::OwnedBy("node-b".into())
        );
        assert!(b.release("alice", fb).await.unwrap(), "handed over at once");
        assert!(matches!(a.claim("alice").await.unwrap(), Claim::Owned(f) if f > fb));
    }

    #[tokio::test]
    async fn the_same_node_owning_again_holds_a_new_fence_and_the_old_one_is_dead() {
        let redis = RedisServer::start();
        let a = node(&redis, "node-a", Duration::from_millis(200)).await;
        let Claim::Owned(old) = a.claim("erin").await.unwrap() else {
            panic!("free");
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while a.renew("erin", old).await.unwrap() {
            // Renewed until this loop stops renewing fast enough: wait it out.
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(Instant::now() < deadline, "the lease did not run out");
        }
        let Claim::Owned(new) = a.claim("erin").await.unwrap() else {
            panic!("expired: free again");
        };
        assert!(new > old);
        assert!(
            !a.renew("erin", old).await.unwrap(),
            "the old fence renews nothing"
        );
        assert!(!a.release("erin", old).await.unwrap(), "nor releases");
        assert!(a.renew("erin", new).await.unwrap());
    }

    #[tokio::test]
    async fn a_node_name_with_colons_is_still_one_name() {
        let redis = RedisServer::start();
        let ttl = Duration::from_secs(10);
        let a = node(&redis, "10.0.0.1:8080", ttl).await;
        let b = node(&redis, "10.0.0.2:8080", ttl).await;
        let Claim::Owned(f) = a.claim("bob").await.unwrap() else {
            panic!("free");
        };
        assert_eq!(a.claim("bob").await.unwrap(), Claim::Owned(f));
        assert_eq!(
            b.claim("bob").await.unwrap(),
            Claim::OwnedBy("10.0.0.1:8080".into())
        );
    }
}
