//! The documents as Rocket.Chat stores and streams them: users, rooms,
//! subscriptions, and the borrowed views they serialise through.

use super::*;

/// The kinds of rooms rcsim has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomType {
    /// `c`, a public channel.
    Channel,
    /// `p`, a private group.
    Group,
    /// `d`, a direct message.
    Direct,
}

impl RoomType {
    /// The one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            RoomType::Channel => "c",
            RoomType::Group => "p",
            RoomType::Direct => "d",
        }
    }
}

/// An email address of a user.
#[derive(Clone, Debug)]
pub struct Email {
    /// The address.
    pub address: String,
    /// Verified addresses make email two-factor take effect.
    pub verified: bool,
}

/// A user document.
#[derive(Clone, Debug)]
pub struct User {
    /// `_id`.
    pub id: String,
    /// `username`.
    pub username: String,
    /// `name`.
    pub name: String,
    /// `emails`.
    pub emails: Vec<Email>,
    /// SHA-256 hex of the password (what DDP clients send as the digest).
    pub password_digest: Option<String>,
    /// `roles`.
    pub roles: Vec<String>,
    /// `active`.
    pub active: bool,
    /// `createdAt`, ms.
    pub created_at: i64,
    /// `_updatedAt`, ms.
    pub updated_at: i64,
    /// `services.email2fa.enabled`.
    pub email2fa: bool,
    /// `type`: `user` or `bot`.
    pub kind: String,
    /// A pending email two-factor code and its expiry.
    pub email_code: Option<(String, i64)>,
}

impl User {
    /// Email 2FA is in force: enabled on the user and a verified address
    /// (`EmailCheck.isEnabled`).
    pub fn email_2fa_effective(&self) -> bool {
        self.email2fa && self.emails.iter().any(|e| e.verified)
    }

    pub(super) fn emails_json(&self) -> Value {
        Value::Array(
            self.emails
                .iter()
                .map(|e| json!({"address": e.address, "verified": e.verified}))
                .collect(),
        )
    }

    /// The document `users.create`, `users.info` and `users.update` return.
    pub fn doc(&self) -> Value {
        json!({
            "_id": self.id,
            "createdAt": date(self.created_at),
            "username": self.username,
            "emails": self.emails_json(),
            "type": self.kind,
            "status": "offline",
            "active": self.active,
            "_updatedAt": date(self.updated_at),
            "roles": self.roles,
            "name": self.name,
            "settings": {},
        })
    }

    /// `getUserInfo`: what `/me` and the login response carry.
    pub fn me(&self, site_url: &str) -> Value {
        let mut d = json!({
            "_id": self.id,
            "username": self.username,
            "name": self.name,
            "emails": self.emails_json(),
            "status": "online",
            "active": self.active,
            "roles": self.roles,
            "utcOffset": 0,
            "_updatedAt": date(self.updated_at),
        });
        if let Some(e) = self.emails.iter().find(|e| e.verified) {
            d["email"] = json!(e.address);
        }
        d["settings"] = json!({"profile": {}, "preferences": {}, "calendar": {}});
        d["avatarUrl"] = json!(format!("{site_url}/avatar/{}", self.username));
        d
    }

    /// The fields of the `added` frame for the `users` collection after a
    /// DDP login (profile, username, emails and the base user fields).
    pub fn ddp_fields(&self) -> Value {
        json!({
            "emails": self.emails_json(),
            "username": self.username,
            "name": self.name,
            "roles": self.roles,
            "active": self.active,
            "utcOffset": 0,
            "_updatedAt": date(self.updated_at),
            "services": {"email2fa": {"enabled": self.email2fa}},
        })
    }

    pub(super) fn brief(&self) -> Value {
        json!({"_id": self.id, "username": self.username})
    }
}

/// A room.
#[derive(Clone, Debug)]
pub struct Room {
    /// `_id`.
    pub id: String,
    /// `t`.
    pub t: RoomType,
    /// `name` (none for DMs).
    pub name: Option<String>,
    /// Creator `{_id, username}`.
    pub creator: Option<(String, String)>,
    /// `ts`.
    pub ts: i64,
    /// `msgs`.
    pub msgs: u64,
    /// `lm`.
    pub lm: Option<i64>,
    /// `lastMessage`.
    pub last_message: Option<Value>,
    /// `_updatedAt`.
    pub updated_at: i64,
    /// `default`: new users join it.
    pub default: bool,
    /// `ro`.
    pub read_only: bool,
    /// Member uids, in join order (shared with the events that fan out to them).
    pub members: Arc<Vec<String>>,
    /// DMs: `usernames`, `uids`.
    pub dm: Option<(Vec<String>, Vec<String>)>,
}

