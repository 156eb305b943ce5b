//! The native protocol's frames (the README's "Client protocol: native"):
//! what the server sends and what a client may send, typed, and written
//! with serde_json into a buffer sized once (an event's payload goes in as
//! it came from Rocket.Chat).

use crate::rocketchat::{Event, EventData};
use bytestring::ByteString;
use serde::Serialize;

/// Server to client.
#[derive(Serialize, Debug)]
#[serde(tag = "type", rename_all = "camelCase")]
pub(crate) enum ServerFrame<'a> {
    /// First, once registered: who, the user's current sequence and its
    /// epoch, and, for a client that said where it left off, whether what
    /// it missed follows.
    Welcome {
        /// The user.
        username: &'a str,
        /// The last event's number.
        seq: u64,
        /// The numbering's epoch: a `since` is only good within one.
        epoch: &'a str,
        /// `true`: the missed events follow, then the live ones; `false`:
        /// they are gone (reload through the REST proxy).
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
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
    /// The frame's text. An event, the hot path, is written by hand into a
    /// buffer sized once, exactly as serde writes it (tested against it);
    /// the rest with serde.
    pub(crate) fn text(&self) -> ByteString {
        match self {
            ServerFrame::Event { seq, event, data } => {
                use std::fmt::Write as _;
                let mut f = String::with_capacity(48 + event.len() + data.size_hint());
                // `event` is one of imrelay's own event names: nothing to escape.
                f.push_str(r#"{"type":"event","seq":"#);
                let _ = write!(f, "{seq}");
                f.push_str(r#","event":""#);
                f.push_str(event);
                f.push_str(r#"","data":"#);
                data.write_to(&mut f);
                f.push('}');
                ByteString::from(f)
            }
            other => {
                ByteString::from(serde_json::to_string(other).expect("a native frame serialises"))
            }
        }
    }
}

/// Client to server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientFrame {
    /// `{"type":"ping"}`, answered with [`ServerFrame::Pong`].
    Ping,
}

impl ClientFrame {
    /// A client's text message, or why it is not one: only a JSON object
    /// whose `type` names a frame.
    pub(crate) fn parse(text: &[u8]) -> Result<ClientFrame, String> {
        let v: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
        match v.get("type").and_then(serde_json::Value::as_str) {
            Some("ping") => Ok(ClientFrame::Ping),
            _ => Err(format!(
                "unknown message type {}; clients send only {{\"type\":\"ping\"}}",
                v.get("type").unwrap_or(&serde_json::Value::Null)
            )),
        }
    }
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
    match ClientFrame::parse(text) {
        Ok(ClientFrame::Ping) => ServerFrame::Pong.text(),
        Err(message) => ServerFrame::Error { message: &message }.text(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The hand-written event frame is what serde writes for the typed one.
        #[test]
        fn event_frames_are_the_typed_frame(
            seq in proptest::prelude::any::<u64>(),
            doc in crate::testing::json_value(),
            change in proptest::prelude::any::<bool>(),
        ) {
            let value = serde_json::value::to_raw_value(&doc).unwrap();
            let data = if change {
                EventData::Change { method: "update", key: "room", value }
            } else {
                EventData::Raw(value)
            };
            let frame = ServerFrame::Event { seq, event: "getRoomChangedNotification", data: &data };
            proptest::prop_assert_eq!(&*frame.text(), serde_json::to_string(&frame).unwrap());
        }
    }

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
        let cases: [(ByteString, &str); 8] = [
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
                    epoch: "e1",
                    recovered: None,
                }
                .text(),
                r#"{"type":"welcome","username":"alice","seq":41,"epoch":"e1"}"#,
            ),
            (
                ServerFrame::Welcome {
                    username: "alice",
                    seq: 41,
                    epoch: "e1",
                    recovered: Some(false),
                }
                .text(),
                r#"{"type":"welcome","username":"alice","seq":41,"epoch":"e1","recovered":false}"#,
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
            (
                reply(br#"["ping"]"#),
                r#"{"type":"error","message":"unknown message type null; clients send only {\"type\":\"ping\"}"}"#,
            ),
        ];
        for (got, want) in cases {
            assert_eq!(&*got, want);
        }
    }
}
