//! Each user's event stream in Redis, shared by the cluster: the sequence
//! number (`seq`, one per event, cluster-wide), the epoch, and the history
//! as a Redis Stream whose entry ids are the batches' first numbers, so a
//! client's `since` is a range read. The owner appends each batch with one
//! script that first checks its lease (the fence: a stale owner appends
//! nothing), then publishes it on the user's shard channel for the nodes
//! holding the user's clients (16 channels by default, not one per user).
//! The history is bounded like the in-memory one, by age exactly and by
//! count approximately (`MAXLEN ~`: Redis trims whole nodes of about 100
//! entries, so it holds up to that many batches more).

use super::codec;
use super::{script, unavailable};
use crate::core::engine::history::Bounds;
use crate::core::engine::{Batch, EngineError, Joined, Replay, Since};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use rand::Rng;
use redis::aio::ConnectionManager;
use redis::Script;
use std::sync::Arc;

/// Fence, number, append, publish: `{first, epoch}`, or nil when fenced.
/// The number and the epoch share one hash (`meta`), so they are lost
/// together or not at all; the history is trimmed by number to the last
/// ARGV[4] events, whole batches, as the in-memory history is. If the
/// history holds numbers the meta no longer knows (an eviction, a
/// failover), the stream starts anew under a new epoch rather than reuse
/// them.
const APPEND: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local n = tonumber(ARGV[2])
local size = tonumber(ARGV[4])
local first = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0') + 1
local last = first + n - 1
redis.call('HSETNX', KEYS[2], 'epoch', ARGV[6])
if size > 0 and n > 0 then
  local function add()
    return redis.pcall('XADD', KEYS[3], 'MINID', '=', tostring(math.max(0, last - size + 1)),
      tostring(first) .. '-0', 'n', ARGV[2], 'ts', tostring(now()), 'b', ARGV[3])
  end
  local added = add()
  if type(added) == 'table' and added.err then
    redis.call('DEL', KEYS[3])
    redis.call('HSET', KEYS[2], 'epoch', ARGV[6])
    added = add()
    if type(added) == 'table' and added.err then return redis.error_reply(added.err) end
  end
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
redis.call('HSET', KEYS[2], 'seq', tostring(last))
local epoch = redis.call('HGET', KEYS[2], 'epoch')
redis.call('PUBLISH', ARGV[7], ARGV[8] .. '\n' .. tostring(first) .. '\n' .. epoch .. '\n' .. ARGV[9] .. '\n' .. ARGV[3])
return {tostring(first), epoch}
";

/// A client joining: `{epoch, last}`, then `'lost'`, or `'ok'` and the
/// batches from the one holding since + 1 (`first, bytes` each, at most
/// ARGV[5] of them: the history's bound).
const JOIN: &str = r"
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local last = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local out = {epoch, tostring(last)}
if ARGV[2] == '' then return out end
local s = tonumber(ARGV[3])
if ARGV[2] ~= epoch or s > last then table.insert(out, 'lost'); return out end
table.insert(out, 'ok')
if s == last then return out end
local start = redis.call('XREVRANGE', KEYS[2], tostring(s + 1) .. '-0', '-', 'COUNT', 1)
if #start == 0 or now() - tonumber(start[1][2][4]) > tonumber(ARGV[4]) then
  out[3] = 'lost'
  return out
end
for _, e in ipairs(redis.call('XRANGE', KEYS[2], start[1][1], '+', 'COUNT', tonumber(ARGV[5]))) do
  table.insert(out, string.match(e[1], '^(%d+)'))
  table.insert(out, e[2][6])
end
return out
";

/// What an append did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Appended {
    /// Numbered from this, in this epoch.
    First(u64, Arc<str>),
    /// The lease is no longer this fence's: nothing appended.
    Fenced,
}

/// A batch another node appended, as its shard channel carries it.
#[derive(Debug)]
pub(crate) struct Remote {
    pub(crate) username: String,
    pub(crate) first: u64,
    pub(crate) epoch: String,
    /// The node that appended it (its own clients have it already).
    pub(crate) origin: String,
    pub(crate) batch: Batch,
}

/// The streams, as one node sees them.
pub(crate) struct Streams {
    conn: ConnectionManager,
    node: String,
    prefix: String,
    bounds: Bounds,
    shards: u32,
    append: Script,
    join: Script,
}

fn unreadable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(format!("redis: an answer that does not read: {e}"))
}

