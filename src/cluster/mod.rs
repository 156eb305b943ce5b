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
