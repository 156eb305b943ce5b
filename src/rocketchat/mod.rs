//! Everything Rocket.Chat-specific lives here, behind neutral types
//! ([`Credentials`], [`Event`], [`RcError`]), so that another chat server
//! could be added as a sibling module.

pub(crate) mod backfill;
pub(crate) mod connection;
pub(crate) mod ddp;
pub mod doctor;
pub(crate) mod method_call;
pub mod passwords;
pub(crate) mod probe;
pub(crate) mod rest;

use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use std::time::Duration;

/// A user's (or the admin's) Rocket.Chat REST credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `X-User-Id`.
    pub user_id: String,
    /// `X-Auth-Token`.
    pub token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ user_id: {}, token: *** }}", self.user_id)
    }
}

/// Lowercase hex SHA-256: the password digest DDP logins send, and the
/// `x-2fa-code` password fallback.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// An event for a user's clients: a client event name and its data.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// `getRoomMessageNotification`, …
    pub name: &'static str,
    /// The payload: Rocket.Chat's objects exactly as they came over DDP
    /// (EJSON dates), never parsed into values and re-serialised.
    pub data: EventData,
}

/// An event's payload, as the protocols serialise it (with serde, the raw
/// parts written as they are).
#[derive(Clone, Debug)]
pub enum EventData {
    /// One of Rocket.Chat's objects as it came.
    Raw(Box<RawValue>),
    /// `{"method": "insert"|"update"|"remove", "<key>": <document>}` for a
    /// subscription or room change.
    Change {
        /// `insert`, `update` or `remove`.
        method: &'static str,
        /// `msg` (a subscription) or `room`.
        key: &'static str,
        /// The document.
        value: Box<RawValue>,
    },
}

impl EventData {
    /// Raw JSON text (tests; the hot path never parses).
    pub fn raw(json: &str) -> EventData {
        EventData::Raw(RawValue::from_string(json.to_string()).expect("valid JSON"))
    }

    /// About how many bytes it serialises to, to size buffers once.
    pub fn size_hint(&self) -> usize {
        match self {
            EventData::Raw(r) => r.get().len(),
            EventData::Change { method, key, value } => {
                16 + method.len() + key.len() + value.get().len()
            }
        }
    }

    /// Appends its JSON text, exactly what serde writes for it (tested), by
    /// hand: on the hot path serde's writer costs a UTF-8 check of the whole
    /// frame that pushing known-good strings does not.
    pub fn write_to(&self, out: &mut String) {
        match self {
            EventData::Raw(r) => out.push_str(r.get()),
            EventData::Change { method, key, value } => {
                // `method` and `key` are imrelay's own identifiers: nothing to escape.
                out.push_str(r#"{"method":""#);
                out.push_str(method);
                out.push_str(r#"",""#);
                out.push_str(key);
                out.push_str(r#"":"#);
                out.push_str(value.get());
                out.push('}');
            }
        }
    }

    /// Feeds what identifies it to `h` (duplicate detection on a handover).
    pub fn hash_into(&self, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        match self {
            EventData::Raw(r) => r.get().hash(h),
            EventData::Change { method, key, value } => (method, key, value.get()).hash(h),
        }
    }
}

impl PartialEq for EventData {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (EventData::Raw(a), EventData::Raw(b)) => a.get() == b.get(),
            (
                EventData::Change { method, key, value },
                EventData::Change {
                    method: m,
                    key: k,
                    value: v,
                },
            ) => method == m && key == k && value.get() == v.get(),
            _ => false,
        }
    }
}

impl serde::Serialize for EventData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            EventData::Raw(r) => r.serialize(s),
            EventData::Change { method, key, value } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("method", method)?;
                m.serialize_entry(key, value)?;
                m.end()
            }
        }
    }
}

/// What a Rocket.Chat call can go wrong with, in terms a backend can act on.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RcError {
    /// The token is not (or no longer) valid.
    #[error("Rocket.Chat rejected the token (401)")]
    Unauthorized,
    /// Rocket.Chat rejected the login: wrong password or unknown user.
    #[error("Rocket.Chat rejected the login: {0}")]
    BadCredentials(String),
    /// The account lacks a permission.
    #[error("Rocket.Chat refused: {0}")]
    Forbidden(String),
    /// No such user or resource.
    #[error("not found in Rocket.Chat: {0}")]
    NotFound(String),
    /// Username or email already taken.
    #[error("conflict in Rocket.Chat: {0}")]
    Conflict(String),
    /// Rate-limited: retry after this long.
    #[error("Rocket.Chat rate-limited the call; retry in {}s (grant the users' role the permission api-bypass-rate-limit, or raise API_Enable_Rate_Limiter_Limit_Calls_Default)", retry_after.as_secs_f64().ceil())]
    RateLimited {
        /// From `X-RateLimit-Reset` (epoch ms) or the DDP `timeToReset`.
        retry_after: Duration,
    },
    /// Two-factor authentication blocks the call; the text names the setting to change.
    #[error("Rocket.Chat demands two-factor authentication: {0}")]
    TwoFactor(String),
    /// Rocket.Chat blocked logins after failures.
    #[error("Rocket.Chat blocked logins after failed attempts ({0}); check the password policy, then wait or adjust Block_Multiple_Failed_Logins_*")]
    LoginBlocked(String),
    /// The account is deactivated.
    #[error("the Rocket.Chat account is deactivated")]
    Deactivated,
    /// Rocket.Chat said 400 for another reason.
    #[error("Rocket.Chat rejected the request: {0}")]
    Rejected(String),
    /// Rocket.Chat answered 5xx or something unparseable.
    #[error("Rocket.Chat failed: {0}")]
    Server(String),
    /// Rocket.Chat could not be reached (refused, DNS, TLS, timeout).
    #[error("Rocket.Chat is unreachable: {0}")]
    Unreachable(String),
}

