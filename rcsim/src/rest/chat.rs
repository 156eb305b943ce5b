//! `chat.*` and the history endpoints (`protocol/rocketchat.md` §1.8).

use super::{Ctx, Reply};
use crate::ejson::{parse_iso, rest_dates};
use crate::error::MeteorError;
use crate::store::UserRef;
use serde_json::{json, Map, Value};

/// Resolves `roomId`, or `channel` as `#name`, `@username` (a DM, created if
/// needed) or a plain id/name.
fn resolve_channel(ctx: &Ctx, channel: &str) -> Result<String, MeteorError> {
    let sim = ctx.sim;
    if let Some(username) = channel.strip_prefix('@') {
        let mut store = sim.store.lock();
        let other = store
            .find_user(&UserRef::Username(username.to_string()))
            .map(|u| u.id.clone())
            .ok_or_else(|| MeteorError::new("invalid-channel", "Invalid channel"))?;
        let mut out = vec![];
        let (rid, _) = store.direct_room(ctx.uid(), &other, &mut out)?;
        drop(store);
        sim.emit(out);
        return Ok(rid);
    }
    let name = channel.strip_prefix('#').unwrap_or(channel);
    let store = sim.store.lock();
    if store.room(name).is_some() {
        return Ok(name.to_string());
    }
    store
        .room_id_by_name(name)
        .ok_or_else(|| MeteorError::new("invalid-channel", "Invalid channel"))
}

fn post(ctx: &Ctx, rid: &str, text: &str, extra: Map<String, Value>) -> Result<Value, MeteorError> {
    let real_name = ctx.sim.settings.read().use_real_name;
    let mut out = vec![];
    let doc =
        ctx.sim
            .store
            .lock()
            .post_message(ctx.uid(), rid, text, extra, real_name, &mut out)?;
    ctx.sim.emit(out);
    Ok(doc)
}

/// `POST chat.postMessage {roomId|channel, text, alias?, emoji?, avatar?, attachments?}`.
pub fn post_message(ctx: &mut Ctx) -> Reply {
    let target = ctx.param("roomId").or_else(|| ctx.param("channel"));
    let Some(target) = target else {
        return Reply::failure("Body param \"channel\" or \"roomId\" is required");
    };
    let text = ctx.param("text").unwrap_or_default();
    let extra: Map<String, Value> = [
        "alias",
        "emoji",
        "avatar",
        "attachments",
        "customFields",
        "tmid",
    ]
    .iter()
    .filter_map(|k| ctx.body.get(*k).map(|v| (k.to_string(), v.clone())))
    .collect();
    let result = if ctx.param("roomId").is_some() {
        Ok(target.clone())
    } else {
        resolve_channel(ctx, &target)
    };
    match result.and_then(|rid| post(ctx, &rid, &text, extra)) {
        Ok(doc) => {
            let ts = doc["ts"]["$date"].as_i64().unwrap_or_default();
            Reply::ok(json!({"ts": ts, "channel": target, "message": doc}))
        }
        // postMessage answers `API.v1.failure(e.message)`: no errorType.
        Err(e) => Reply::failure(e.message()),
    }
}

/// `POST chat.sendMessage {message:{rid, msg, _id?, tmid?, …}}`.
pub fn send_message(ctx: &mut Ctx) -> Reply {
    let Some(m) = ctx.body.get("message").and_then(Value::as_object).cloned() else {
        return Reply::invalid_params("must have required property 'message'");
    };
    let Some(rid) = m.get("rid").and_then(Value::as_str).map(str::to_string) else {
        return Reply::invalid_params("must have required property 'rid'");
    };
    let text = m
        .get("msg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let extra: Map<String, Value> = m
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "rid" | "msg"))
        .collect();
    match post(ctx, &rid, &text, extra) {
        Ok(doc) => Reply::ok(json!({"message": doc})),
        Err(e) => Reply::error(e),
    }
}

/// `POST chat.update {roomId, msgId, text}`.
pub fn update(ctx: &mut Ctx) -> Reply {
    let (Some(_rid), Some(id), Some(text)) =
        (ctx.param("roomId"), ctx.param("msgId"), ctx.param("text"))
    else {
        return Reply::invalid_params("must have required properties 'roomId', 'msgId', 'text'");
    };
    let mut out = vec![];
    let r = ctx
        .sim
        .store
        .lock()
        .update_message(ctx.uid(), &id, &text, &mut out);
    ctx.sim.emit(out);
    match r {
        Ok(doc) => Reply::ok(json!({"message": doc})),
        Err(e) => Reply::error(e),
    }
}

