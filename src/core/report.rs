//! What a session tells its registry, as one message type: the session
//! depends on this, not on the registry, so the two do not import each other.

use super::words::EndReason;
use crate::rocketchat::{Credentials, Event, RcError};
use actix::Message;
use std::sync::Arc;

/// A session's report to its registry.
#[derive(Message)]
#[rtype(result = "()")]
pub enum SessionReport {
    /// Its first Rocket.Chat login succeeded.
    Established(Established),
    /// It is gone.
    Gone(SessionGone),
    /// Events from one read.
    Deliver(Deliver),
    /// Every subscription of a (re)connection is ready.
    SubscriptionsReady(SubscriptionsReady),
}

/// From a session: its first Rocket.Chat login succeeded.
pub struct Established {
    pub username: String,
    pub session: u64,
    /// The token it holds.
    pub creds: Credentials,
}

/// From a session: it is gone, for `reason` (or failed to log in with `error`).
pub struct SessionGone {
    pub username: String,
    pub session: u64,
    /// Why it ended.
    pub reason: EndReason,
    /// The login failure, if it never logged in.
    pub error: Option<RcError>,
}

/// From a session: the events of one read, for the user's clients.
pub struct Deliver {
    pub username: Arc<str>,
    pub session: u64,
    /// What, in Rocket.Chat's order.
    pub events: Vec<Event>,
}

/// From a session: every subscription is ready (events flow).
pub struct SubscriptionsReady {
    pub username: String,
    pub session: u64,
    /// On a reconnection: when the socket before it last heard from
    /// Rocket.Chat (what came after may be missing).
    pub lost_at: Option<std::time::SystemTime>,
}
