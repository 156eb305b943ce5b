//! The SignalR JSON hub protocol (`docs/protocol/signalr.md` §3–§4): records are
//! JSON objects each ended by 0x1E; several may share a websocket message,
//! and a record never spans two.

use crate::rocketchat::{Event, EventData};
use bytestring::ByteString;
use serde_json::Value;

/// The record separator.
pub const RS: char = '\u{1e}';

/// What the hub sends after the handshake, by the protocol's message type.
#[derive(Debug)]
pub enum ServerRecord<'a> {
    /// 1, a push: an Invocation without `invocationId` (with one it would be
    /// a "client result" the client must answer).
    Invocation {
        /// The client method, the event's name.
        target: &'a str,
        /// Its one argument, the event's payload.
        argument: &'a EventData,
    },
    /// 3, the answer to a client's invocation: void, or an error.
    Completion {
        /// The client's `invocationId`.
        invocation_id: &'a str,
        /// Why it failed.
        error: Option<&'a str>,
    },
    /// 6, a keep-alive.
    Ping,
    /// 8, stateful reconnect: everything up to `sequence_id` from the client
    /// was processed.
    Ack {
        /// The client's id acknowledged.
        sequence_id: u64,
    },
    /// 9, stateful reconnect, first on a new transport: our next sequenced
    /// record has this id.
    Sequence {
        /// Its id.
        sequence_id: u64,
    },
    /// 7, the hub closes; with `allow_reconnect` the client comes back at once.
    Close {
        /// Why.
        error: &'a str,
        /// Reconnect at once (omitted when false, as ASP.NET does).
        allow_reconnect: bool,
    },
}

impl ServerRecord<'_> {
    fn kind(&self) -> u8 {
        match self {
            ServerRecord::Invocation { .. } => 1,
            ServerRecord::Completion { .. } => 3,
            ServerRecord::Ping => 6,
            ServerRecord::Close { .. } => 7,
            ServerRecord::Ack { .. } => 8,
            ServerRecord::Sequence { .. } => 9,
        }
    }

    /// The record's text, separator included. A push, the hot path, is
    /// written by hand into a buffer sized once, exactly as serde writes it
    /// (tested against it); the rest with serde.
    pub fn text(&self) -> ByteString {
        let mut t = match self {
            ServerRecord::Invocation { target, argument } => {
                let mut f = String::with_capacity(40 + target.len() + argument.size_hint());
                // `target` is one of imrelay's own event names: nothing to escape.
                f.push_str(r#"{"type":1,"target":""#);
                f.push_str(target);
                f.push_str(r#"","arguments":["#);
                argument.write_to(&mut f);
                f.push_str("]}");
                f
            }
            other => serde_json::to_string(other).expect("a hub record serialises"),
        };
        t.push(RS);
        ByteString::from(t)
    }
}

impl serde::Serialize for ServerRecord<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", &self.kind())?;
        match self {
            ServerRecord::Invocation { target, argument } => {
                m.serialize_entry("target", target)?;
                m.serialize_entry("arguments", &[argument])?;
            }
            ServerRecord::Completion {
                invocation_id,
                error,
            } => {
                m.serialize_entry("invocationId", invocation_id)?;
                if let Some(e) = error {
                    m.serialize_entry("error", e)?;
                }
            }
            ServerRecord::Ping => {}
            ServerRecord::Ack { sequence_id } | ServerRecord::Sequence { sequence_id } => {
                m.serialize_entry("sequenceId", sequence_id)?;
            }
            ServerRecord::Close {
                error,
                allow_reconnect,
            } => {
                m.serialize_entry("error", error)?;
                if *allow_reconnect {
                    m.serialize_entry("allowReconnect", &true)?;
                }
            }
        }
        m.end()
    }
}

/// The successful handshake answer.
pub const HANDSHAKE_OK: &str = "{}\u{1e}";

/// A push (the registry's [`EventFrame`](crate::core::registry::EventFrame));
/// the hub has no sequence numbers.
pub fn invocation_frame(_seq: u64, event: &Event) -> ByteString {
    ServerRecord::Invocation {
        target: event.name,
        argument: &event.data,
    }
    .text()
}

