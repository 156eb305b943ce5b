//! `chat.*` and the history endpoints (`docs/protocol/rocketchat.md` §1.8).

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

/// One part of a `multipart/form-data` body.
struct Part<'a> {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: &'a [u8],
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn multipart<'a>(content_type: &str, body: &'a [u8]) -> Result<Vec<Part<'a>>, String> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_string())
        .ok_or("multipart body without a boundary")?;
    let delim = format!("--{boundary}");
    let start = find(body, delim.as_bytes()).ok_or("no multipart boundary in the body")?;
    let mut rest = &body[start + delim.len()..];
    let mut parts = vec![];
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or("malformed multipart part")?;
        let head_end = find(rest, b"\r\n\r\n").ok_or("a multipart part without headers")?;
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        let after = &rest[head_end + 4..];
        let end = find(after, format!("\r\n{delim}").as_bytes())
            .ok_or("an unterminated multipart part")?;
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data: &after[..end],
        };
        for line in head.lines() {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                for attr in line.split(';').skip(1) {
                    if let Some((k, v)) = attr.trim().split_once('=') {
                        let v = v.trim_matches('"').to_string();
                        match k {
                            "name" => part.name = v,
                            "filename" => part.filename = Some(v),
                            _ => {}
                        }
                    }
                }
            } else if lower.starts_with("content-type:") {
                part.content_type = Some(line["content-type:".len()..].trim().to_string());
            }
        }
        parts.push(part);
        rest = &after[end + 2 + delim.len()..];
    }
}

/// `POST rooms.upload/:rid` (multipart: `file`, optional `msg` and
/// `description`): posts a message carrying the file, as Rocket.Chat 7.x does.
pub fn upload(ctx: &mut Ctx) -> Reply {
    let rid = ctx.arg.clone().unwrap_or_default();
    let ct = ctx.header("content-type").unwrap_or_default();
    let parts = match multipart(&ct, ctx.raw) {
        Ok(p) => p,
        Err(e) => return Reply::failure(e),
    };
    let Some(file) = parts
        .iter()
        .find(|p| p.name == "file" && p.filename.is_some())
    else {
        return Reply::failure("[invalid-field]");
    };
    let field = |n: &str| {
        parts
            .iter()
            .find(|p| p.name == n)
            .map(|p| String::from_utf8_lossy(p.data).to_string())
    };
    let name = file.filename.clone().unwrap_or_default();
    let file_id = crate::ids::random_id();
    let kind = file
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut attachment = json!({"title": name, "title_link": format!("/file-upload/{file_id}/{name}"), "title_link_download": true, "type": "file"});
    if let Some(d) = field("description") {
        attachment["description"] = json!(d);
    }
    let meta = json!({"_id": file_id, "name": name, "type": kind, "size": file.data.len()});
    let extra: Map<String, Value> = [
        ("file".to_string(), meta.clone()),
        ("files".to_string(), json!([meta])),
        ("attachments".to_string(), json!([attachment])),
    ]
    .into_iter()
    .collect();
    match post(ctx, &rid, &field("msg").unwrap_or_default(), extra) {
        Ok(doc) => Reply::ok(json!({"message": doc})),
        Err(e) => Reply::error(e),
    }
}
