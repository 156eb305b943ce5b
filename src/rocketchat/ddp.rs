//! DDP frames (`docs/protocol/rocketchat.md` §2–§3).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::borrow::Cow;

/// A server frame, by `msg`. Borrows from the frame's bytes.
#[derive(Debug)]
pub enum ServerMsg<'a> {
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
        error: Option<Value>,
    },
    /// `changed` on a stream collection (the hot path: nothing is copied).
    Changed {
        /// e.g. `stream-notify-user`.
        collection: Cow<'a, str>,
        /// `fields.eventName`.
        event_name: Cow<'a, str>,
        /// `fields.args`, each left as raw JSON.
        args: Vec<&'a RawValue>,
    },
    /// `error`: the server could not parse or accept a frame.
    Error(String),
    /// `pong`.
    Pong,
    /// Anything else (`updated`, `added`, `removed`, `server_id`).
    Other,
}

/// A server frame. `F` is how `fields` is read: as a stream event's
/// ([`Fields`]), so that a `changed` frame, most of which is the event's
/// arguments, is scanned once; or raw, for a frame whose `fields` is some
/// other document.
#[derive(Deserialize)]
struct Frame<'a, F> {
    #[serde(borrow)]
    msg: Option<Text<'a>>,
    #[serde(borrow)]
    collection: Option<Text<'a>>,
    fields: Option<F>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
    subs: Option<Vec<String>>,
    version: Option<String>,
    reason: Option<String>,
}

/// A string borrowed from the frame unless it has escapes. serde borrows a
/// `Cow` only when it is the field's whole type, never inside an `Option`,
/// so `Option<Cow<str>>` allocated twice per event.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, rename = "eventName")]
    event_name: Option<Text<'a>>,
    #[serde(borrow, default)]
    args: Vec<&'a RawValue>,
}

fn value(raw: Option<&RawValue>) -> Option<Value> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

/// Parses a text frame.
pub fn parse(text: &[u8]) -> Result<ServerMsg<'_>, serde_json::Error> {
    match serde_json::from_slice::<Frame<'_, Fields<'_>>>(text) {
        Ok(f) => interpret(f, Ok),
        // `fields` is not a stream event's (or the frame is not JSON at all).
        Err(_) => {
            let f: Frame<'_, &RawValue> = serde_json::from_slice(text)?;
            interpret(f, |raw| serde_json::from_str(raw.get()))
        }
    }
}

fn interpret<'a, F>(
    f: Frame<'a, F>,
    fields: impl FnOnce(F) -> Result<Fields<'a>, serde_json::Error>,
) -> Result<ServerMsg<'a>, serde_json::Error> {
    let id = || {
        f.id.map(|i| {
            serde_json::from_str::<String>(i.get()).unwrap_or_else(|_| i.get().to_string())
        })
        .unwrap_or_default()
    };
    Ok(match f.msg.as_ref().map(|m| &*m.0) {
        Some("changed") => {
            let (event_name, args) = match f.fields {
                Some(raw) => {
                    let f = fields(raw)?;
                    (f.event_name, f.args)
                }
                None => (None, vec![]),
            };
            ServerMsg::Changed {
                collection: f.collection.map(|t| t.0).unwrap_or_default(),
                event_name: event_name.map(|t| t.0).unwrap_or_default(),
                args,
            }
        }
        Some("connected") => ServerMsg::Connected,
        Some("failed") => ServerMsg::Failed(f.version.unwrap_or_default()),
        Some("ping") => ServerMsg::Ping(value(f.id)),
        Some("result") => ServerMsg::Result {
            id: id(),
            result: value(f.result),
            error: value(f.error),
        },
        Some("ready") => ServerMsg::Ready(f.subs.unwrap_or_default()),
        Some("nosub") => ServerMsg::NoSub {
            id: id(),
            error: value(f.error),
        },
        Some("error") => ServerMsg::Error(f.reason.unwrap_or_default()),
        Some("pong") => ServerMsg::Pong,
        _ => ServerMsg::Other,
    })
}

/// `connect` for version 1.
pub fn connect() -> String {
    json!({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}).to_string()
}

/// DDP `login` with the password digest (`login_method = "ddp"`).
pub fn password_login(id: &str, username: &str, digest: &str) -> String {
    method(
        id,
        "login",
        json!([{"user": {"username": username}, "password": {"digest": digest, "algorithm": "sha-256"}}]),
    )
}

/// DDP `login` resuming a token.
pub fn resume_login(id: &str, token: &str) -> String {
    method(id, "login", json!([{ "resume": token }]))
}

/// A failed DDP login as an [`RcError`](super::RcError): the named errors
/// as over REST, then Meteor's 403s.
pub fn login_error(e: &Value) -> super::RcError {
    use super::RcError;
    let (code, reason) = error_parts(e);
    if let Some(named) = super::classify_named(&code, &reason, e.get("details")) {
        return named;
    }
    match code.as_str() {
        "too-many-requests" => rate_limited(e),
        "403" if reason == "User not found" => {
            RcError::NotFound(format!("no Rocket.Chat user ({reason})"))
        }
        "403" => RcError::BadCredentials(format!(
            "{reason}; does the user's password follow users.password?"
        )),
        _ => RcError::Rejected(format!("{code}: {reason}")),
    }
}

