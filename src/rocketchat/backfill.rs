//! What Rocket.Chat emitted while a session's DDP socket was away, fetched
//! the way Rocket.Chat's own clients do after a reconnect: the user's
//! subscriptions and rooms changed since (`subscriptions.get` and
//! `rooms.get` with `updatedSince`: a new message changes its room), then,
//! for each of those rooms, the messages changed since
//! (`chat.syncMessages?roomId=&lastUpdate=`), as the user. They come back
//! as the events the streams would have carried, with EJSON dates as DDP
//! has them, each room's messages in timestamp order.

use super::rest::RestClient;
use super::{Credentials, Event, EventData, RcError};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The REST routes a backfill calls, each limited on its own by Rocket.Chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Route {
    /// `subscriptions.get`.
    Subscriptions,
    /// `rooms.get`.
    Rooms,
    /// `chat.syncMessages`.
    SyncMessages,
}

/// What a backfill found.
pub(crate) enum Missed {
    /// The events, in delivery order.
    Events(Vec<Event>),
    /// More messages than the bound: the clients should reload instead.
    TooMany,
}

/// Keys whose string values REST writes for what DDP sends as `{"$date": ms}`.
const DATE_KEYS: &[&str] = &[
    "ts",
    "_updatedAt",
    "editedAt",
    "ls",
    "lr",
    "lm",
    "tlm",
    "dlm",
    "_deletedAt",
];

fn iso(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// REST's dates back into DDP's EJSON, under the known date keys only (a
/// message text that looks like a date stays text).
fn ejson_dates(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if let (true, Value::String(s)) = (DATE_KEYS.contains(&k.as_str()), &*v) {
                    if let Ok(t) = humantime::parse_rfc3339(s) {
                        let ms =
                            t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
                        *v = json!({"$date": ms});
                        continue;
                    }
                }
                ejson_dates(v);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(ejson_dates),
        _ => {}
    }
}

fn raw(v: &Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).expect("a serialised value is JSON")
}

fn date_ms(v: &Value) -> i64 {
    v.get("$date").and_then(Value::as_i64).unwrap_or_default()
}

/// Fetches what changed for the user since `since`, at most `max_messages`
/// messages; `turn` is awaited before each call (the caller's rate limit).
pub(crate) async fn missed(
    rest: &RestClient,
    creds: &Credentials,
    since: SystemTime,
    max_messages: usize,
    turn: impl AsyncFn(Route),
) -> Result<Missed, RcError> {
    let since = iso(since);
    turn(Route::Subscriptions).await;
    let subs = rest
        .get(
            &format!("/api/v1/subscriptions.get?updatedSince={since}"),
            creds,
        )
        .await?;
    let mut events = vec![];
    let mut rooms = vec![];
    for mut s in subs["update"].as_array().cloned().unwrap_or_default() {
        ejson_dates(&mut s);
        if let Some(rid) = s.get("rid").and_then(Value::as_str) {
            rooms.push(rid.to_string());
        }
        events.push(Event {
            name: "getRoomSubscriptionChangedNotification",
            data: EventData::Change {
                method: "update",
                key: "msg",
                value: raw(&s),
            },
        });
    }
    for mut s in subs["remove"].as_array().cloned().unwrap_or_default() {
        ejson_dates(&mut s);
        events.push(Event {
            name: "getRoomSubscriptionChangedNotification",
            data: EventData::Change {
                method: "remove",
                key: "msg",
                value: raw(&s),
            },
        });
    }
    turn(Route::Rooms).await;
    let changed = rest
        .get(&format!("/api/v1/rooms.get?updatedSince={since}"), creds)
        .await?;
    for mut room in changed["update"].as_array().cloned().unwrap_or_default() {
        ejson_dates(&mut room);
        if let Some(rid) = room.get("_id").and_then(Value::as_str) {
            if !rooms.iter().any(|r| r == rid) {
                rooms.push(rid.to_string());
            }
        }
        events.push(Event {
            name: "getRoomChangedNotification",
            data: EventData::Change {
                method: "update",
                key: "room",
                value: raw(&room),
            },
        });
    }
    let mut count = 0;
    for rid in rooms {
        turn(Route::SyncMessages).await;
        let path = format!("/api/v1/chat.syncMessages?roomId={rid}&lastUpdate={since}");
        let r = rest.get(&path, creds).await?;
        let mut messages = r["result"]["updated"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        count += messages.len();
        if count > max_messages {
            return Ok(Missed::TooMany);
        }
        messages.iter_mut().for_each(ejson_dates);
        messages.sort_by_key(|m| (date_ms(&m["ts"]), date_ms(&m["_updatedAt"])));
        events.extend(messages.iter().map(|m| Event {
            name: "getRoomMessageNotification",
            data: EventData::Raw(raw(m)),
        }));
    }
    Ok(Missed::Events(events))
}

/// What makes an event the same message or subscription as another:
/// its `_id` and `_updatedAt`. Only messages and subscription changes have
/// one (parsed, so only where duplicates can occur).
pub(crate) fn identity(event: &Event) -> Option<(String, i64)> {
    let doc: Value = match (&event.data, event.name) {
        (EventData::Raw(r), "getRoomMessageNotification") => serde_json::from_str(r.get()).ok()?,
        (EventData::Change { value, .. }, "getRoomSubscriptionChangedNotification") => {
            serde_json::from_str(value.get()).ok()?
        }
        _ => return None,
    };
    let id = doc.get("_id")?.as_str()?.to_string();
    Some((id, date_ms(doc.get("_updatedAt")?)))
}

/// The event telling clients that what they missed cannot be delivered:
/// reload through the REST proxy.
pub(crate) fn reload_required(since: SystemTime, reason: &str) -> Event {
    let ms = since
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64;
    Event {
        name: "reloadRequired",
        data: EventData::Raw(raw(&json!({"since": {"$date": ms}, "reason": reason}))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_dates_become_ejson_under_date_keys_only() {
        let mut v = json!({
            "ts": "2026-12-04T04:33:52.945Z",
            "msg": "2026-12-04T04:33:52.945Z",
            "lastMessage": {"_updatedAt": "2026-12-04T04:33:53.000Z", "u": {"username": "bob"}},
            "urls": [{"ts": "not a date"}],
        });
        ejson_dates(&mut v);
        assert_eq!(v["ts"], json!({"$date": 1796358832945_i64}));
        assert_eq!(v["msg"], "2026-12-04T04:33:52.945Z", "text stays text");
        assert_eq!(
            v["lastMessage"]["_updatedAt"],
            json!({"$date": 1796358833000_i64})
        );
        assert_eq!(v["urls"][0]["ts"], "not a date");
    }

    #[test]
    fn a_message_and_a_subscription_are_known_by_id_and_update() {
        let m = Event {
            name: "getRoomMessageNotification",
            data: EventData::raw(r#"{"_id":"m1","_updatedAt":{"$date":5},"msg":"hi"}"#),
        };
        assert_eq!(identity(&m), Some(("m1".into(), 5)));
        let s = Event {
            name: "getRoomSubscriptionChangedNotification",
            data: EventData::Change {
                method: "update",
                key: "msg",
                value: raw(&json!({"_id": "s1", "_updatedAt": {"$date": 7}})),
            },
        };
        assert_eq!(identity(&s), Some(("s1".into(), 7)));
        let other = Event {
            name: "getDesktopNotification",
            data: EventData::raw(r#"{"_id":"x","_updatedAt":{"$date":1}}"#),
        };
        assert_eq!(identity(&other), None);
    }
}
