//! The simulated database: users, login tokens, rooms, subscriptions and
//! messages, one file per concern (`users`, `rooms`, `messages`, and the
//! `documents` as Rocket.Chat stores and streams them). Every change returns
//! the stream events Rocket.Chat's watchers would emit for it
//! (`docs/protocol/rocketchat.md` §3.4, §7.6); the caller hands them to the
//! [`crate::hub::Hub`] after releasing the store lock.

use crate::ejson::{self, date, Date};
use crate::error::MeteorError;
use crate::ids;
use crate::tokens::LoginTokens;
pub use crate::tokens::TokenRec;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

mod documents;
mod messages;
mod notifications;
mod rooms;
mod users;

pub use documents::{Email, Room, RoomType, Sub, User};
pub use rooms::RoomSpec;
pub use users::{NewUser, UserPatch, UserRef};
use {documents::*, messages::*};

/// A stream event to deliver.
#[derive(Debug, Clone)]
pub enum Emit {
    /// `changed` on `collection` for subscribers of exactly `event`.
    Stream {
        /// e.g. `stream-notify-user`.
        collection: &'static str,
        /// e.g. `<uid>/subscriptions-changed`.
        event: String,
        /// `fields.args`, serialised once and shared by every event that
        /// carries the same arguments (a room update goes to each member).
        args: Arc<str>,
    },
    /// A message for `__my_messages__` subscribers; each gets its own meta
    /// argument (`roomParticipant` differs per user).
    MyMessages {
        /// The message, serialised (EJSON).
        message: Arc<str>,
        /// `c`, `p`, `d`.
        room_type: &'static str,
        /// `roomName` (absent for DMs).
        room_name: Option<String>,
        /// Users subscribed to the room.
        members: Arc<Vec<String>>,
        /// Public rooms stream to every `__my_messages__` subscriber.
        public: bool,
    },
}

/// The whole database.
#[derive(Default)]
pub struct Store {
    users: HashMap<String, User>,
    by_username: HashMap<String, String>,
    by_email: HashMap<String, String>,
    tokens: LoginTokens,
    rooms: HashMap<String, Room>,
    room_by_name: HashMap<String, String>,
    subs: HashMap<String, HashMap<String, Sub>>,
    user_rooms: HashMap<String, BTreeSet<String>>,
    messages: HashMap<String, Vec<StoredMessage>>,
    msg_index: HashMap<String, (String, usize)>,
    removed_subs: Vec<(String, String, i64)>,
    last_ms: i64,
}

pub(super) fn valid_username(u: &str) -> bool {
    // RC's default `UTF8_User_Names_Validation`: [0-9a-zA-Z-_.]+
    !u.is_empty()
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

pub(super) fn field_unavailable(value: &str) -> MeteorError {
    MeteorError::new(
        "error-field-unavailable",
        format!("{value} is already in use :("),
    )
    .with_details(json!({"method": "insertOrUpdateUser", "field": value}))
}

pub(super) fn markdown(text: &str) -> Value {
    json!([{"type": "PARAGRAPH", "value": [{"type": "PLAIN_TEXT", "value": text}]}])
}

impl Store {
    /// A strictly increasing clock, so two events never share a timestamp
    /// (clients sort and sync by them).
    pub fn tick(&mut self) -> i64 {
        let now = crate::ejson::now_ms().max(self.last_ms + 1);
        self.last_ms = now;
        now
    }

    // ---- users -------------------------------------------------------

    /// Number of users, rooms and messages, for the status line.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.users.len(), self.rooms.len(), self.msg_index.len())
    }
}

/// A `stream-notify-user` event for `<uid>/<event>`.
pub fn user_event(uid: &str, event: &str, args: Value) -> Emit {
    user_event_shared(uid, event, Arc::from(ejson::text(&args)))
}

/// [`user_event`] with arguments already serialised (shared between users).
pub fn user_event_shared(uid: &str, event: &str, args: Arc<str>) -> Emit {
    Emit::Stream {
        collection: "stream-notify-user",
        event: format!("{uid}/{event}"),
        args,
    }
}