/// A failed handshake: `{"error": …}`.
pub fn handshake_error(message: &str) -> String {
    #[derive(serde::Serialize)]
    struct HandshakeError<'a> {
        error: &'a str,
    }
    let mut t = serde_json::to_string(&HandshakeError { error: message }).expect("serialises");
    t.push(RS);
    t
}

/// A Completion, void or with an error.
pub fn completion(invocation_id: &str, error: Option<&str>) -> ByteString {
    ServerRecord::Completion {
        invocation_id,
        error,
    }
    .text()
}

/// A Close record; `allow_reconnect` makes the client reconnect at once.
pub fn close(error: &str, allow_reconnect: bool) -> ByteString {
    ServerRecord::Close {
        error,
        allow_reconnect,
    }
    .text()
}

/// Splits complete records off `buf`, leaving an incomplete tail in it.
pub fn take_records(buf: &mut String) -> Vec<String> {
    let Some(last) = buf.rfind(RS) else {
        return vec![];
    };
    let tail = buf.split_off(last + RS.len_utf8());
    let whole = std::mem::replace(buf, tail);
    whole
        .split(RS)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
}

/// Checks the client's handshake record: the JSON protocol, version 1, or
/// 2 when stateful reconnect was negotiated; otherwise the error ASP.NET
/// would send.
pub fn check_handshake(record: &str, stateful: bool) -> Result<(), String> {
    let v: Value = serde_json::from_str(record).unwrap_or(Value::Null);
    let p = v
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let version = v.get("version").and_then(Value::as_u64);
    if p != "json" {
        Err(format!("The protocol '{p}' is not supported."))
    } else if !(version == Some(1) || stateful && version == Some(2)) {
        Err(format!(
            "The server does not support version {} of the 'json' protocol.",
            version.map_or("?".into(), |v| v.to_string())
        ))
    } else {
        Ok(())
    }
}

/// What a client record asks for.
#[derive(Debug, PartialEq)]
pub enum ClientMsg {
    /// Type 1 (or 4, a stream invocation): call `target`; answer if `id` is set.
    Invoke {
        /// `invocationId`.
        id: Option<String>,
        /// `target`.
        target: String,
        /// Type 4.
        stream: bool,
    },
    /// Type 6.
    Ping,
    /// Type 7.
    Close,
    /// Type 8: the client processed our records up to this id.
    Ack(u64),
    /// Type 9: the client's next sequenced record has this id.
    Sequence(u64),
    /// Anything else (ignored, as the protocol allows), by type.
    Other(u64),
}

impl ClientMsg {
    /// Whether it counts in stateful reconnect's sequence: invocations,
    /// stream items, completions and cancellations do.
    pub fn sequenced(&self) -> bool {
        matches!(self, ClientMsg::Invoke { .. } | ClientMsg::Other(2 | 3 | 5))
    }
}