/// The advice for a `totp-required` answer, by 2FA method.
pub fn two_factor_advice(method: &str) -> String {
    match method {
        "email" => "the user has email two-factor authentication (a verified email with Accounts_TwoFactorAuthentication_By_Email_Auto_Opt_In on); create users with verified:false, or set Accounts_TwoFactorAuthentication_By_Email_Auto_Opt_In=false before creating them".into(),
        "password" => "the admin call needs the x-2fa-code password fallback; check rocketchat.admin_password".into(),
        other => format!("method {other}; disable two-factor authentication for this account"),
    }
}

/// What a DDP stream event means for imrelay.
#[derive(Debug, PartialEq)]
pub enum Mapped {
    /// Relay to the user's clients.
    Event(Event),
    /// Rocket.Chat logged the user out (`force_logout`).
    Revoked,
    /// Nothing to relay.
    Ignore,
}

fn method_word(action: &RawValue) -> &'static str {
    match action.get() {
        "\"inserted\"" => "insert",
        "\"removed\"" => "remove",
        _ => "update",
    }
}

/// Maps a `changed` stream event to a client event (docs/DESIGN.md §4). The
/// arguments stay raw JSON text: the hot path copies bytes, it does not
/// build values.
pub fn map_event(collection: &str, event_name: &str, args: &[&RawValue]) -> Mapped {
    let arg =
        |i: usize| -> Box<RawValue> { args.get(i).copied().unwrap_or(RawValue::NULL).to_owned() };
    let event = |name, data| Mapped::Event(Event { name, data });
    let change = |method, key, value| EventData::Change { method, key, value };
    match collection {
        "stream-room-messages" if event_name == "__my_messages__" => {
            // Rocket.Chat also streams public rooms the user merely can read.
            #[derive(serde::Deserialize)]
            struct Meta {
                #[serde(rename = "roomParticipant")]
                room_participant: Option<bool>,
            }
            let participant = args
                .get(1)
                .and_then(|m| serde_json::from_str::<Meta>(m.get()).ok())
                .and_then(|m| m.room_participant);
            if participant == Some(true) {
                event("getRoomMessageNotification", EventData::Raw(arg(0)))
            } else {
                Mapped::Ignore
            }
        }
        "stream-notify-user" => {
            let method = || args.first().map_or("update", |a| method_word(a));
            match event_name.rsplit_once('/').map(|(_, e)| e) {
                Some("subscriptions-changed") => event(
                    "getRoomSubscriptionChangedNotification",
                    change(method(), "msg", arg(1)),
                ),
                Some("rooms-changed") => event(
                    "getRoomChangedNotification",
                    change(method(), "room", arg(1)),
                ),
                Some("notification") => event("getDesktopNotification", EventData::Raw(arg(0))),
                Some("message") => event("getEphemeralMessage", EventData::Raw(arg(0))),
                Some("force_logout") => Mapped::Revoked,
                _ => Mapped::Ignore,
            }
        }
        _ => Mapped::Ignore,
    }
}

/// Every event name imrelay delivers, and the change words: what a stored
/// event's names are read back into.
pub(crate) const EVENT_WORDS: &[&str] = &[
    "getRoomMessageNotification",
    "getRoomSubscriptionChangedNotification",
    "getRoomChangedNotification",
    "getDesktopNotification",
    "getEphemeralMessage",
    "reloadRequired",
    "insert",
    "update",
    "remove",
    "msg",
    "room",
];

/// The `stream-notify-user` events a session subscribes to.
pub const USER_EVENTS: [&str; 5] = [
    "subscriptions-changed",
    "rooms-changed",
    "notification",
    "message",
    "force_logout",
];

