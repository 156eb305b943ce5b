//! The SignalR JSON hub protocol (`docs/protocol/signalr.md` §3–§4): records are
//! JSON objects each ended by 0x1E; several may share a websocket message,
//! and a record never spans two.

use crate::rocketchat::Event;
use bytestring::ByteString;
use serde_json::{json, Value};

/// The record separator.
pub const RS: char = '\u{1e}';

/// A Ping record.
pub const PING: &str = "{\"type\":6}\u{1e}";

/// The successful handshake answer.
pub const HANDSHAKE_OK: &str = "{}\u{1e}";

/// A push: an Invocation without `invocationId` (with one it would be a
/// "client result" the client must answer). The hub has no sequence numbers
/// (the registry's [`EventFrame`](crate::core::registry::EventFrame) passes one).
pub fn invocation_frame(_seq: u64, event: &Event) -> ByteString {
    let mut f = String::with_capacity(48 + event.name.len() + event.data.len());
    f.push_str(r#"{"type":1,"target":""#);
    f.push_str(event.name);
    f.push_str(r#"","arguments":["#);
    f.push_str(&event.data);
    f.push_str("]}");
    f.push(RS);
    ByteString::from(f)
}

/// A failed handshake.
pub fn handshake_error(message: &str) -> String {
    format!("{}{RS}", json!({ "error": message }))
}

/// A Completion, void or with an error.
pub fn completion(invocation_id: &str, error: Option<&str>) -> String {
    let mut m = json!({"type": 3, "invocationId": invocation_id});
    if let Some(e) = error {
        m["error"] = json!(e);
    }
    format!("{m}{RS}")
}

/// A Close record; `allow_reconnect` makes the client reconnect at once.
pub fn close(error: &str, allow_reconnect: bool) -> String {
    let mut m = json!({"type": 7, "error": error});
    if allow_reconnect {
        m["allowReconnect"] = json!(true);
    }
    format!("{m}{RS}")
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

/// Checks the client's handshake record: the JSON protocol, version 1;
/// otherwise the error ASP.NET would send.
pub fn check_handshake(record: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(record).unwrap_or(Value::Null);
    let p = v
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let version = v.get("version").and_then(Value::as_u64);
    if p != "json" {
        Err(format!("The protocol '{p}' is not supported."))
    } else if version != Some(1) {
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
    /// Anything else (ignored, as the protocol allows).
    Other,
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
        _ => ClientMsg::Other,
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
            data: r#"{"msg":"hi"}"#.to_string(),
        };
        assert_eq!(&*invocation_frame(1, &e), "{\"type\":1,\"target\":\"getRoomMessageNotification\",\"arguments\":[{\"msg\":\"hi\"}]}\u{1e}");
        assert_eq!(
            completion("0", None),
            "{\"type\":3,\"invocationId\":\"0\"}\u{1e}"
        );
        assert_eq!(
            close("bye", true),
            "{\"type\":7,\"error\":\"bye\",\"allowReconnect\":true}\u{1e}"
        );
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
                    let _ = check_handshake(&r);
                }
            }
            seen.push_str(&buf);
            let input: String = chunks.concat().chars().filter(|c| *c != RS).collect();
            prop_assert_eq!(seen, input);
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
