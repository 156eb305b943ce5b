//! DDP frames (`protocol/rocketchat.md` §2–§3).

use serde_json::{json, Value};

/// A server frame, by `msg`.
#[derive(Debug, PartialEq)]
pub enum ServerMsg {
    /// `connected`.
    Connected,
    /// `failed`: no common version.
    Failed(String),
    /// `ping` (echo the id in the pong).
    Ping(Option<Value>),
    /// `result` of a method.
    Result {
        /// The method id.
        id: String,
        /// `result`, absent for `undefined`.
        result: Option<Value>,
        /// `error`, a Meteor error object.
        error: Option<Value>,
    },
    /// `ready` for subscriptions.
    Ready(Vec<String>),
    /// `nosub`, with an error when refused.
    NoSub {
        /// The subscription id.
        id: String,
        /// Why.
        error: Option<Value>,
    },
    /// `changed` on a stream collection.
    Changed {
        /// e.g. `stream-notify-user`.
        collection: String,
        /// `fields.eventName`.
        event_name: String,
        /// `fields.args`.
        args: Value,
    },
    /// `error`: the server could not parse or accept a frame.
    Error(String),
    /// Anything else (`pong`, `updated`, `added`, `removed`, `server_id`).
    Other,
}

/// Parses a text frame.
pub fn parse(text: &[u8]) -> Result<ServerMsg, serde_json::Error> {
    let v: Value = serde_json::from_slice(text)?;
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(match v.get("msg").and_then(Value::as_str) {
        Some("connected") => ServerMsg::Connected,
        Some("failed") => ServerMsg::Failed(s("version")),
        Some("ping") => ServerMsg::Ping(v.get("id").cloned()),
        Some("result") => ServerMsg::Result {
            id: s("id"),
            result: v.get("result").cloned(),
            error: v.get("error").cloned(),
        },
        Some("ready") => ServerMsg::Ready(
            v.get("subs")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        ),
        Some("nosub") => ServerMsg::NoSub {
            id: s("id"),
            error: v.get("error").cloned(),
        },
        Some("changed") => {
            let fields = v.get("fields").cloned().unwrap_or(Value::Null);
            ServerMsg::Changed {
                collection: s("collection"),
                event_name: fields
                    .get("eventName")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                args: fields.get("args").cloned().unwrap_or(Value::Null),
            }
        }
        Some("error") => ServerMsg::Error(s("reason")),
        _ => ServerMsg::Other,
    })
}

/// `connect` for version 1.
pub fn connect() -> String {
    json!({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}).to_string()
}

/// A method call.
pub fn method(id: &str, name: &str, params: Value) -> String {
    json!({"msg": "method", "method": name, "params": params, "id": id}).to_string()
}

/// A stream subscription (`useCollection: false`).
pub fn sub_stream(id: &str, name: &str, event: &str) -> String {
    json!({"msg": "sub", "id": id, "name": name, "params": [event, {"useCollection": false, "args": []}]}).to_string()
}

/// A pong echoing the ping's id.
pub fn pong(id: Option<Value>) -> String {
    match id {
        Some(id) => json!({"msg": "pong", "id": id}).to_string(),
        None => r#"{"msg":"pong"}"#.to_string(),
    }
}

/// A ping.
pub fn ping() -> String {
    r#"{"msg":"ping"}"#.to_string()
}

/// The Meteor error's code (`error`) and reason, for logs and decisions.
pub fn error_parts(e: &Value) -> (String, String) {
    let code = match e.get("error") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let reason = e
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    (code, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frames() {
        assert_eq!(parse(br#"{"server_id":"0"}"#).unwrap(), ServerMsg::Other);
        assert_eq!(
            parse(br#"{"msg":"ping","id":"7"}"#).unwrap(),
            ServerMsg::Ping(Some(json!("7")))
        );
        assert_eq!(
            parse(br#"{"msg":"result","id":"1"}"#).unwrap(),
            ServerMsg::Result {
                id: "1".into(),
                result: None,
                error: None
            }
        );
        assert!(parse(b"nope").is_err());
        assert_eq!(pong(Some(json!("7"))), r#"{"msg":"pong","id":"7"}"#);
    }
}
