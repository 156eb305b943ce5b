//! Messages: posting (with the notifications a post makes), editing,
//! reactions, deletion, history and sync.

use super::notifications::{notification, Where};
use super::*;

pub(super) struct StoredMessage {
    pub(super) doc: Value,
    pub(super) ts: i64,
    pub(super) updated_at: i64,
    pub(super) deleted_at: Option<i64>,
}

impl Store {
    pub(super) fn system_message(
        &mut self,
        rid: &str,
        by: &str,
        t: &str,
        msg: &str,
        out: &mut Vec<Emit>,
    ) {
        let Some(u) = self.users.get(by).map(User::brief) else {
            return;
        };
        let now = self.tick();
        let doc = json!({
            "_id": ids::random_id(), "rid": rid, "t": t, "msg": msg, "u": u,
            "groupable": false, "ts": date(now), "_updatedAt": date(now),
        });
        self.insert_message(rid, doc, now, out, None);
    }

    /// Posts a message as `uid` into `rid`. `extra` fields (alias, emoji,
    /// attachments, tmid, a client `_id`) are merged into the document.
    /// Returns the stored message (EJSON).
    pub fn post_message(
        &mut self,
        uid: &str,
        rid: &str,
        text: &str,
        extra: Map<String, Value>,
        use_real_name: bool,
        out: &mut Vec<Emit>,
    ) -> Result<Value, MeteorError> {
        let user = self
            .users
            .get(uid)
            .ok_or_else(|| MeteorError::new("error-invalid-user", "Invalid user"))?;
        let room = self
            .rooms
            .get(rid)
            .ok_or_else(|| MeteorError::new("error-invalid-room", "Invalid room"))?;
        if !self.is_member(rid, uid) {
            return Err(MeteorError::new("error-not-allowed", "Not allowed"));
        }
        if room.read_only {
            return Err(MeteorError::new("error-not-allowed", "room is read only"));
        }
        let mut u = json!({"_id": user.id, "username": user.username});
        if use_real_name {
            u["name"] = json!(user.name);
        }
        let (mentions, _) = self.mentions(text);
        let now = self.tick();
        let id = extra
            .get("_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(ids::random_id);
        if self.msg_index.contains_key(&id) {
            return Err(MeteorError::new(
                "error-message-already-exists",
                "Message already exists",
            ));
        }
        let mut doc = Map::new();
        doc.insert("_id".into(), json!(id));
        doc.insert("rid".into(), json!(rid));
        doc.insert("msg".into(), json!(text));
        doc.insert("ts".into(), date(now));
        doc.insert("u".into(), u);
        for (k, v) in extra {
            if !matches!(
                k.as_str(),
                "_id" | "rid" | "msg" | "ts" | "u" | "_updatedAt"
            ) {
                doc.insert(k, v);
            }
        }
        doc.insert("_updatedAt".into(), date(now));
        doc.insert("mentions".into(), Value::Array(mentions));
        doc.insert("channels".into(), json!([]));
        doc.insert("urls".into(), json!([]));
        doc.insert("md".into(), markdown(text));
        let doc = Value::Object(doc);
        self.insert_message(rid, doc.clone(), now, out, Some(uid));
        Ok(doc)
    }

    /// Mentioned users (`@name`) and whether `@all`/`@here` was used.
    pub(super) fn mentions(&self, text: &str) -> (Vec<Value>, bool) {
        let mut users = vec![];
        let mut group = false;
        for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == ':') {
            let Some(name) = word.strip_prefix('@') else {
                continue;
            };
            let name = name.trim_end_matches(['.', '!', '?']);
            if name == "all" || name == "here" {
                group = true;
                users.push(json!({"_id": name, "username": name, "type": "team"}));
            } else if let Some(u) = self.find_user(&UserRef::Username(name.to_string())) {
                users.push(
                    json!({"_id": u.id, "username": u.username, "name": u.name, "type": "user"}),
                );
            }
        }
        (users, group)
    }

