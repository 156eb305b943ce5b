//! The cluster: several nodes sharing their state in Redis (the engine
//! Centrifugo and SignalR scale out on), behind the core's engine seam.
//! Built so far: the shared token cache ([`tokens`]) with Rocket.Chat
//! tokens sealed at rest ([`seal`]), session ownership by fenced lease
//! ([`leases`]), and each user's stream: numbering, history and fan-out on
//! shard channels ([`streams`], batches stored as [`codec`] writes them).
//! Not yet reachable from the configuration: the engine that puts them
//! behind the seam, and the nodes' subscriber into their registries, come
//! next (`docs/PERFORMANCE.md` round 12 chose the
//! client).
#![cfg_attr(
    not(test),
    expect(dead_code, reason = "the cluster engine is wired once it is whole")
)]

pub(crate) mod codec;
pub(crate) mod leases;
pub(crate) mod seal;
pub(crate) mod streams;
pub(crate) mod tokens;

use crate::core::engine::EngineError;

/// Redis's clock in ms, for scripts: the one time every node compares.
const NOW: &str = r"
local function now()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
";

/// A script with `now()` defined.
fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{NOW}{body}"))
}

/// Redis did not answer, or refused.
fn unavailable(e: redis::RedisError) -> EngineError {
    EngineError::Unavailable(format!("redis: {e}"))
}