impl Room {
    /// The room document (`roomFields`).
    pub fn doc(&self) -> Value {
        serde_json::to_value(self.view()).unwrap_or_default()
    }

    /// The document, borrowed (the message inside it too): posting a
    /// message serialises it once for every member's `rooms-changed`.
    pub(super) fn view(&self) -> RoomDoc<'_> {
        RoomDoc {
            id: &self.id,
            t: self.t.code(),
            name: self.name.as_deref(),
            fname: self.name.as_deref(),
            usernames: self.dm.as_ref().map(|(usernames, _)| usernames.as_slice()),
            uids: self.dm.as_ref().map(|(_, uids)| uids.as_slice()),
            msgs: self.msgs,
            users_count: self.members.len(),
            u: self
                .creator
                .as_ref()
                .map(|(id, username)| IdUsername { id, username }),
            default: self.default,
            ro: self.read_only,
            ts: self.ts.into(),
            lm: self.lm.map(Date::from),
            last_message: self.last_message.as_ref(),
            updated_at: self.updated_at.into(),
        }
    }

    pub(super) fn is_public(&self) -> bool {
        self.t == RoomType::Channel
    }
}

/// A subscription: one user's membership of one room.
#[derive(Clone, Debug)]
pub struct Sub {
    /// `_id`.
    pub id: String,
    /// `rid`.
    pub rid: String,
    /// `u._id`.
    pub uid: String,
    /// `u.username`.
    pub username: String,
    /// `name` (the other user's username for DMs).
    pub name: String,
    /// `fname`.
    pub fname: String,
    /// `t`.
    pub t: RoomType,
    /// `ts`.
    pub ts: i64,
    /// `ls`.
    pub ls: i64,
    /// `open`.
    pub open: bool,
    /// `alert`.
    pub alert: bool,
    /// `unread`.
    pub unread: u64,
    /// `userMentions`.
    pub user_mentions: u64,
    /// `groupMentions`.
    pub group_mentions: u64,
    /// `_updatedAt`.
    pub updated_at: i64,
}

impl Sub {
    /// The document (`subscriptionFields`), borrowed: posting a message
    /// serialises one per member, and building a `Value` for each took most
    /// of rcsim's CPU under load.
    pub(super) fn view(&self) -> SubDoc<'_> {
        SubDoc {
            id: &self.id,
            rid: &self.rid,
            u: IdUsername {
                id: &self.uid,
                username: &self.username,
            },
            name: &self.name,
            fname: &self.fname,
            t: self.t.code(),
            ts: self.ts.into(),
            ls: self.ls.into(),
            open: self.open,
            alert: self.alert,
            unread: self.unread,
            user_mentions: self.user_mentions,
            group_mentions: self.group_mentions,
            updated_at: self.updated_at.into(),
        }
    }

    /// The document (`subscriptionFields`), for REST.
    pub fn doc(&self) -> Value {
        serde_json::to_value(self.view()).unwrap_or_default()
    }

    /// The `subscriptions-changed` arguments: `[kind, document]`.
    pub(super) fn changed_args(&self, kind: &str) -> Arc<str> {
        changed_args(kind, self.view())
    }
}

/// [`Sub`]'s document, in Rocket.Chat's key order.
#[derive(serde::Serialize)]
pub(super) struct SubDoc<'a> {
    #[serde(rename = "_id")]
    pub(super) id: &'a str,
    pub(super) rid: &'a str,
    pub(super) u: IdUsername<'a>,
    pub(super) name: &'a str,
    pub(super) fname: &'a str,
    pub(super) t: &'static str,
    pub(super) ts: Date,
    pub(super) ls: Date,
    pub(super) open: bool,
    pub(super) alert: bool,
    pub(super) unread: u64,
    #[serde(rename = "userMentions")]
    pub(super) user_mentions: u64,
    #[serde(rename = "groupMentions")]
    pub(super) group_mentions: u64,
    #[serde(rename = "_updatedAt")]
    pub(super) updated_at: Date,
}

/// `[kind, document]`, the arguments of a `*-changed` user event.
pub(super) fn changed_args(kind: &str, doc: impl serde::Serialize) -> Arc<str> {
    Arc::from(ejson::text(&(kind, doc)))
}

