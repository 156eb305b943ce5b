//! The native protocol's frames (the README's "Client protocol: native"):
//! what the server sends and what a client may send, typed, and written
//! with serde_json into a buffer sized once (an event's payload goes in as
//! it came from Rocket.Chat).

use crate::rocketchat::{Event, EventData};
use bytestring::ByteString;
use serde::{Deserialize, Serialize};

/// Server to client.
#[derive(Serialize, Debug)]
#[serde(tag = "type", rename_all = "camelCase")]
pub(crate) enum ServerFrame<'a> {
    /// First, once registered: who, and the user's current sequence.
    Welcome {
        /// The user.
        username: &'a str,
        /// The last event's number.
        seq: u64,
    },
    /// An event, numbered per user (the same on all of a user's clients).
    Event {
        /// Its number.
        seq: u64,
        /// `getRoomMessageNotification`, …
        event: &'a str,
        /// Its payload.
        data: &'a EventData,
    },
    /// The session is over for good (a close follows).
    SessionEnded {
        /// `expired`, `logged_out`, `deleted`, `revoked` or `failed`.
        reason: &'a str,
    },
    /// The answer to a ping.
    Pong,
    /// What the client sent could not be understood.
    Error {
        /// Why, for a developer.
        message: &'a str,
    },
}

impl ServerFrame<'_> {
    /// The frame's text.
    pub(crate) fn text(&self) -> ByteString {
        let size = match self {
            ServerFrame::Event { event, data, .. } => 48 + event.len() + data.size_hint(),
            _ => 64,
        };
        let mut out = Vec::with_capacity(size);
        // Writing these into a Vec cannot fail: every field serialises.
        serde_json::to_writer(&mut out, self).expect("a native frame serialises");
        ByteString::try_from(out).expect("serde_json writes UTF-8")
    }
}

/// Client to server.
#[derive(Deserialize, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub(crate) enum ClientFrame {
    /// Answered with [`ServerFrame::Pong`].
    Ping,
}

/// The native protocol's event frame, built once per event for all of a
/// user's native clients (the registry's [`EventFrame`](crate::core::registry::EventFrame)).
pub(crate) fn event_frame(seq: u64, event: &Event) -> ByteString {
    ServerFrame::Event {
        seq,
        event: event.name,
        data: &event.data,
    }
    .text()
}

/// The answer to a client's text message: a pong, or an error saying why.
pub(crate) fn reply(text: &[u8]) -> ByteString {
    match serde_json::from_slice::<ClientFrame>(text) {
        Ok(ClientFrame::Ping) => ServerFrame::Pong.text(),
        Err(e) => {
            let message = match serde_json::from_slice::<serde_json::Value>(text) {
                Ok(v) => format!(
                    "unknown message type {}; clients send only {{\"type\":\"ping\"}}",
                    v.get("type").unwrap_or(&serde_json::Value::Null)
                ),
                Err(_) => format!("not JSON: {e}"),
            };
            ServerFrame::Error { message: &message }.text()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_like_the_readme() {
        let e = Event {
            name: "getRoomMessageNotification",
            data: EventData::raw(r#"{"msg":"hi"}"#),
        };
        let change = Event {
            name: "getRoomSubscriptionChangedNotification",
            data: EventData::Change {
                method: "insert",
                key: "msg",
                value: serde_json::value::RawValue::from_string(r#"{"rid":"r"}"#.into()).unwrap(),
            },
        };
        let cases: [(ByteString, &str); 6] = [
            (
                event_frame(42, &e),
                r#"{"type":"event","seq":42,"event":"getRoomMessageNotification","data":{"msg":"hi"}}"#,
            ),
            (
                event_frame(43, &change),
                r#"{"type":"event","seq":43,"event":"getRoomSubscriptionChangedNotification","data":{"method":"insert","msg":{"rid":"r"}}}"#,
            ),
            (
                ServerFrame::Welcome {
                    username: "alice",
                    seq: 41,
                }
                .text(),
                r#"{"type":"welcome","username":"alice","seq":41}"#,
            ),
            (
                ServerFrame::SessionEnded {
                    reason: "logged_out",
                }
                .text(),
                r#"{"type":"sessionEnded","reason":"logged_out"}"#,
            ),
            (reply(br#"{"type":"ping"}"#), r#"{"type":"pong"}"#),
            (
                reply(br#"{"type":"hello"}"#),
                r#"{"type":"error","message":"unknown message type \"hello\"; clients send only {\"type\":\"ping\"}"}"#,
            ),
        ];
        for (got, want) in cases {
            assert_eq!(&*got, want);
        }
    }
}