/// DDP's rate limiter refusing a method (REST's answers 429 with headers
/// instead): the wait it names, kept within reason so that a bad value
/// cannot stall a login or a backfill for long.
pub(crate) fn rate_limited(e: &Value) -> super::RcError {
    let ms = e
        .pointer("/details/timeToReset")
        .and_then(Value::as_u64)
        .unwrap_or(10_000)
        .clamp(50, 60_000);
    super::RcError::RateLimited {
        retry_after: std::time::Duration::from_millis(ms),
    }
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
    fn login_errors_classify_as_over_rest() {
        use crate::rocketchat::RcError;
        use std::time::Duration;
        let cases = [
            (
                json!({"error": "totp-required", "reason": "TOTP Required", "details": {"method": "email"}}),
                "TwoFactor",
            ),
            (
                json!({"error": "error-login-blocked-for-ip", "reason": "blocked"}),
                "LoginBlocked",
            ),
            (
                json!({"error": "error-user-is-not-activated", "reason": "inactive"}),
                "Deactivated",
            ),
            (
                json!({"error": 403, "reason": "User not found"}),
                "NotFound",
            ),
            (
                json!({"error": 403, "reason": "Incorrect password"}),
                "BadCredentials",
            ),
            (
                json!({"error": "something-else", "reason": "odd"}),
                "Rejected",
            ),
        ];
        for (e, want) in cases {
            let got = format!("{:?}", login_error(&e));
            assert!(got.starts_with(want), "{e}: {got}");
        }
        let limited =
            login_error(&json!({"error": "too-many-requests", "details": {"timeToReset": 5000}}));
        assert_eq!(
            limited,
            RcError::RateLimited {
                retry_after: Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn parses_frames() {
        assert!(matches!(
            parse(br#"{"server_id":"0"}"#).unwrap(),
            ServerMsg::Other
        ));
        match parse(br#"{"msg":"changed","collection":"stream-notify-user","id":"id","fields":{"eventName":"u/message","args":[{"a":1},"x"]}}"#).unwrap() {
            ServerMsg::Changed { collection, event_name, args } => {
                assert_eq!((collection.as_ref(), event_name.as_ref()), ("stream-notify-user", "u/message"));
                assert_eq!(args.iter().map(|a| a.get()).collect::<Vec<_>>(), [r#"{"a":1}"#, r#""x""#]);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(parse(br#"{"msg":"result","id":"1","error":{"error":403}}"#).unwrap(), ServerMsg::Result { id, result: None, error: Some(e) } if id == "1" && e == json!({"error": 403}))
        );
        assert!(
            matches!(parse(br#"{"msg":"ping","id":"7"}"#).unwrap(), ServerMsg::Ping(Some(v)) if v == json!("7"))
        );
        assert!(
            matches!(parse(br#"{"msg":"result","id":"1"}"#).unwrap(), ServerMsg::Result { id, result: None, error: None } if id == "1")
        );
        assert!(parse(b"nope").is_err());
        assert_eq!(pong(Some(json!("7"))), r#"{"msg":"pong","id":"7"}"#);
    }

    fn changed(frame: &[u8]) -> (Cow<'_, str>, Cow<'_, str>, Vec<&str>) {
        match parse(frame).unwrap() {
            ServerMsg::Changed {
                collection,
                event_name,
                args,
            } => (
                collection,
                event_name,
                args.iter().map(|a| a.get()).collect(),
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn changed_frames_read_the_same_whichever_key_comes_first() {
        let meteor = changed(
            br#"{"msg":"changed","collection":"stream-notify-user","id":"id","fields":{"eventName":"u/rooms-changed","args":["updated",{"_id":"r"}]}}"#,
        );
        let reordered = changed(
            br#"{"fields":{"args":["updated",{"_id":"r"}],"eventName":"u/rooms-changed"},"id":"id","collection":"stream-notify-user","msg":"changed"}"#,
        );
        assert_eq!(meteor, reordered);
        assert!(matches!(meteor.0, Cow::Borrowed(_)) && matches!(meteor.1, Cow::Borrowed(_)));
        // An escaped name is decoded, not borrowed raw.
        let (_, name, _) = changed(
            br#"{"msg":"changed","collection":"c","id":"id","fields":{"eventName":"u\/message","args":[]}}"#,
        );
        assert_eq!(name, "u/message");
        // No fields: an event with no name and no arguments, as before.
        assert_eq!(
            changed(br#"{"msg":"changed","collection":"c","id":"id"}"#),
            (Cow::from("c"), Cow::from(""), vec![])
        );
        // Arguments that are not a list are an error on either path.
        assert!(parse(br#"{"msg":"changed","collection":"c","fields":{"args":7}}"#).is_err());
        assert!(parse(br#"{"collection":"c","msg":"changed","fields":{"args":7}}"#).is_err());
        // What the general frame rejects, the one pass rejects too.
        assert!(parse(br#"{"msg":"changed","collection":"c","msg":"ping"}"#).is_err());
        assert!(parse(br#"{"msg":"changed","collection":"c","subs":5}"#).is_err());
    }
}