/// [`Room`]'s document, in Rocket.Chat's key order.
#[derive(serde::Serialize)]
pub(super) struct RoomDoc<'a> {
    #[serde(rename = "_id")]
    pub(super) id: &'a str,
    pub(super) t: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) fname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usernames: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) uids: Option<&'a [String]>,
    pub(super) msgs: u64,
    #[serde(rename = "usersCount")]
    pub(super) users_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) u: Option<IdUsername<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) default: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) ro: bool,
    pub(super) ts: Date,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) lm: Option<Date>,
    #[serde(rename = "lastMessage", skip_serializing_if = "Option::is_none")]
    pub(super) last_message: Option<&'a Value>,
    #[serde(rename = "_updatedAt")]
    pub(super) updated_at: Date,
}

/// `{"_id", "username"}`, as in a subscription's or a room's `u`.
#[derive(serde::Serialize)]
pub(super) struct IdUsername<'a> {
    #[serde(rename = "_id")]
    pub(super) id: &'a str,
    pub(super) username: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A room's document as rcsim built it before, through a `Map`.
    fn room_value(r: &Room) -> Value {
        let mut d = Map::new();
        d.insert("_id".into(), json!(r.id));
        d.insert("t".into(), json!(r.t.code()));
        if let Some(n) = &r.name {
            d.insert("name".into(), json!(n));
            d.insert("fname".into(), json!(n));
        }
        if let Some((usernames, uids)) = &r.dm {
            d.insert("usernames".into(), json!(usernames));
            d.insert("uids".into(), json!(uids));
        }
        d.insert("msgs".into(), json!(r.msgs));
        d.insert("usersCount".into(), json!(r.members.len()));
        if let Some((id, username)) = &r.creator {
            d.insert("u".into(), json!({"_id": id, "username": username}));
        }
        if r.default {
            d.insert("default".into(), json!(true));
        }
        if r.read_only {
            d.insert("ro".into(), json!(true));
        }
        d.insert("ts".into(), date(r.ts));
        if let Some(lm) = r.lm {
            d.insert("lm".into(), date(lm));
        }
        if let Some(m) = &r.last_message {
            d.insert("lastMessage".into(), m.clone());
        }
        d.insert("_updatedAt".into(), date(r.updated_at));
        Value::Object(d)
    }

    #[test]
    fn a_room_serialises_as_its_map_document_did() {
        let channel = Room {
            id: "GENERAL".into(),
            t: RoomType::Channel,
            name: Some("général \"1\"".into()),
            creator: Some(("u1".into(), "zoë".into())),
            ts: 1_700_000_000_000,
            msgs: 7,
            lm: Some(1_700_000_000_500),
            last_message: Some(json!({"_id": "m1", "msg": "hi\n", "md": [{"type": "PARAGRAPH"}]})),
            updated_at: 1_700_000_000_501,
            default: true,
            read_only: true,
            members: Arc::new(vec!["u1".into(), "u2".into()]),
            dm: None,
        };
        let dm = Room {
            id: "u1u2".into(),
            t: RoomType::Direct,
            name: None,
            creator: None,
            lm: None,
            last_message: None,
            default: false,
            read_only: false,
            dm: Some((vec!["a".into(), "b".into()], vec!["u1".into(), "u2".into()])),
            ..channel.clone()
        };
        for room in [&channel, &dm] {
            assert_eq!(room.doc(), room_value(room));
            assert_eq!(
                &*changed_args("updated", room.view()),
                json!(["updated", room_value(room)]).to_string(),
                "byte for byte"
            );
        }
    }

    #[test]
    fn a_subscription_serialises_as_its_value_document_did() {
        let sub = Sub {
            id: "sub\"1".into(),
            rid: "GENERAL".into(),
            uid: "u\\1".into(),
            username: "zoë".into(),
            name: "general\n".into(),
            fname: "Général \u{1F4AC}".into(),
            t: RoomType::Direct,
            ts: 1_700_000_000_000,
            ls: -1,
            open: true,
            alert: false,
            unread: 3,
            user_mentions: u64::MAX,
            group_mentions: 0,
            updated_at: 1_700_000_000_123,
        };
        // The document as rcsim built it before, through serde_json::Value.
        let doc = json!({
            "_id": sub.id,
            "rid": sub.rid,
            "u": {"_id": sub.uid, "username": sub.username},
            "name": sub.name,
            "fname": sub.fname,
            "t": sub.t.code(),
            "ts": date(sub.ts),
            "ls": date(sub.ls),
            "open": sub.open,
            "alert": sub.alert,
            "unread": sub.unread,
            "userMentions": sub.user_mentions,
            "groupMentions": sub.group_mentions,
            "_updatedAt": date(sub.updated_at),
        });
        assert_eq!(sub.doc(), doc);
        for kind in ["inserted", "updated"] {
            assert_eq!(
                &*sub.changed_args(kind),
                json!([kind, doc]).to_string(),
                "byte for byte"
            );
        }
    }
}
