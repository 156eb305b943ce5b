//! Rooms and subscriptions: creating channels, groups and DMs, members
//! joining and leaving, read state.

use super::*;

/// Input of [`Store::create_room`].
pub struct RoomSpec<'a> {
    /// Channel or group.
    pub t: RoomType,
    /// `name`.
    pub name: &'a str,
    /// The creator's uid (the first member).
    pub creator: &'a str,
    /// Other members' uids.
    pub members: &'a [String],
    /// A fixed `_id` (seeded rooms like `GENERAL`); random otherwise.
    pub id: Option<String>,
    /// New users join it.
    pub default: bool,
}

impl<'a> RoomSpec<'a> {
    /// A room with a random id that new users do not join.
    pub fn new(t: RoomType, name: &'a str, creator: &'a str, members: &'a [String]) -> Self {
        RoomSpec {
            t,
            name,
            creator,
            members,
            id: None,
            default: false,
        }
    }
}

impl Store {
    /// A room by id.
    pub fn room(&self, rid: &str) -> Option<&Room> {
        self.rooms.get(rid)
    }

    /// A room id by name (channels and groups).
    pub fn room_id_by_name(&self, name: &str) -> Option<String> {
        self.room_by_name.get(name).cloned()
    }

    /// Whether `uid` is subscribed to `rid`.
    pub fn is_member(&self, rid: &str, uid: &str) -> bool {
        self.subs.get(rid).is_some_and(|s| s.contains_key(uid))
    }

    /// Whether `uid` may read `rid` (member, or a public room).
    pub fn can_access(&self, rid: &str, uid: &str) -> bool {
        self.rooms
            .get(rid)
            .is_some_and(|r| r.is_public() || self.is_member(rid, uid))
    }

    /// Creates a channel or group.
    pub fn create_room(
        &mut self,
        spec: RoomSpec<'_>,
        out: &mut Vec<Emit>,
    ) -> Result<String, MeteorError> {
        let RoomSpec {
            t,
            name,
            creator,
            members,
            id: rid,
            default,
        } = spec;
        if name.is_empty() || !valid_username(name) {
            return Err(MeteorError::new(
                "error-invalid-room-name",
                format!("{name} is not a valid room name"),
            )
            .with_details(json!({"channel_name": name})));
        }
        if self.room_by_name.contains_key(name) {
            return Err(MeteorError::new(
                "error-duplicate-channel-name",
                format!("A channel with name '{name}' exists"),
            )
            .with_details(json!({"channel_name": name})));
        }
        let creator_user = self
            .users
            .get(creator)
            .ok_or_else(|| MeteorError::new("error-invalid-user", "Invalid user"))?
            .clone();
        let now = self.tick();
        let rid = rid.unwrap_or_else(ids::random_id);
        self.rooms.insert(
            rid.clone(),
            Room {
                id: rid.clone(),
                t,
                name: Some(name.to_string()),
                creator: Some((creator_user.id.clone(), creator_user.username.clone())),
                ts: now,
                msgs: 0,
                lm: None,
                last_message: None,
                updated_at: now,
                default,
                read_only: false,
                members: Arc::default(),
                dm: None,
            },
        );
        self.room_by_name.insert(name.to_string(), rid.clone());
        self.add_member(&rid, creator, None, out)?;
        for m in members {
            if m != creator {
                self.add_member(&rid, m, None, out)?;
            }
        }
        Ok(rid)
    }

    /// The DM room between two users, created (with both subscriptions) if absent.
    /// Returns the room id and whether it was created.
    pub fn direct_room(
        &mut self,
        a: &str,
        b: &str,
        out: &mut Vec<Emit>,
    ) -> Result<(String, bool), MeteorError> {
        let ua = self
            .users
            .get(a)
            .cloned()
            .ok_or_else(|| MeteorError::new("error-invalid-user", "Invalid user"))?;
        let ub = self
            .users
            .get(b)
            .cloned()
            .ok_or_else(|| MeteorError::new("error-invalid-user", "Invalid user"))?;
        let mut pair = [ua.id.clone(), ub.id.clone()];
        pair.sort();
        let rid = if a == b { a.to_string() } else { pair.concat() };
        if self.rooms.contains_key(&rid) {
            return Ok((rid, false));
        }
        let now = self.tick();
        let (usernames, uids) = if a == b {
            (vec![ua.username.clone()], vec![ua.id.clone()])
        } else {
            (
                vec![ua.username.clone(), ub.username.clone()],
                vec![ua.id.clone(), ub.id.clone()],
            )
        };
        self.rooms.insert(
            rid.clone(),
            Room {
                id: rid.clone(),
                t: RoomType::Direct,
                name: None,
                creator: None,
                ts: now,
                msgs: 0,
                lm: None,
                last_message: None,
                updated_at: now,
                default: false,
                read_only: false,
                members: Arc::default(),
                dm: Some((usernames, uids.clone())),
            },
        );
        for uid in uids {
            self.add_member(&rid, &uid, None, out)?;
        }
        Ok((rid, true))
    }