    pub(super) fn insert_message(
        &mut self,
        rid: &str,
        doc: Value,
        now: i64,
        out: &mut Vec<Emit>,
        sender: Option<&str>,
    ) {
        let id = doc["_id"].as_str().unwrap_or_default().to_string();
        let text = doc["msg"].as_str().unwrap_or_default().to_string();
        let is_system = doc.get("t").is_some();
        let tmid = doc.get("tmid").cloned();
        let Some(room) = self.rooms.get_mut(rid) else {
            return;
        };
        room.msgs += 1;
        room.lm = Some(now);
        room.updated_at = now;
        room.last_message = Some(doc.clone());
        // Serialise the room (with its lastMessage) once for every member.
        let room_args = changed_args("updated", room.view());
        let (room_type, room_name, members) =
            (room.t, room.name.clone(), Arc::clone(&room.members));
        let public = room.is_public();
        emit_message(
            rid,
            room_type,
            room_name.clone(),
            Arc::clone(&members),
            public,
            &doc,
            out,
        );
        let entry = self.messages.entry(rid.to_string()).or_default();
        self.msg_index.insert(id, (rid.to_string(), entry.len()));
        let (mentions, group) = if is_system {
            (vec![], false)
        } else {
            self.mentions(&text)
        };
        let mentioned: Vec<&str> = mentions.iter().filter_map(|m| m["_id"].as_str()).collect();
        // Only what counts as unread notifies: skip building a notification
        // nobody will get.
        let notifies = counts_unread(room_type, !mentioned.is_empty(), group);
        let notification: Option<Arc<str>> = sender
            .filter(|_| notifies && !is_system)
            .and_then(|s| self.users.get(s))
            .map(|s| {
                let room = Where {
                    rid,
                    t: room_type,
                    name: room_name.as_deref(),
                };
                notification(s, &room, &doc, &text, tmid)
            });
        self.messages
            .get_mut(rid)
            .expect("entry made above")
            .push(StoredMessage {
                doc,
                ts: now,
                updated_at: now,
                deleted_at: None,
            });
        let mut subs = self.subs.get_mut(rid);
        for member in members.iter() {
            let own = sender == Some(member.as_str());
            if !own && !is_system {
                if let Some(sub) = subs.as_mut().and_then(|s| s.get_mut(member)) {
                    let user_mention = mentioned.contains(&member.as_str());
                    let counts = counts_unread(room_type, user_mention, group);
                    if counts {
                        sub.unread += 1;
                    }
                    sub.user_mentions += u64::from(user_mention);
                    sub.group_mentions += u64::from(group);
                    sub.alert = true;
                    sub.open = true;
                    sub.updated_at = now;
                    out.push(user_event_shared(
                        member,
                        "subscriptions-changed",
                        sub.changed_args("updated"),
                    ));
                    if let (Some(n), true) = (&notification, counts) {
                        out.push(user_event_shared(member, "notification", Arc::clone(n)));
                    }
                }
            }
            out.push(user_event_shared(
                member,
                "rooms-changed",
                Arc::clone(&room_args),
            ));
        }
    }

    /// Where a message that has not been deleted is stored.
    pub(super) fn live_message(&self, id: &str) -> Option<(String, usize)> {
        let (rid, i) = self.msg_index.get(id)?.clone();
        self.messages
            .get(&rid)?
            .get(i)?
            .deleted_at
            .is_none()
            .then_some((rid, i))
    }

    /// Streams a changed message to its room again: Rocket.Chat resends the
    /// whole message after an edit or a reaction.
    pub(super) fn restream(&self, rid: &str, doc: &Value, out: &mut Vec<Emit>) {
        if let Some(room) = self.rooms.get(rid) {
            emit_message(
                rid,
                room.t,
                room.name.clone(),
                Arc::clone(&room.members),
                room.is_public(),
                doc,
                out,
            );
        }
    }

    /// A stored message (EJSON), if not deleted.
    pub fn message(&self, id: &str) -> Option<&Value> {
        let (rid, i) = self.live_message(id)?;
        Some(&self.messages.get(&rid)?.get(i)?.doc)
    }

    /// `chat.update`: edits the text; the whole message is re-streamed with
    /// `editedAt`/`editedBy`.
    pub fn update_message(
        &mut self,
        uid: &str,
        id: &str,
        text: &str,
        out: &mut Vec<Emit>,
    ) -> Result<Value, MeteorError> {
        let (rid, i) = self
            .live_message(id)
            .ok_or_else(|| MeteorError::new("error-invalid-message", "Invalid message"))?;
        let editor = self.users.get(uid).map(User::brief).unwrap_or(Value::Null);
        let now = self.tick();
        let m = &mut self.messages.get_mut(&rid).expect("indexed")[i];
        if m.doc["u"]["_id"].as_str() != Some(uid) {
            return Err(MeteorError::new(
                "error-action-not-allowed",
                "Editing is not allowed",
            ));
        }
        m.doc["msg"] = json!(text);
        m.doc["md"] = markdown(text);
        m.doc["editedAt"] = date(now);
        m.doc["editedBy"] = editor;
        m.doc["_updatedAt"] = date(now);
        m.updated_at = now;
        let doc = m.doc.clone();
        self.restream(&rid, &doc, out);
        Ok(doc)
    }

