//! Rooms and subscriptions: `im.create`, `channels.*`, `groups.*`,
//! `rooms.get`, `subscriptions.*` (`docs/protocol/rocketchat.md` §1.8).

use super::{Ctx, Reply};
use crate::ejson::parse_iso;
use crate::error::MeteorError;
use crate::store::{RoomSpec, RoomType, UserRef};
use serde_json::{json, Value};

/// `POST im.create {username} | {usernames}` (`excludeSelf` accepted).
pub fn im_create(ctx: &mut Ctx) -> Reply {
    let one = ctx.param("username");
    let many = ctx.param("usernames");
    let other = match (one, many) {
        (Some(u), None) => u,
        (None, Some(list)) => {
            let names: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            match names.as_slice() {
                [one] => one.to_string(),
                _ => return Reply::failure("rcsim does not simulate multi-user direct messages"),
            }
        }
        _ => return Reply::invalid_params("must match exactly one schema in oneOf"),
    };
    let sim = ctx.sim;
    let mut out = vec![];
    let result = {
        let mut store = sim.store.lock();
        match store
            .find_user(&UserRef::Username(other.clone()))
            .map(|u| u.id.clone())
        {
            None => Err(MeteorError::new("error-invalid-user", "Invalid user")),
            Some(oid) => store
                .direct_room(ctx.uid(), &oid, &mut out)
                .map(|(rid, _)| store.room(&rid).map(|r| r.doc())),
        }
    };
    sim.emit(out);
    match result {
        Ok(Some(mut room)) => {
            room["rid"] = room["_id"].clone();
            Reply::ok(json!({"room": room}))
        }
        Ok(None) => Reply::failure("room vanished"),
        Err(e) => Reply::error(e),
    }
}

fn create(ctx: &mut Ctx, t: RoomType, key: &str, permission: &str) -> Reply {
    if !ctx.can(permission) {
        return Reply::forbidden();
    }
    let Some(name) = ctx.param("name") else {
        return Reply::invalid_params("must have required property 'name'");
    };
    let sim = ctx.sim;
    let mut out = vec![];
    let result = {
        let mut store = sim.store.lock();
        let members: Vec<String> = ctx
            .body
            .get("members")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|u| {
                store
                    .find_user(&UserRef::Username(u.to_string()))
                    .map(|u| u.id.clone())
            })
            .collect();
        store
            .create_room(RoomSpec::new(t, &name, ctx.uid(), &members), &mut out)
            .map(|rid| store.room(&rid).map(|r| r.doc()))
    };
    sim.emit(out);
    match result {
        Ok(room) => Reply::ok(json!({ key: room })),
        Err(e) => Reply::error(e),
    }
}

/// `POST channels.create {name, members?}`.
pub fn channels_create(ctx: &mut Ctx) -> Reply {
    create(ctx, RoomType::Channel, "channel", "create-c")
}

/// `POST groups.create {name, members?}`.
pub fn groups_create(ctx: &mut Ctx) -> Reply {
    create(ctx, RoomType::Group, "group", "create-p")
}

fn room_key(ctx: &Ctx) -> &'static str {
    if ctx.req.path().contains("/groups.") {
        "group"
    } else {
        "channel"
    }
}

fn room_and_user(ctx: &Ctx) -> Result<(String, String), Reply> {
    let Some(rid) = ctx.param("roomId") else {
        return Err(Reply::error(MeteorError::new(
            "error-room-param-not-provided",
            "The parameter \"roomId\" or \"roomName\" is required",
        )));
    };
    let store = ctx.sim.store.lock();
    if store.room(&rid).is_none() {
        return Err(Reply::error(MeteorError::new(
            "error-room-not-found",
            "The required \"roomId\" or \"roomName\" param provided does not match any channel",
        )));
    }
    let user = match (ctx.param("userId"), ctx.param("username")) {
        (Some(id), _) => store.user(&id).map(|u| u.id.clone()),
        (None, Some(name)) => store
            .find_user(&UserRef::Username(name))
            .map(|u| u.id.clone()),
        _ => Some(ctx.uid().to_string()),
    };
    match user {
        Some(u) => Ok((rid, u)),
        None => Err(Reply::error(MeteorError::new(
            "error-invalid-user",
            "Invalid user",
        ))),
    }
}

