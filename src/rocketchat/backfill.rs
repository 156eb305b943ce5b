//! What Rocket.Chat emitted while a session's DDP socket was away, fetched
//! the way Rocket.Chat's own clients do after a reconnect: the user's
//! subscriptions and rooms changed since (`updatedSince`: a new message
//! changes its room), then, for each of those rooms, the messages changed
//! since, as the user. Each of the three asks goes to the DDP method over
//! REST ([`method_call`]: per-user limits) while the server has it, else
//! to its REST route (`subscriptions.get`, `rooms.get`,
//! `chat.syncMessages`: limited per IP, so paced by the caller). They come
//! back as the events the streams would have carried, with EJSON dates as
//! DDP has them, each room's messages in timestamp order.

use super::method_call::{self, Answer};
use super::rest::RestClient;
use super::{Credentials, Event, EventData, RcError};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

impl Route {
    /// The route's place in per-route arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The DDP method that answers what the route does.
    fn method(self) -> &'static str {
        match self {
            Route::Subscriptions => "subscriptions/get",
            Route::Rooms => "rooms/get",
            Route::SyncMessages => "messages/get",
        }
    }
}

/// Which of the backfill's DDP methods the server turned out not to have
/// (Rocket.Chat 9 removes orphan methods): their routes go over REST, and
/// the method is asked again after [`RECHECK`] (an upgrade, a restore).
/// Each slot holds when the method was found gone (ms on [`clock`]; 0:
/// present).
#[derive(Default)]
pub(crate) struct Methods([AtomicU64; 3]);

/// How long a method found gone is not asked again.
const RECHECK: Duration = Duration::from_secs(600);

/// Milliseconds since the first call, never 0.
fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl Methods {
    fn gone(&self, route: Route) -> bool {
        let at = self.0[route.index()].load(Ordering::Relaxed);
        at != 0 && clock().saturating_sub(at) < RECHECK.as_millis() as u64
    }

    fn present(&self, route: Route) {
        self.0[route.index()].store(0, Ordering::Relaxed);
    }

    fn set_gone(&self, route: Route) {
        if self.0[route.index()].swap(clock(), Ordering::Relaxed) == 0 {
            log::warn!(
                "Rocket.Chat has no DDP method {}: backfills call its REST route instead, which Rocket.Chat limits to 10 calls a minute for all users together unless their role holds api-bypass-rate-limit (see imrelay doctor)",
                route.method()
            );
        }
    }
}

/// Retries of a method the DDP limiter refused, each after the wait it named.
const METHOD_RETRIES: u32 = 5;

/// How a backfill waits: its turn on a REST route (the caller's pacing),
/// and out a DDP limiter's refusal (without holding a place another
/// user's backfill could use).
pub(crate) trait Waits {
    async fn turn(&self, route: Route);
    async fn pause(&self, wait: Duration);
}

/// One ask of a backfill: the DDP method while the server has it, else
/// the REST route `path` once its turn comes (REST's dates made EJSON, and
/// `chat.syncMessages`' `result` unwrapped, so both answer alike). The
/// answer must be the object with the arrays `lists` name: anything else
/// (a date Rocket.Chat did not take, a changed API) is an error, not
/// "nothing missed".
async fn ask(
    rest: &RestClient,
    creds: &Credentials,
    methods: &Methods,
    route: Route,
    params: Value,
    path: String,
    waits: &impl Waits,
) -> Result<Value, RcError> {
    let mut tries = 0;
    let v = loop {
        if methods.gone(route) {
            waits.turn(route).await;
            let mut v = rest.get(&path, creds).await?;
            ejson_dates(&mut v);
            break match route {
                Route::SyncMessages => v["result"].take(),
                _ => v,
            };
        }
        match method_call::call(rest, creds, route.method(), params.clone()).await {
            Ok(Answer::Result(v)) => {
                methods.present(route);
                break v;
            }
            Ok(Answer::Gone) => methods.set_gone(route),
            Err(RcError::RateLimited { retry_after }) if tries < METHOD_RETRIES => {
                tries += 1;
                waits.pause(retry_after).await;
            }
            Err(e) => return Err(e),
        }
    };
    answer_of(route, v)
}