/// The streams a session of user `uid` subscribes to, as (stream, event):
/// the user's messages in every room, and its own notifications.
pub fn subscriptions(uid: &str) -> impl Iterator<Item = (&'static str, String)> + '_ {
    std::iter::once(("stream-room-messages", "__my_messages__".to_string())).chain(
        USER_EVENTS
            .iter()
            .map(move |ev| ("stream-notify-user", format!("{uid}/{ev}"))),
    )
}

/// Rocket.Chat's named errors, the same over REST (`errorType`) and DDP
/// (`error`): the one place they are told apart. `None` for a name that
/// says nothing by itself (the caller then looks at the status or code).
pub fn classify_named(name: &str, message: &str, details: Option<&Value>) -> Option<RcError> {
    let detail = |k: &str| details.and_then(|d| d.get(k));
    Some(match name {
        "totp-required" | "totp-invalid" => {
            let method = detail("method")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            RcError::TwoFactor(two_factor_advice(method))
        }
        n if n.starts_with("error-login-blocked") => RcError::LoginBlocked(message.to_string()),
        "error-user-is-not-activated" => RcError::Deactivated,
        _ => return None,
    })
}

#[cfg(test)]
mod fuzz {
    use super::ddp::{parse, ServerMsg};
    use super::{map_event, Mapped};
    use crate::testing::{json_ish, json_value};
    use proptest::prelude::*;
    use serde_json::json;

    fn event_data(frame: &[u8]) -> Option<String> {
        match parse(frame) {
            Ok(ServerMsg::Changed {
                collection,
                event_name,
                args,
            }) => match map_event(&collection, &event_name, &args) {
                Mapped::Event(e) => Some(serde_json::to_string(&e.data).expect("serialises")),
                _ => None,
            },
            _ => None,
        }
    }

    proptest! {
        /// Whatever Rocket.Chat sends, parsing and mapping never panic.
        #[test]
        fn any_frame_from_rocket_chat_is_handled(bytes in proptest::collection::vec(any::<u8>(), 0..600), text in json_ish()) {
            let _ = event_data(&bytes);
            let _ = event_data(text.as_bytes());
        }

        /// A `changed` frame of any content maps to an event whose data is
        /// valid JSON: clients never get a broken frame.
        #[test]
        fn mapped_events_are_valid_json(
            collection in prop_oneof![Just("stream-room-messages"), Just("stream-notify-user"), Just("other")],
            event in prop_oneof![
                Just("__my_messages__".to_string()),
                Just("u1/subscriptions-changed".to_string()),
                Just("u1/rooms-changed".to_string()),
                Just("u1/notification".to_string()),
                Just("u1/message".to_string()),
                Just("u1/force_logout".to_string()),
                "\\PC{0,20}",
            ],
            args in proptest::collection::vec(json_value(), 0..4),
            participant in any::<bool>(),
        ) {
            let mut args = args;
            if collection == "stream-room-messages" {
                args.resize(2, json!(null));
                args[1] = json!({"roomParticipant": participant});
            }
            let frame = json!({"msg": "changed", "collection": collection, "id": "id", "fields": {"eventName": event, "args": args}});
            if let Some(data) = event_data(frame.to_string().as_bytes()) {
                prop_assert!(serde_json::from_str::<serde_json::Value>(&data).is_ok(), "{data}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn mapped(collection: &str, event: &str, args: Value) -> Mapped {
        let raw: Vec<Box<RawValue>> = args
            .as_array()
            .unwrap()
            .iter()
            .map(|a| serde_json::value::to_raw_value(a).unwrap())
            .collect();
        let refs: Vec<&RawValue> = raw.iter().map(|r| r.as_ref()).collect();
        map_event(collection, event, &refs)
    }

    fn data(m: Mapped) -> (&'static str, Value) {
        match m {
            Mapped::Event(e) => (e.name, serde_json::to_value(&e.data).unwrap()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn maps_events_as_the_design_says() {
        let msg = json!({"_id": "m", "rid": "r", "msg": "hi"});
        assert_eq!(
            data(mapped(
                "stream-room-messages",
                "__my_messages__",
                json!([msg, {"roomParticipant": true, "roomType": "d"}])
            )),
            ("getRoomMessageNotification", msg.clone())
        );
        assert_eq!(
            mapped(
                "stream-room-messages",
                "__my_messages__",
                json!([msg, {"roomParticipant": false}])
            ),
            Mapped::Ignore
        );
        assert_eq!(
            data(mapped(
                "stream-notify-user",
                "u1/subscriptions-changed",
                json!(["inserted", {"_id": "s"}])
            )),
            (
                "getRoomSubscriptionChangedNotification",
                json!({"method": "insert", "msg": {"_id": "s"}})
            )
        );
        assert_eq!(
            data(mapped(
                "stream-notify-user",
                "u1/rooms-changed",
                json!(["removed", {"_id": "r"}])
            )),
            (
                "getRoomChangedNotification",
                json!({"method": "remove", "room": {"_id": "r"}})
            )
        );
        assert_eq!(
            data(mapped(
                "stream-notify-user",
                "u1/subscriptions-changed",
                json!(["updated", {"_id": "s"}])
            ))
            .1["method"],
            "update"
        );
        assert_eq!(
            mapped("stream-notify-user", "u1/force_logout", json!([])),
            Mapped::Revoked
        );
        assert_eq!(
            mapped("stream-notify-user", "u1/userData", json!([{}])),
            Mapped::Ignore
        );
    }
}