/// `POST channels.invite | groups.invite {roomId, userId}`.
pub fn invite(ctx: &mut Ctx) -> Reply {
    let (rid, uid) = match room_and_user(ctx) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let sim = ctx.sim;
    let allowed = sim.store.lock().is_member(&rid, ctx.uid())
        || ctx.can("add-user-to-any-c-room")
        || ctx.can("add-user-to-any-p-room");
    if !allowed {
        return Reply::forbidden();
    }
    let mut out = vec![];
    let result = {
        let mut store = sim.store.lock();
        store
            .add_member(&rid, &uid, Some(("au", ctx.uid())), &mut out)
            .map(|_| store.room(&rid).map(|r| r.doc()))
    };
    sim.emit(out);
    match result {
        Ok(room) => Reply::ok(json!({ room_key(ctx): room })),
        Err(e) => Reply::error(e),
    }
}

/// `POST channels.kick | groups.kick {roomId, userId}`.
pub fn kick(ctx: &mut Ctx) -> Reply {
    let (rid, uid) = match room_and_user(ctx) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let sim = ctx.sim;
    let owner = sim
        .store
        .lock()
        .room(&rid)
        .and_then(|r| r.creator.clone())
        .is_some_and(|(id, _)| id == ctx.uid());
    if !owner && !ctx.can("remove-user") {
        return Reply::forbidden();
    }
    let mut out = vec![];
    let result = {
        let mut store = sim.store.lock();
        store.remove_member(&rid, &uid, Some(("ru", ctx.uid())), &mut out);
        store.room(&rid).map(|r| r.doc())
    };
    sim.emit(out);
    sim.hub.forget_room(&uid, &rid);
    Reply::ok(json!({ room_key(ctx): result }))
}

/// `POST channels.leave | groups.leave {roomId}`.
pub fn leave(ctx: &mut Ctx) -> Reply {
    let Some(rid) = ctx.param("roomId") else {
        return Reply::invalid_params("must have required property 'roomId'");
    };
    let uid = ctx.uid().to_string();
    let sim = ctx.sim;
    let mut out = vec![];
    let result = {
        let mut store = sim.store.lock();
        if !store.is_member(&rid, &uid) {
            Err(MeteorError::new(
                "error-user-not-in-room",
                "You are not in this room",
            ))
        } else {
            store.remove_member(&rid, &uid, Some(("ul", &uid)), &mut out);
            Ok(store.room(&rid).map(|r| r.doc()))
        }
    };
    sim.emit(out);
    sim.hub.forget_room(&uid, &rid);
    match result {
        Ok(room) => Reply::ok(json!({ room_key(ctx): room })),
        Err(e) => Reply::error(e),
    }
}

fn since(ctx: &Ctx) -> Result<Option<i64>, Reply> {
    match ctx.param("updatedSince") {
        None => Ok(None),
        Some(v) => parse_iso(&v).map(Some).ok_or_else(|| {
            Reply::error(MeteorError::new(
                "error-updatedSince-param-invalid",
                "The \"updatedSince\" query parameter must be a valid date.",
            ))
        }),
    }
}

/// `GET rooms.get?updatedSince=`.
pub fn rooms_get(ctx: &mut Ctx) -> Reply {
    let since = match since(ctx) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let update = ctx.sim.store.lock().rooms_of(ctx.uid(), since);
    Reply::ok(json!({"update": update, "remove": []}))
}

/// `GET subscriptions.get?updatedSince=`.
pub fn subscriptions_get(ctx: &mut Ctx) -> Reply {
    let since = match since(ctx) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (update, remove) = ctx.sim.store.lock().subscriptions_of(ctx.uid(), since);
    Reply::ok(json!({"update": update, "remove": remove}))
}

/// `POST subscriptions.read {rid}` (older clients send `roomId`).
pub fn subscriptions_read(ctx: &mut Ctx) -> Reply {
    let Some(rid) = ctx.param("rid").or_else(|| ctx.param("roomId")) else {
        return Reply::invalid_params("must have required property 'rid'");
    };
    let mut out = vec![];
    let found = ctx.sim.store.lock().mark_read(&rid, ctx.uid(), &mut out);
    ctx.sim.emit(out);
    if found {
        Reply::ok(json!({}))
    } else {
        Reply::error(MeteorError::new(
            "error-invalid-subscription",
            "Invalid subscription",
        ))
    }
}