/// Parses one record.
pub fn parse(record: &str) -> Result<ClientMsg, String> {
    let v: Value = serde_json::from_str(record).map_err(|e| format!("not JSON: {e}"))?;
    let t = v
        .get("type")
        .and_then(Value::as_u64)
        .ok_or("a message without a numeric type")?;
    Ok(match t {
        1 | 4 => ClientMsg::Invoke {
            id: v
                .get("invocationId")
                .and_then(Value::as_str)
                .map(str::to_string),
            target: v
                .get("target")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .ok_or("an invocation without a target")?
                .to_string(),
            stream: t == 4,
        },
        6 => ClientMsg::Ping,
        7 => ClientMsg::Close,
        8 | 9 => {
            let id = v
                .get("sequenceId")
                .and_then(Value::as_u64)
                .ok_or("an Ack or Sequence without a numeric sequenceId")?;
            if t == 8 {
                ClientMsg::Ack(id)
            } else {
                ClientMsg::Sequence(id)
            }
        }
        other => ClientMsg::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_on_the_separator() {
        let mut buf =
            format!("{{\"type\":6}}{RS}{{\"type\":1,\"target\":\"x\",\"arguments\":[]}}{RS}{{\"ty");
        let r = take_records(&mut buf);
        assert_eq!(r.len(), 2);
        assert_eq!(buf, "{\"ty");
        assert_eq!(parse(&r[0]).unwrap(), ClientMsg::Ping);
        assert_eq!(
            parse(&r[1]).unwrap(),
            ClientMsg::Invoke {
                id: None,
                target: "x".into(),
                stream: false
            }
        );
        assert!(parse("{}").is_err());
        let e = Event {
            name: "getRoomMessageNotification",
            data: EventData::raw(r#"{"msg":"hi"}"#),
        };
        assert_eq!(&*invocation_frame(1, &e), "{\"type\":1,\"target\":\"getRoomMessageNotification\",\"arguments\":[{\"msg\":\"hi\"}]}\u{1e}");
        assert_eq!(
            &*completion("0", None),
            "{\"type\":3,\"invocationId\":\"0\"}\u{1e}"
        );
        assert_eq!(
            &*completion("1", Some("no")),
            "{\"type\":3,\"invocationId\":\"1\",\"error\":\"no\"}\u{1e}"
        );
        assert_eq!(
            &*close("bye", true),
            "{\"type\":7,\"error\":\"bye\",\"allowReconnect\":true}\u{1e}"
        );
        assert_eq!(
            &*close("bye", false),
            "{\"type\":7,\"error\":\"bye\"}\u{1e}"
        );
        assert_eq!(&*ServerRecord::Ping.text(), "{\"type\":6}\u{1e}");
        assert_eq!(
            &*ServerRecord::Sequence { sequence_id: 3 }.text(),
            "{\"type\":9,\"sequenceId\":3}\u{1e}"
        );
        assert_eq!(
            &*ServerRecord::Ack { sequence_id: 2 }.text(),
            "{\"type\":8,\"sequenceId\":2}\u{1e}"
        );
        assert_eq!(parse(r#"{"type":8,"sequenceId":5}"#), Ok(ClientMsg::Ack(5)));
        assert_eq!(
            parse(r#"{"type":9,"sequenceId":1}"#),
            Ok(ClientMsg::Sequence(1))
        );
        assert!(parse(r#"{"type":9}"#).is_err());
        assert!(ClientMsg::Other(3).sequenced() && !ClientMsg::Ping.sequenced());
        let v2 = r#"{"protocol":"json","version":2}"#;
        assert!(check_handshake(v2, true).is_ok());
        assert!(
            check_handshake(v2, false).is_err(),
            "2 only when negotiated"
        );
        assert_eq!(handshake_error("nope"), "{\"error\":\"nope\"}\u{1e}");
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::testing::json_ish;
    use proptest::prelude::*;

    proptest! {
        /// Records split off a stream of any text lose nothing: the records,
        /// their separators and the tail left are the input again.
        #[test]
        fn records_lose_no_bytes(chunks in proptest::collection::vec(prop_oneof!["\\PC{0,20}", json_ish(), Just(RS.to_string())], 0..12)) {
            let mut buf = String::new();
            let mut seen = String::new();
            for c in &chunks {
                buf.push_str(c);
                for r in take_records(&mut buf) {
                    seen.push_str(&r);
                    let _ = parse(&r);
                    let _ = check_handshake(&r, true);
                }
            }
            seen.push_str(&buf);
            let input: String = chunks.concat().chars().filter(|c| *c != RS).collect();
            prop_assert_eq!(seen, input);
        }

        /// The hand-written push is what serde writes for the typed record.
        #[test]
        fn pushes_are_the_typed_record(doc in crate::testing::json_value(), change in any::<bool>()) {
            let value = serde_json::value::to_raw_value(&doc).unwrap();
            let argument = if change {
                EventData::Change { method: "insert", key: "msg", value }
            } else {
                EventData::Raw(value)
            };
            let record = ServerRecord::Invocation { target: "getRoomMessageNotification", argument: &argument };
            prop_assert_eq!(&*record.text(), format!("{}{RS}", serde_json::to_string(&record).unwrap()));
        }

        /// Only a well-formed invocation has a target; parsing never panics.
        #[test]
        fn invocations_need_a_target(text in json_ish()) {
            if let Ok(ClientMsg::Invoke { target, .. }) = parse(&text) {
                prop_assert!(!target.is_empty());
            }
        }
    }
}