    /// `setReaction` / `chat.react`: toggles (or sets, with `should_react`)
    /// the user's reaction; the whole message is re-streamed.
    pub fn react(
        &mut self,
        uid: &str,
        id: &str,
        emoji: &str,
        should_react: Option<bool>,
        out: &mut Vec<Emit>,
    ) -> Result<(), MeteorError> {
        let username = self
            .users
            .get(uid)
            .map(|u| u.username.clone())
            .ok_or_else(|| MeteorError::new("error-invalid-user", "Invalid user"))?;
        let (rid, i) = self
            .live_message(id)
            .ok_or_else(|| MeteorError::new("error-not-allowed", "Not allowed"))?;
        if !self.can_access(&rid, uid) {
            return Err(MeteorError::new("error-not-allowed", "Not allowed"));
        }
        let emoji = if emoji.starts_with(':') {
            emoji.to_string()
        } else {
            format!(":{emoji}:")
        };
        let now = self.tick();
        let m = &mut self.messages.get_mut(&rid).expect("indexed")[i];
        let reactions = m
            .doc
            .as_object_mut()
            .expect("messages are objects")
            .entry("reactions")
            .or_insert_with(|| json!({}));
        let entry = reactions
            .as_object_mut()
            .expect("reactions is an object")
            .entry(emoji.clone())
            .or_insert_with(|| json!({"usernames": []}));
        let names = entry["usernames"]
            .as_array_mut()
            .expect("usernames is an array");
        let has = names.iter().any(|n| n == username.as_str());
        match (should_react.unwrap_or(!has), has) {
            (true, false) => names.push(json!(username)),
            (false, true) => names.retain(|n| n != username.as_str()),
            _ => return Ok(()),
        }
        if names.is_empty() {
            reactions.as_object_mut().expect("object").remove(&emoji);
        }
        if reactions.as_object().is_some_and(|r| r.is_empty()) {
            m.doc.as_object_mut().expect("object").remove("reactions");
        }
        m.doc["_updatedAt"] = date(now);
        m.updated_at = now;
        let doc = m.doc.clone();
        self.restream(&rid, &doc, out);
        Ok(())
    }

    /// `chat.delete`: `stream-notify-room <rid>/deleteMessage [{_id}]`.
    pub fn delete_message(
        &mut self,
        uid: &str,
        id: &str,
        is_admin: bool,
        out: &mut Vec<Emit>,
    ) -> Result<Value, MeteorError> {
        let (rid, i) = self
            .live_message(id)
            .ok_or_else(|| MeteorError::new("error-invalid-message", "Invalid message"))?;
        let now = self.tick();
        let m = &mut self.messages.get_mut(&rid).expect("indexed")[i];
        if m.doc["u"]["_id"].as_str() != Some(uid) && !is_admin {
            return Err(MeteorError::new("error-action-not-allowed", "Not allowed"));
        }
        m.deleted_at = Some(now);
        let u = m.doc["u"].clone();
        out.push(Emit::Stream {
            collection: "stream-notify-room",
            event: format!("{rid}/deleteMessage"),
            args: Arc::from(ejson::text(&json!([{"_id": id}]))),
        });
        Ok(json!({"_id": id, "rid": rid, "u": u}))
    }

    /// History, newest first: messages with `oldest < ts < latest`
    /// (inclusive bounds on request), skipping `offset`, at most `count`.
    pub fn history(
        &self,
        rid: &str,
        latest: Option<i64>,
        oldest: Option<i64>,
        inclusive: bool,
        offset: usize,
        count: usize,
    ) -> Vec<Value> {
        let Some(msgs) = self.messages.get(rid) else {
            return vec![];
        };
        msgs.iter()
            .rev()
            .filter(|m| m.deleted_at.is_none())
            .filter(|m| match latest {
                Some(l) => m.ts < l || (inclusive && m.ts == l),
                None => true,
            })
            .filter(|m| match oldest {
                Some(o) => m.ts > o || (inclusive && m.ts == o),
                None => true,
            })
            .skip(offset)
            .take(count)
            .map(|m| m.doc.clone())
            .collect()
    }

    /// `chat.syncMessages`: messages updated and deleted after `since`.
    pub fn sync_messages(&self, rid: &str, since: i64) -> (Vec<Value>, Vec<Value>) {
        let Some(msgs) = self.messages.get(rid) else {
            return (vec![], vec![]);
        };
        let updated = msgs
            .iter()
            .filter(|m| m.deleted_at.is_none() && m.updated_at > since)
            .map(|m| m.doc.clone())
            .collect();
        let deleted = msgs
            .iter()
            .filter_map(|m| {
                let at = m.deleted_at.filter(|at| *at > since)?;
                Some(json!({"_id": m.doc["_id"], "_deletedAt": date(at)}))
            })
            .collect();
        (updated, deleted)
    }
}

/// Whether a message counts as unread (and so notifies), by Unread_Count's
/// defaults: every DM message does; in rooms only user and group mentions.
pub(super) fn counts_unread(room_type: RoomType, user_mention: bool, group: bool) -> bool {
    room_type == RoomType::Direct || user_mention || group
}

/// The two message streams: `stream-room-messages/<rid>` `[msg]` and
/// `__my_messages__` `[msg, meta]`, sharing one serialisation of the message.
pub(super) fn emit_message(
    rid: &str,
    room_type: RoomType,
    room_name: Option<String>,
    members: Arc<Vec<String>>,
    public: bool,
    doc: &Value,
    out: &mut Vec<Emit>,
) {
    let message: Arc<str> = Arc::from(ejson::text(doc));
    out.push(Emit::Stream {
        collection: "stream-room-messages",
        event: rid.to_string(),
        args: Arc::from(format!("[{message}]")),
    });
    out.push(Emit::MyMessages {
        message,
        room_type: room_type.code(),
        room_name,
        members,
        public,
    });
}