/// An answer as a backfill takes it: the object with its array. `false`
/// from `messages/get` (what older servers answer for a room the user may
/// no longer read) is that refusal; any other shape (a date the server did
/// not take, a changed API) is an error, never "nothing missed".
fn answer_of(route: Route, v: Value) -> Result<Value, RcError> {
    let list = match route {
        Route::SyncMessages if v == Value::Bool(false) => {
            return Err(RcError::Forbidden(format!("{}: no access", route.method())))
        }
        Route::SyncMessages => "updated",
        _ => "update",
    };
    if v.get(list).is_some_and(Value::is_array) {
        Ok(v)
    } else {
        Err(RcError::Server(format!(
            "{}: an answer without {list}",
            route.method()
        )))
    }
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
/// messages, waiting as `waits` says.
pub(crate) async fn missed(
    rest: &RestClient,
    creds: &Credentials,
    since: SystemTime,
    max_messages: usize,
    methods: &Methods,
    waits: &impl Waits,
) -> Result<Missed, RcError> {
    let date =
        json!({"$date": since.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64});
    let since = iso(since);
    let subs = ask(
        rest,
        creds,
        methods,
        Route::Subscriptions,
        json!([date]),
        format!("/api/v1/subscriptions.get?updatedSince={since}"),
        waits,
    )
    .await?;
    let mut events = vec![];
    let mut rooms = vec![];
    for s in subs["update"].as_array().into_iter().flatten() {
        if let Some(rid) = s.get("rid").and_then(Value::as_str) {
            rooms.push(rid.to_string());
        }
        events.push(Event {
            name: "getRoomSubscriptionChangedNotification",
            data: EventData::Change {
                method: "update",
                key: "msg",
                value: raw(s),
            },
        });
    }
    for s in subs["remove"].as_array().into_iter().flatten() {
        events.push(Event {
            name: "getRoomSubscriptionChangedNotification",
            data: EventData::Change {
                method: "remove",
                key: "msg",
                value: raw(s),
            },
        });
    }
    let changed = ask(
        rest,
        creds,
        methods,
        Route::Rooms,
        json!([date]),
        format!("/api/v1/rooms.get?updatedSince={since}"),
        waits,
    )
    .await?;
    for room in changed["update"].as_array().into_iter().flatten() {
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
                value: raw(room),
            },
        });
    }
    let mut count = 0;
    for rid in rooms {
        let r = ask(
            rest,
            creds,
            methods,
            Route::SyncMessages,
            json!([rid, {"lastUpdate": date}]),
            format!("/api/v1/chat.syncMessages?roomId={rid}&lastUpdate={since}"),
            waits,
        )
        .await;
        let r = match r {
            // Left the room since it was listed: nothing of it to deliver.
            Err(RcError::Forbidden(_)) => continue,
            r => r?,
        };
        let mut messages = r["updated"].as_array().cloned().unwrap_or_default();
        count += messages.len();
        if count > max_messages {
            return Ok(Missed::TooMany);
        }
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
    fn an_answer_without_its_array_is_an_error_and_false_a_refusal() {
        let ok = json!({"updated": [], "deleted": []});
        assert!(answer_of(Route::SyncMessages, ok).is_ok());
        assert!(matches!(
            answer_of(Route::SyncMessages, Value::Bool(false)),
            Err(RcError::Forbidden(_))
        ));
        assert!(matches!(
            answer_of(Route::Subscriptions, json!([{"rid": "r1"}])),
            Err(RcError::Server(m)) if m.contains("without update")
        ));
        assert!(matches!(
            answer_of(Route::Rooms, Value::Bool(false)),
            Err(RcError::Server(_))
        ));
        assert!(answer_of(Route::Rooms, json!({"update": [], "remove": []})).is_ok());
    }

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
