//! The relay core: it knows no wire format and no HTTP. The façade
//! ([`relay::Relay`]) is what adapters call; the registry shards route each
//! session's events to the user's clients; one session actor per user owns
//! its Rocket.Chat token and DDP connection; the engine keeps what another
//! node may need to see (logins, session owners, each user's event stream);
//! the admin agent and the daemon's readiness sit beside them. Imports point one way:
//! the adapters (`api`, `clients`) use the core, and the core uses only
//! `rocketchat` (upstream) and `config`.

pub(crate) mod admin;
pub(crate) mod backfill;
pub mod cache;
pub(crate) mod engine;
pub(crate) mod readiness;
pub(crate) mod registry;
pub(crate) mod relay;
pub(crate) mod report;
pub(crate) mod session;
pub(crate) mod timers;
pub(crate) mod username;
pub(crate) mod words;
