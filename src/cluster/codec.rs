//! A batch of events as the cluster stores and carries it: a JSON array of
//! `{"n": name, "d": data}` or `{"n": name, "m": method, "k": key, "v":
//! document}` (`null` a document like any other), the documents as they came from Rocket.Chat
//! (never parsed into values). Names are read back into the words imrelay knows, so an
//! event a newer node wrote that this one does not know is an error (its
//! clients reload) rather than an event dropped.

use crate::core::engine::{Batch, EngineError};
use crate::rocketchat::{Event, EventData, EVENT_WORDS};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One event as stored: its name, and its data as it came (`d`) or a
/// change (`m`, `k`, `v`).
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    #[serde(borrow)]
    n: &'a str,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    d: Option<Box<RawValue>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    m: Option<&'a str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    k: Option<&'a str>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    v: Option<Box<RawValue>>,
}

/// A field that is there is a document, `null` included (serde's `Option`
/// would read `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// The batch's bytes.
pub(crate) fn encode(batch: &[Event]) -> Vec<u8> {
    let out: Vec<Stored> = batch
        .iter()
        .map(|e| match &e.data {
            EventData::Raw(d) => Stored {
                n: e.name,
                d: Some(d.clone()),
                m: None,
                k: None,
                v: None,
            },
            EventData::Change { method, key, value } => Stored {
                n: e.name,
                d: None,
                m: Some(method),
                k: Some(key),
                v: Some(value.clone()),
            },
        })
        .collect();
    serde_json::to_vec(&out).expect("events serialise")
}

fn word(w: &str) -> Result<&'static str, EngineError> {
    EVENT_WORDS
        .iter()
        .find(|k| **k == w)
        .copied()
        .ok_or_else(|| {
            EngineError::Unavailable(format!("a stored event names {w:?}, unknown to this node"))
        })
}

/// The batch `encode` wrote.
pub(crate) fn decode(bytes: &[u8]) -> Result<Batch, EngineError> {
    let events: Vec<Stored> = serde_json::from_slice(bytes)
        .map_err(|e| EngineError::Unavailable(format!("a stored batch does not read: {e}")))?;
    events
        .into_iter()
        .map(|e| {
            let data = match (e.d, e.m, e.k, e.v) {
                (Some(d), None, None, None) => EventData::Raw(d),
                (None, Some(m), Some(k), Some(v)) => EventData::Change {
                    method: word(m)?,
                    key: word(k)?,
                    value: v,
                },
                _ => {
                    return Err(EngineError::Unavailable(
                        "a stored event of another shape".into(),
                    ))
                }
            };
            Ok(Event {
                name: word(e.n)?,
                data,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Batch::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: &[Event]) -> Vec<(String, String)> {
        b.iter()
            .map(|e| (e.name.to_string(), serde_json::to_string(&e.data).unwrap()))
            .collect()
    }

    #[test]
    fn a_batch_reads_back_as_it_was_written() {
        let batch = vec![
            Event {
                name: "getRoomMessageNotification",
                data: EventData::raw(r#"{"_id":"m1","msg":"hi \"there\"","ts":{"$date":5}}"#),
            },
            Event {
                name: "getRoomSubscriptionChangedNotification",
                data: EventData::Change {
                    method: "update",
                    key: "msg",
                    value: RawValue::from_string(r#"{"rid":"r1","unread":2}"#.into()).unwrap(),
                },
            },
            // A missing argument is mapped to null: still an event.
            Event {
                name: "getDesktopNotification",
                data: EventData::raw("null"),
            },
            Event {
                name: "getRoomChangedNotification",
                data: EventData::Change {
                    method: "remove",
                    key: "room",
                    value: RawValue::from_string("null".into()).unwrap(),
                },
            },
        ];
        let back = decode(&encode(&batch)).unwrap();
        assert_eq!(text(&back), text(&batch));
    }

    #[test]
    fn an_unknown_name_or_shape_is_an_error_not_a_dropped_event() {
        for bad in [
            r#"[{"n":"somethingNew","d":{}}]"#,
            r#"[{"n":"reloadRequired"}]"#,
            r#"[{"n":"reloadRequired","d":{},"v":{}}]"#,
            r#"[{"n":"getRoomChangedNotification","m":"upsert","k":"room","v":{}}]"#,
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(decode(b"not json").is_err());
        assert_eq!(decode(b"[]").unwrap().len(), 0);
    }
}
