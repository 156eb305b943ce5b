//! The desktop notification a message makes for the members it counts as
//! unread for (`stream-notify-user` `<uid>/notification`), as Rocket.Chat's
//! `sendNotificationsOnMessage` builds it.

use super::*;

/// The room a message was posted in, as its notification names it.
pub(super) struct Where<'a> {
    pub(super) rid: &'a str,
    pub(super) t: RoomType,
    pub(super) name: Option<&'a str>,
}

/// The notification's arguments, serialised once for every member who gets it.
pub(super) fn notification(
    sender: &User,
    room: &Where<'_>,
    doc: &Value,
    text: &str,
    tmid: Option<Value>,
) -> Arc<str> {
    let (title, body) = match room.t {
        RoomType::Direct => (sender.username.clone(), text.to_string()),
        _ => (
            room.name.unwrap_or_default().to_string(),
            format!("{}: {text}", sender.username),
        ),
    };
    let mut payload = json!({
        "_id": doc["_id"], "rid": room.rid,
        "sender": {"_id": sender.id, "username": sender.username, "name": sender.name},
        "type": room.t.code(), "message": {"msg": text},
    });
    if let Some(n) = room.name {
        payload["name"] = json!(n);
    }
    if let Some(tmid) = tmid {
        payload["tmid"] = tmid;
    }
    Arc::from(ejson::text(
        &json!([{"title": title, "text": body, "duration": 0, "payload": payload}]),
    ))
}