    /// Subscribes `uid` to `rid`: `subscriptions-changed inserted` and
    /// `rooms-changed inserted` for that user; with `system` an `au`/`uj`
    /// system message for the room.
    pub fn add_member(
        &mut self,
        rid: &str,
        uid: &str,
        system: Option<(&'static str, &str)>,
        out: &mut Vec<Emit>,
    ) -> Result<bool, MeteorError> {
        if self.is_member(rid, uid) {
            return Ok(false);
        }
        let user = self
            .users
            .get(uid)
            .cloned()
            .ok_or_else(|| MeteorError::new("error-invalid-user", "Invalid user"))?;
        let now = self.tick();
        let room = self
            .rooms
            .get_mut(rid)
            .ok_or_else(|| MeteorError::new("error-invalid-room", "Invalid room"))?;
        Arc::make_mut(&mut room.members).push(uid.to_string());
        room.updated_at = now;
        let (name, fname) = match &room.dm {
            Some((usernames, uids)) => {
                let other = uids
                    .iter()
                    .position(|u| u != uid)
                    .map(|i| usernames[i].clone())
                    .unwrap_or_else(|| user.username.clone());
                (other.clone(), other)
            }
            None => {
                let n = room.name.clone().unwrap_or_default();
                (n.clone(), n)
            }
        };
        let sub = Sub {
            id: ids::random_id(),
            rid: rid.to_string(),
            uid: uid.to_string(),
            username: user.username.clone(),
            name,
            fname: fname.clone(),
            t: room.t,
            ts: now,
            ls: now,
            open: true,
            alert: false,
            unread: 0,
            user_mentions: 0,
            group_mentions: 0,
            updated_at: now,
        };
        let room_args = changed_args("inserted", room.view());
        // DM names come from the other user's display name when there is one.
        let sub = match &room.dm {
            Some((_, uids)) => {
                let other = uids.iter().find(|u| *u != uid).cloned();
                let fname = other
                    .and_then(|o| self.users.get(&o).map(|u| u.name.clone()))
                    .unwrap_or(fname);
                Sub { fname, ..sub }
            }
            None => sub,
        };
        out.push(user_event_shared(
            uid,
            "subscriptions-changed",
            sub.changed_args("inserted"),
        ));
        out.push(user_event_shared(uid, "rooms-changed", room_args));
        self.subs
            .entry(rid.to_string())
            .or_default()
            .insert(uid.to_string(), sub);
        self.user_rooms
            .entry(uid.to_string())
            .or_default()
            .insert(rid.to_string());
        if let Some((t, by)) = system {
            self.system_message(rid, by, t, &user.username, out);
        }
        Ok(true)
    }

    /// Unsubscribes `uid` from `rid`: `subscriptions-changed removed` for
    /// that user, and a `ru`/`ul` system message when `system` is given.
    pub fn remove_member(
        &mut self,
        rid: &str,
        uid: &str,
        system: Option<(&'static str, &str)>,
        out: &mut Vec<Emit>,
    ) -> bool {
        let Some(sub) = self.subs.get_mut(rid).and_then(|s| s.remove(uid)) else {
            return false;
        };
        let now = self.tick();
        if let Some(room) = self.rooms.get_mut(rid) {
            Arc::make_mut(&mut room.members).retain(|m| m != uid);
            room.updated_at = now;
        }
        if let Some(set) = self.user_rooms.get_mut(uid) {
            set.remove(rid);
        }
        self.removed_subs
            .push((uid.to_string(), sub.id.clone(), now));
        out.push(user_event(
            uid,
            "subscriptions-changed",
            json!(["removed", {"_id": sub.id, "u": {"_id": sub.uid, "username": sub.username}, "rid": sub.rid, "t": sub.t.code()}]),
        ));
        if let Some((t, by)) = system {
            let username = sub.username.clone();
            self.system_message(rid, by, t, &username, out);
        }
        true
    }

    /// The rooms of a user, updated after `since` (ms) if given.
    pub fn rooms_of(&self, uid: &str, since: Option<i64>) -> Vec<Value> {
        self.user_rooms
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|rid| self.rooms.get(rid))
            .filter(|r| since.is_none_or(|s| r.updated_at > s))
            .map(Room::doc)
            .collect()
    }

    /// The subscriptions of a user, updated after `since`, and those removed after it.
    pub fn subscriptions_of(&self, uid: &str, since: Option<i64>) -> (Vec<Value>, Vec<Value>) {
        let update = self
            .user_rooms
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|rid| self.subs.get(rid)?.get(uid))
            .filter(|s| since.is_none_or(|t| s.updated_at > t))
            .map(Sub::doc)
            .collect();
        let remove = match since {
            Some(t) => self
                .removed_subs
                .iter()
                .filter(|(u, _, at)| u == uid && *at > t)
                .map(|(_, id, at)| json!({"_id": id, "_deletedAt": date(*at)}))
                .collect(),
            None => vec![],
        };
        (update, remove)
    }

    /// A subscription.
    pub fn subscription(&self, rid: &str, uid: &str) -> Option<&Sub> {
        self.subs.get(rid)?.get(uid)
    }

    /// `subscriptions.read`: clears unread and alert.
    pub fn mark_read(&mut self, rid: &str, uid: &str, out: &mut Vec<Emit>) -> bool {
        let now = self.tick();
        let Some(sub) = self.subs.get_mut(rid).and_then(|s| s.get_mut(uid)) else {
            return false;
        };
        sub.unread = 0;
        sub.alert = false;
        sub.user_mentions = 0;
        sub.group_mentions = 0;
        sub.ls = now;
        sub.updated_at = now;
        out.push(user_event_shared(
            uid,
            "subscriptions-changed",
            sub.changed_args("updated"),
        ));
        true
    }

    // ---- messages ----------------------------------------------------
}
