//! The cluster: several nodes sharing their state in Redis (the engine
//! Centrifugo and SignalR scale out on), behind the core's engine seam.
//! Built so far: the shared token cache ([`tokens`]) with Rocket.Chat
//! tokens sealed at rest ([`seal`]), and session ownership by fenced lease
//! ([`leases`]). Not yet reachable from the configuration: the shared
//! history and the fan-out between nodes come first (`docs/PERFORMANCE.md` round 12 chose the
//! client).
#![cfg_attr(
    not(test),
    expect(dead_code, reason = "the cluster engine is wired once it is whole")
)]

pub(crate) mod leases;
pub(crate) mod seal;
pub(crate) mod tokens;