fn new_epoch() -> String {
    let bytes: [u8; 9] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// FNV-1a: the same shard for a user on every node and build.
fn shard_of(username: &str, shards: u32) -> u32 {
    let h = username.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    h % shards.max(1)
}

impl Streams {
    /// Streams for `node` under `prefix`, each history within `bounds`,
    /// carried on `shards` channels.
    pub(crate) fn new(
        conn: ConnectionManager,
        prefix: &str,
        node: &str,
        bounds: Bounds,
        shards: u32,
    ) -> Self {
        Streams {
            conn,
            node: node.to_string(),
            prefix: prefix.to_string(),
            bounds,
            shards: shards.max(1),
            append: script(APPEND),
            join: script(JOIN),
        }
    }

    fn key(&self, what: &str, username: &str) -> String {
        format!("{}{what}:{username}", self.prefix)
    }

    /// The channel carrying the user's batches.
    pub(crate) fn channel(&self, username: &str) -> String {
        format!("{}fan:{}", self.prefix, shard_of(username, self.shards))
    }

    /// Every shard channel (what a node subscribes to).
    pub(crate) fn channels(&self) -> Vec<String> {
        (0..self.shards)
            .map(|s| format!("{}fan:{s}", self.prefix))
            .collect()
    }

    /// Appends `batch` to the user's stream as the owner under `fence`
    /// (see [`APPEND`]), and carries it to the other nodes.
    pub(crate) async fn append(
        &self,
        username: &str,
        fence: u64,
        batch: &Batch,
    ) -> Result<Appended, EngineError> {
        let r: Option<(u64, String)> = self
            .append
            .key(self.key("lease", username))
            .key(self.key("meta", username))
            .key(self.key("stream", username))
            .arg(format!("{}:{fence}", self.node))
            .arg(batch.len())
            .arg(codec::encode(batch))
            .arg(self.bounds.size)
            .arg(self.bounds.ttl.as_millis().max(1) as u64)
            .arg(new_epoch())
            .arg(self.channel(username))
            .arg(username)
            .arg(&self.node)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(match r {
            Some((first, epoch)) => Appended::First(first, epoch.into()),
            None => Appended::Fenced,
        })
    }

    /// A client joins the user's stream (see [`JOIN`]).
    pub(crate) async fn join(
        &self,
        username: &str,
        since: Option<&Since>,
    ) -> Result<Joined, EngineError> {
        let r: Vec<redis::Value> = self
            .join
            .key(self.key("meta", username))
            .key(self.key("stream", username))
            .arg(new_epoch())
            .arg(since.map_or("", |s| s.epoch.as_str()))
            .arg(since.map_or(0, |s| s.seq))
            .arg(self.bounds.ttl.as_millis().max(1) as u64)
            .arg(self.bounds.size.max(1))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let text = |v: &redis::Value| -> Result<String, EngineError> {
            redis::from_redis_value_ref(v).map_err(unreadable)
        };
        let (Some(epoch), Some(last)) = (r.first(), r.get(1)) else {
            return Err(EngineError::Unavailable(
                "redis: a join answer of another shape".into(),
            ));
        };
        let epoch: Arc<str> = text(epoch)?.into();
        let number =
            |v: &redis::Value| -> Result<u64, EngineError> { text(v)?.parse().map_err(unreadable) };
        let last = number(last)?;
        let replay = match r.get(2).map(text).transpose()?.as_deref() {
            None => None,
            Some("lost") => Some(Replay::Lost),
            Some(_) => {
                let mut batches = vec![];
                for pair in r[3..].chunks_exact(2) {
                    let first = number(&pair[0])?;
                    let bytes: Vec<u8> =
                        redis::from_redis_value_ref(&pair[1]).map_err(unreadable)?;
                    batches.push((first, codec::decode(&bytes)?));
                }
                Some(Replay::Recovered(batches))
            }
        };
        Ok(Joined {
            epoch,
            last,
            replay,
        })
    }

    /// The user's stream is over (logout, deletion, expiry), and its lease
    /// with it (the owner stops; nothing it still appends lands): the next
    /// stream has a new epoch and starts at 1.
    pub(crate) async fn end(&self, username: &str) -> Result<(), EngineError> {
        redis::cmd("DEL")
            .arg(self.key("meta", username))
            .arg(self.key("stream", username))
            .arg(self.key("lease", username))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }
}

/// A shard channel's message: the batch another node appended.
pub(crate) fn remote(payload: &[u8]) -> Result<Remote, EngineError> {
    let bad = || EngineError::Unavailable("a fan-out message of another shape".into());
    let mut parts = payload.splitn(5, |b| *b == b'\n');
    let mut text = || -> Result<String, EngineError> {
        let p = parts.next().ok_or_else(bad)?;
        String::from_utf8(p.to_vec()).map_err(|_| bad())
    };
    let (username, first, epoch, origin) = (text()?, text()?, text()?, text()?);
    let batch = codec::decode(parts.next().ok_or_else(bad)?)?;
    Ok(Remote {
        username,
        first: first.parse().map_err(|_| bad())?,
        epoch,
        origin,
        batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::leases::{Claim, Leases};
    use crate::rocketchat::{Event, EventData};
    use crate::testing::RedisServer;
    use std::time::Duration;

    async fn conn(redis: &RedisServer) -> ConnectionManager {
        ConnectionManager::new(redis::Client::open(redis.url()).unwrap())
            .await
            .unwrap()
    }

    fn batch(texts: &[&str]) -> Batch {
        texts
            .iter()
            .map(|t| Event {
                name: "getRoomMessageNotification",
                data: EventData::raw(&format!(r#"{{"msg":"{t}"}}"#)),
            })
            .collect::<Vec<_>>()
            .into()
    }

    fn texts(replay: &Replay, since: u64) -> Vec<(u64, String)> {
        replay
            .events(since)
            .map(|(seq, e)| (seq, serde_json::to_string(&e.data).unwrap()))
            .collect()
    }

    fn bounds() -> Bounds {
        Bounds {
            size: 100,
            ttl: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn the_owner_appends_and_any_node_replays_what_a_client_missed() {
        let redis = RedisServer::start();
        let (ca, cb) = (conn(&redis).await, conn(&redis).await);
        let lease_a = Leases::new(ca.clone(), "imrelay:", "a", Duration::from_secs(10));
        let Claim::Owned(fence) = lease_a.claim("alice").await.unwrap() else {
            panic!("free");
        };
        let a = Streams::new(ca, "imrelay:", "a", bounds(), 16);
        let b = Streams::new(cb, "imrelay:", "b", bounds(), 16);
        let Appended::First(first, epoch) =
            a.append("alice", fence, &batch(&["1", "2"])).await.unwrap()
        else {
            panic!("owned");
        };
        assert_eq!(first, 1);
        assert!(matches!(
            a.append("alice", fence, &batch(&["3"])).await.unwrap(),
            Appended::First(3, _)
        ));
        assert_eq!(
            b.append("alice", fence + 1, &batch(&["x"])).await.unwrap(),
            Appended::Fenced
        );
        let joined = b.join("alice", None).await.unwrap();
        assert_eq!(
            (&*joined.epoch, joined.last, joined.replay.is_none()),
            (&*epoch, 3, true)
        );
        let since = |seq| Since {
            epoch: epoch.to_string(),
            seq,
        };
        let back = b
            .join("alice", Some(&since(1)))
            .await
            .unwrap()
            .replay
            .unwrap();
        assert_eq!(
            texts(&back, 1),
            [
                (2, r#"{"msg":"2"}"#.to_string()),
                (3, r#"{"msg":"3"}"#.to_string())
            ]
        );
        let none = b
            .join("alice", Some(&since(3)))
            .await
            .unwrap()
            .replay
            .unwrap();
        assert!(matches!(&none, Replay::Recovered(b) if b.is_empty()));
        let other = Since {
            epoch: "another".into(),
            seq: 1,
        };
        assert!(matches!(
            b.join("alice", Some(&other)).await.unwrap().replay,
            Some(Replay::Lost)
        ));
        assert!(matches!(
            b.join("alice", Some(&since(9))).await.unwrap().replay,
            Some(Replay::Lost)
        ));
        b.end("alice").await.unwrap();
        let anew = b.join("alice", None).await.unwrap();
        assert_ne!(anew.epoch, epoch, "a new stream, a new epoch");
        assert_eq!(anew.last, 0);
    }

    /// A stream of `size` events' history owned by node "a", and its fence.
    async fn owned(redis: &RedisServer, user: &str, bounds: Bounds) -> (Streams, u64) {
        let c = conn(redis).await;
        let leases = Leases::new(c.clone(), "imrelay:", "a", Duration::from_secs(10));
        let Claim::Owned(fence) = leases.claim(user).await.unwrap() else {
            panic!("free");
        };
        (Streams::new(c, "imrelay:", "a", bounds, 16), fence)
    }

    async fn append(s: &Streams, user: &str, fence: u64, texts: &[&str]) -> (u64, String) {
        match s.append(user, fence, &batch(texts)).await.unwrap() {
            Appended::First(first, epoch) => (first, epoch.to_string()),
            Appended::Fenced => panic!("owned"),
        }
    }

    #[tokio::test]
    async fn the_history_keeps_the_last_events_in_whole_batches_as_in_memory() {
        let redis = RedisServer::start();
        let five = Bounds {
            size: 5,
            ttl: Duration::from_secs(60),
        };
        let (s, fence) = owned(&redis, "bob", five).await;
        for pair in [["1", "2"], ["3", "4"], ["5", "6"]] {
            append(&s, "bob", fence, &pair).await;
        }
        let (_, epoch) = append(&s, "bob", fence, &[]).await;
        let since = |seq| Since {
            epoch: epoch.clone(),
            seq,
        };
        // Six events over a bound of five: the oldest batch (1, 2) went.
        let lost = s.join("bob", Some(&since(1))).await.unwrap();
        assert_eq!(lost.last, 6);
        assert!(matches!(lost.replay, Some(Replay::Lost)));
        let kept = s
            .join("bob", Some(&since(2)))
            .await
            .unwrap()
            .replay
            .unwrap();
        let seqs: Vec<u64> = texts(&kept, 2).iter().map(|(n, _)| *n).collect();
        assert_eq!(seqs, [3, 4, 5, 6]);
        let none = Bounds {
            size: 0,
            ttl: Duration::from_secs(60),
        };
        let (s, fence) = owned(&redis, "carl", none).await;
        let (_, epoch) = append(&s, "carl", fence, &["1", "2"]).await;
        let since = Since { epoch, seq: 1 };
        let j = s.join("carl", Some(&since)).await.unwrap();
        assert!(matches!(j.replay, Some(Replay::Lost)), "no history kept");
    }

    #[tokio::test]
    async fn numbers_the_store_forgot_are_not_given_out_again_in_the_same_epoch() {
        let redis = RedisServer::start();
        let (s, fence) = owned(&redis, "erin", bounds()).await;
        let (_, old) = append(&s, "erin", fence, &["1", "2"]).await;
        // The numbering is lost (an eviction, a failover), the history not.
        redis::cmd("DEL")
            .arg("imrelay:meta:erin")
            .query_async::<()>(&mut conn(&redis).await)
            .await
            .unwrap();
        let (first, epoch) = append(&s, "erin", fence, &["again"]).await;
        assert_eq!(first, 1);
        assert_ne!(epoch, old, "a new stream, a new epoch");
        let since = Since { epoch: old, seq: 1 };
        let j = s.join("erin", Some(&since)).await.unwrap();
        assert!(matches!(j.replay, Some(Replay::Lost)));
    }

    #[tokio::test]
    async fn a_history_older_than_its_ttl_is_lost() {
        let redis = RedisServer::start();
        let short = Bounds {
            size: 100,
            ttl: Duration::from_millis(200),
        };
        let (s, fence) = owned(&redis, "dave", short).await;
        append(&s, "dave", fence, &["1"]).await;
        let (_, epoch) = append(&s, "dave", fence, &["2"]).await;
        let since = Since { epoch, seq: 1 };
        let fresh = s.join("dave", Some(&since)).await.unwrap();
        assert!(matches!(fresh.replay, Some(Replay::Recovered(_))));
        // Events keep coming (so the stream itself lives on) while the one
        // the client needs ages out on Redis's clock; wait for it, bounded.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            append(&s, "dave", fence, &["more"]).await;
            let j = s.join("dave", Some(&since)).await.unwrap();
            if matches!(j.replay, Some(Replay::Lost)) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never aged out");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    #[tokio::test]
    async fn a_batch_reaches_the_other_nodes_on_its_shard_channel() {
        let redis = RedisServer::start();
        let c = conn(&redis).await;
        let leases = Leases::new(c.clone(), "imrelay:", "a", Duration::from_secs(10));
        let Claim::Owned(fence) = leases.claim("carol").await.unwrap() else {
            panic!("free");
        };
        let s = Streams::new(c, "imrelay:", "a", bounds(), 16);
        assert_eq!(s.channels().len(), 16);
        assert!(s.channels().contains(&s.channel("carol")));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let client = redis::Client::open(format!("{}?protocol=resp3", redis.url())).unwrap();
        let config = redis::aio::ConnectionManagerConfig::new().set_push_sender(tx);
        let mut sub = ConnectionManager::new_with_config(client, config)
            .await
            .unwrap();
        sub.subscribe(&s.channels()).await.unwrap();
        let Appended::First(_, epoch) = s.append("carol", fence, &batch(&["hello"])).await.unwrap()
        else {
            panic!("owned");
        };
        let payload = loop {
            let push = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a message within 5 s")
                .expect("the subscription stays open");
            if push.kind == redis::PushKind::Message {
                break redis::from_redis_value_ref::<Vec<u8>>(&push.data[1]).unwrap();
            }
        };
        let r = remote(&payload).unwrap();
        assert_eq!(
            (
                r.username.as_str(),
                r.first,
                r.epoch.as_str(),
                r.origin.as_str()
            ),
            ("carol", 1, &*epoch, "a")
        );
        assert_eq!(
            texts(&Replay::Recovered(vec![(r.first, r.batch)]), 0)[0].1,
            r#"{"msg":"hello"}"#
        );
        assert!(remote(b"carol\n1").is_err());
    }
}