/// `POST chat.delete {roomId, msgId}`.
pub fn delete(ctx: &mut Ctx) -> Reply {
    let (Some(_rid), Some(id)) = (ctx.param("roomId"), ctx.param("msgId")) else {
        return Reply::invalid_params("must have required properties 'roomId', 'msgId'");
    };
    let admin = ctx.can("force-delete-message");
    let mut out = vec![];
    let r = ctx
        .sim
        .store
        .lock()
        .delete_message(ctx.uid(), &id, admin, &mut out);
    ctx.sim.emit(out);
    match r {
        Ok(m) => Reply::ok(json!({"_id": id, "ts": crate::ejson::now_ms(), "message": m})),
        Err(e) => Reply::error(e),
    }
}

fn room_not_found() -> Reply {
    Reply::error(MeteorError::new(
        "error-room-not-found",
        "The required \"roomId\" or \"roomName\" param provided does not match any channel",
    ))
}

/// `GET channels.history | groups.history | im.history ?roomId=&latest=&oldest=&inclusive=&count=&offset=`.
pub fn history(ctx: &mut Ctx) -> Reply {
    let rid = match (ctx.param("roomId"), ctx.param("roomName")) {
        (Some(id), _) => id,
        (None, Some(name)) => match ctx.sim.store.lock().room_id_by_name(&name) {
            Some(id) => id,
            None => return room_not_found(),
        },
        _ => {
            return Reply::error(MeteorError::new(
                "error-room-param-not-provided",
                "The parameter \"roomId\" or \"roomName\" is required",
            ))
        }
    };
    let store = ctx.sim.store.lock();
    if store.room(&rid).is_none() {
        return room_not_found();
    }
    if !store.can_access(&rid, ctx.uid()) {
        return Reply::forbidden();
    }
    let date = |k: &str| ctx.param(k).and_then(|v| parse_iso(&v));
    let count = ctx
        .param("count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(20usize);
    let offset = ctx
        .param("offset")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0usize);
    let inclusive = ctx.param("inclusive").as_deref() == Some("true");
    let messages = store.history(
        &rid,
        date("latest"),
        date("oldest"),
        inclusive,
        offset,
        count,
    );
    Reply::ok(json!({"messages": messages}))
}

/// `GET chat.syncMessages?roomId=&lastUpdate=`.
pub fn sync_messages(ctx: &mut Ctx) -> Reply {
    let Some(rid) = ctx.param("roomId") else {
        return Reply::invalid_params("must have required property 'roomId'");
    };
    let Some(since) = ctx.param("lastUpdate").and_then(|v| parse_iso(&v)) else {
        return Reply::error(MeteorError::new(
            "error-lastUpdate-param-invalid",
            "The \"lastUpdate\" query parameter must be a valid date.",
        ));
    };
    let store = ctx.sim.store.lock();
    if !store.can_access(&rid, ctx.uid()) {
        return Reply::forbidden();
    }
    let (updated, deleted) = store.sync_messages(&rid, since);
    let result =
        json!({"updated": updated, "deleted": deleted, "cursor": {"next": null, "previous": null}});
    Reply::ok(json!({"result": rest_dates(result)}))
}

/// `POST chat.react {messageId, emoji, shouldReact?}`.
pub fn react(ctx: &mut Ctx) -> Reply {
    let (Some(id), Some(emoji)) = (
        ctx.param("messageId"),
        ctx.param("emoji").or_else(|| ctx.param("reaction")),
    ) else {
        return Reply::invalid_params("must have required properties 'messageId', 'emoji'");
    };
    let should = ctx.body.get("shouldReact").and_then(Value::as_bool);
    let mut out = vec![];
    let r = ctx
        .sim
        .store
        .lock()
        .react(ctx.uid(), &id, &emoji, should, &mut out);
    ctx.sim.emit(out);
    match r {
        Ok(()) => Reply::ok(json!({})),
        Err(e) => Reply::error(e),
    }
}
