//! The simulated database: users, login tokens, rooms, subscriptions and
//! messages. Every change returns the stream events Rocket.Chat's watchers
//! would emit for it (`docs/protocol/rocketchat.md` §3.4, §7.6); the caller hands
//! them to the [`crate::hub::Hub`] after releasing the store lock.

use crate::ejson::{self, date, Date};
use crate::error::MeteorError;
use crate::ids;
use crate::tokens::LoginTokens;
pub use crate::tokens::TokenRec;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A stream event to deliver.
#[derive(Debug, Clone)]
pub enum Emit {
    /// `changed` on `collection` for subscribers of exactly `event`.
    Stream {
        /// e.g. `stream-notify-user`.
        collection: &'static str,
        /// e.g. `<uid>/subscriptions-changed`.
        event: String,
        /// `fields.args`, serialised once and shared by every event that
        /// carries the same arguments (a room update goes to each member).
        args: Arc<str>,
    },
    /// A message for `__my_messages__` subscribers; each gets its own meta
    /// argument (`roomParticipant` differs per user).
    MyMessages {
        /// The message, serialised (EJSON).
        message: Arc<str>,
        /// `c`, `p`, `d`.
        room_type: &'static str,
        /// `roomName` (absent for DMs).
        room_name: Option<String>,
        /// Users subscribed to the room.
        members: Arc<Vec<String>>,
        /// Public rooms stream to every `__my_messages__` subscriber.
        public: bool,
    },
}

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

    fn emails_json(&self) -> Value {
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

    fn brief(&self) -> Value {
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
    fn view(&self) -> RoomDoc<'_> {
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

    fn is_public(&self) -> bool {
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
    fn view(&self) -> SubDoc<'_> {
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
    fn changed_args(&self, kind: &str) -> Arc<str> {
        changed_args(kind, self.view())
    }
}

/// [`Sub`]'s document, in Rocket.Chat's key order.
#[derive(serde::Serialize)]
struct SubDoc<'a> {
    #[serde(rename = "_id")]
    id: &'a str,
    rid: &'a str,
    u: IdUsername<'a>,
    name: &'a str,
    fname: &'a str,
    t: &'static str,
    ts: Date,
    ls: Date,
    open: bool,
    alert: bool,
    unread: u64,
    #[serde(rename = "userMentions")]
    user_mentions: u64,
    #[serde(rename = "groupMentions")]
    group_mentions: u64,
    #[serde(rename = "_updatedAt")]
    updated_at: Date,
}

/// `[kind, document]`, the arguments of a `*-changed` user event.
fn changed_args(kind: &str, doc: impl serde::Serialize) -> Arc<str> {
    Arc::from(ejson::text(&(kind, doc)))
}

/// [`Room`]'s document, in Rocket.Chat's key order.
#[derive(serde::Serialize)]
struct RoomDoc<'a> {
    #[serde(rename = "_id")]
    id: &'a str,
    t: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usernames: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uids: Option<&'a [String]>,
    msgs: u64,
    #[serde(rename = "usersCount")]
    users_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<IdUsername<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    default: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ro: bool,
    ts: Date,
    #[serde(skip_serializing_if = "Option::is_none")]
    lm: Option<Date>,
    #[serde(rename = "lastMessage", skip_serializing_if = "Option::is_none")]
    last_message: Option<&'a Value>,
    #[serde(rename = "_updatedAt")]
    updated_at: Date,
}

/// `{"_id", "username"}`, as in a subscription's or a room's `u`.
#[derive(serde::Serialize)]
struct IdUsername<'a> {
    #[serde(rename = "_id")]
    id: &'a str,
    username: &'a str,
}

struct StoredMessage {
    doc: Value,
    ts: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
}

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

/// Input of [`Store::create_user`].
#[derive(Clone, Debug, Default)]
pub struct NewUser {
    /// `username`.
    pub username: String,
    /// `name`.
    pub name: String,
    /// `email`.
    pub email: String,
    /// Plain password.
    pub password: String,
    /// `roles`; empty means `["user"]`.
    pub roles: Vec<String>,
    /// `verified`.
    pub verified: bool,
    /// `joinDefaultChannels`.
    pub join_default_channels: bool,
    /// `active` (`None` = true).
    pub active: Option<bool>,
    /// Set `createdAt` this far in the past (seeded admins are old accounts,
    /// so the two-factor "new user" grace does not apply to them).
    pub age_ms: i64,
    /// Opt the user in to email 2FA (`..._By_Email_Auto_Opt_In`).
    pub email2fa: bool,
}

/// Changes [`Store::update_user`] applies.
#[derive(Clone, Debug, Default)]
pub struct UserPatch {
    /// `name`.
    pub name: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// `password`.
    pub password: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `active`.
    pub active: Option<bool>,
    /// `roles`.
    pub roles: Option<Vec<String>>,
    /// `verified`.
    pub verified: Option<bool>,
}

/// How a user is named in a call.
#[derive(Clone, Debug)]
pub enum UserRef {
    /// By `_id`.
    Id(String),
    /// By `username`.
    Username(String),
    /// By email address.
    Email(String),
}

/// The whole database.
#[derive(Default)]
pub struct Store {
    users: HashMap<String, User>,
    by_username: HashMap<String, String>,
    by_email: HashMap<String, String>,
    tokens: LoginTokens,
    rooms: HashMap<String, Room>,
    room_by_name: HashMap<String, String>,
    subs: HashMap<String, HashMap<String, Sub>>,
    user_rooms: HashMap<String, BTreeSet<String>>,
    messages: HashMap<String, Vec<StoredMessage>>,
    msg_index: HashMap<String, (String, usize)>,
    removed_subs: Vec<(String, String, i64)>,
    last_ms: i64,
}

fn valid_username(u: &str) -> bool {
    // RC's default `UTF8_User_Names_Validation`: [0-9a-zA-Z-_.]+
    !u.is_empty()
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn field_unavailable(value: &str) -> MeteorError {
    MeteorError::new(
        "error-field-unavailable",
        format!("{value} is already in use :("),
    )
    .with_details(json!({"method": "insertOrUpdateUser", "field": value}))
}

fn markdown(text: &str) -> Value {
    json!([{"type": "PARAGRAPH", "value": [{"type": "PLAIN_TEXT", "value": text}]}])
}

impl Store {
    /// A strictly increasing clock, so two events never share a timestamp
    /// (clients sort and sync by them).
    pub fn tick(&mut self) -> i64 {
        let now = crate::ejson::now_ms().max(self.last_ms + 1);
        self.last_ms = now;
        now
    }

    // ---- users -------------------------------------------------------

    /// Finds a user.
    pub fn find_user(&self, r: &UserRef) -> Option<&User> {
        let id = match r {
            UserRef::Id(id) => id.clone(),
            UserRef::Username(u) => self.by_username.get(&u.to_lowercase())?.clone(),
            UserRef::Email(e) => self.by_email.get(&e.to_lowercase())?.clone(),
        };
        self.users.get(&id)
    }

    /// A user by id.
    pub fn user(&self, uid: &str) -> Option<&User> {
        self.users.get(uid)
    }

    /// A user by id, mutably.
    pub fn user_mut(&mut self, uid: &str) -> Option<&mut User> {
        self.users.get_mut(uid)
    }

    /// All users.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// `users.create` (via `saveUser`): validates, inserts, joins default channels.
    pub fn create_user(&mut self, n: NewUser, out: &mut Vec<Emit>) -> Result<String, MeteorError> {
        if !valid_username(&n.username) {
            return Err(MeteorError::new(
                "error-input-is-not-a-valid-field",
                format!("{} is not a valid username", n.username),
            )
            .with_details(
                json!({"method": "insertOrUpdateUser", "input": n.username, "field": "Username"}),
            ));
        }
        if self.by_username.contains_key(&n.username.to_lowercase()) {
            return Err(field_unavailable(&n.username));
        }
        if !n.email.is_empty() && self.by_email.contains_key(&n.email.to_lowercase()) {
            return Err(field_unavailable(&n.email));
        }
        let now = self.tick();
        let id = ids::random_id();
        let user = User {
            id: id.clone(),
            username: n.username.clone(),
            name: if n.name.is_empty() {
                n.username.clone()
            } else {
                n.name
            },
            emails: if n.email.is_empty() {
                vec![]
            } else {
                vec![Email {
                    address: n.email.clone(),
                    verified: n.verified,
                }]
            },
            password_digest: Some(ids::sha256_hex(&n.password)),
            roles: if n.roles.is_empty() {
                vec!["user".into()]
            } else {
                n.roles
            },
            active: n.active.unwrap_or(true),
            created_at: now - n.age_ms,
            updated_at: now,
            email2fa: n.email2fa,
            kind: "user".into(),
            email_code: None,
        };
        self.by_username
            .insert(n.username.to_lowercase(), id.clone());
        if !n.email.is_empty() {
            self.by_email.insert(n.email.to_lowercase(), id.clone());
        }
        self.users.insert(id.clone(), user);
        if n.join_default_channels {
            let defaults: Vec<String> = self
                .rooms
                .values()
                .filter(|r| r.default)
                .map(|r| r.id.clone())
                .collect();
            for rid in defaults {
                self.add_member(&rid, &id, None, out)?;
            }
        }
        Ok(id)
    }

    /// `users.update`. Returns the hashes of tokens removed (deactivation and
    /// password changes log the user out everywhere, as Meteor's
    /// `setPassword` does by default).
    pub fn update_user(&mut self, uid: &str, p: UserPatch) -> Result<Vec<String>, MeteorError> {
        if !self.users.contains_key(uid) {
            return Err(MeteorError::new("error-invalid-user", "Invalid user"));
        }
        if let Some(u) = &p.username {
            if !valid_username(u) {
                return Err(MeteorError::new(
                    "error-input-is-not-a-valid-field",
                    format!("{u} is not a valid username"),
                ));
            }
            if self
                .by_username
                .get(&u.to_lowercase())
                .is_some_and(|id| id != uid)
            {
                return Err(field_unavailable(u));
            }
        }
        if let Some(e) = &p.email {
            if self
                .by_email
                .get(&e.to_lowercase())
                .is_some_and(|id| id != uid)
            {
                return Err(field_unavailable(e));
            }
        }
        let now = self.tick();
        let mut logout = false;
        let user = self.users.get_mut(uid).expect("checked above");
        if let Some(u) = p.username {
            self.by_username.remove(&user.username.to_lowercase());
            self.by_username.insert(u.to_lowercase(), uid.to_string());
            user.username = u;
        }
        if let Some(e) = p.email {
            for old in &user.emails {
                self.by_email.remove(&old.address.to_lowercase());
            }
            self.by_email.insert(e.to_lowercase(), uid.to_string());
            user.emails = vec![Email {
                address: e,
                verified: p.verified.unwrap_or(false),
            }];
        } else if let Some(v) = p.verified {
            if let Some(first) = user.emails.first_mut() {
                first.verified = v;
            }
        }
        if let Some(n) = p.name {
            user.name = n;
        }
        if let Some(r) = p.roles {
            user.roles = r;
        }
        if let Some(pw) = p.password {
            user.password_digest = Some(ids::sha256_hex(&pw));
            logout = true;
        }
        if let Some(a) = p.active {
            user.active = a;
            logout |= !a;
        }
        user.updated_at = now;
        Ok(if logout {
            self.remove_user_tokens(uid)
        } else {
            vec![]
        })
    }

    /// `users.delete`: removes the user, its tokens and its subscriptions.
    pub fn delete_user(&mut self, uid: &str, out: &mut Vec<Emit>) -> Option<Vec<String>> {
        let user = self.users.get(uid)?.clone();
        let rooms: Vec<String> = self
            .user_rooms
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for rid in rooms {
            self.remove_member(&rid, uid, None, out);
        }
        let removed = self.remove_user_tokens(uid);
        self.users.remove(uid);
        self.by_username.remove(&user.username.to_lowercase());
        for e in &user.emails {
            self.by_email.remove(&e.address.to_lowercase());
        }
        self.user_rooms.remove(uid);
        Some(removed)
    }

    // ---- tokens ------------------------------------------------------

    /// Adds a login token for the user; returns the token itself.
    pub fn add_token(&mut self, uid: &str) -> (String, i64) {
        let token = ids::login_token();
        let when = self.tick();
        self.tokens.insert(
            ids::hash_login_token(&token),
            TokenRec {
                uid: uid.to_string(),
                when,
                expired: false,
                two_factor_until: None,
            },
        );
        // RC keeps at most 50 tokens per user (`ensureLoginTokensLimit`).
        self.tokens.keep_newest(uid, 50);
        (token, when)
    }

    /// The record of a hashed token.
    pub fn token(&self, hashed: &str) -> Option<&TokenRec> {
        self.tokens.get(hashed)
    }

    /// The record of a hashed token, mutably (its `uid` must not change:
    /// the tokens are indexed by it).
    pub fn token_mut(&mut self, hashed: &str) -> Option<&mut TokenRec> {
        self.tokens.get_mut(hashed)
    }

    /// Removes one token.
    pub fn remove_token(&mut self, hashed: &str) -> bool {
        self.tokens.remove(hashed).is_some()
    }

    /// `unsetLoginTokens`: removes all of a user's tokens; returns their hashes.
    pub fn remove_user_tokens(&mut self, uid: &str) -> Vec<String> {
        self.tokens.remove_user(uid)
    }

    /// Marks a user's tokens as past `tokenExpires` (not yet purged).
    pub fn expire_user_tokens(&mut self, uid: &str) -> usize {
        self.tokens.expire_user(uid)
    }

    /// Meteor's `_expireTokens` run: removes every expired token.
    pub fn purge_expired_tokens(&mut self) -> Vec<String> {
        self.tokens.purge_expired()
    }

    /// How many tokens a user holds.
    pub fn token_count(&self, uid: &str) -> usize {
        self.tokens.count(uid)
    }

    // ---- rooms -------------------------------------------------------

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

    fn system_message(&mut self, rid: &str, by: &str, t: &str, msg: &str, out: &mut Vec<Emit>) {
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
    fn mentions(&self, text: &str) -> (Vec<Value>, bool) {
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

    fn insert_message(
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
                let (title, body) = match room_type {
                    RoomType::Direct => (s.username.clone(), text.clone()),
                    _ => (
                        room_name.clone().unwrap_or_default(),
                        format!("{}: {text}", s.username),
                    ),
                };
                let mut payload = json!({
                    "_id": doc["_id"], "rid": rid,
                    "sender": {"_id": s.id, "username": s.username, "name": s.name},
                    "type": room_type.code(), "message": {"msg": text},
                });
                if let Some(n) = &room_name {
                    payload["name"] = json!(n);
                }
                if let Some(tmid) = tmid {
                    payload["tmid"] = tmid;
                }
                Arc::from(ejson::text(
                    &json!([{"title": title, "text": body, "duration": 0, "payload": payload}]),
                ))
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
    fn live_message(&self, id: &str) -> Option<(String, usize)> {
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
    fn restream(&self, rid: &str, doc: &Value, out: &mut Vec<Emit>) {
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

    /// Number of users, rooms and messages, for the status line.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.users.len(), self.rooms.len(), self.msg_index.len())
    }
}

/// Whether a message counts as unread (and so notifies), by Unread_Count's
/// defaults: every DM message does; in rooms only user and group mentions.
fn counts_unread(room_type: RoomType, user_mention: bool, group: bool) -> bool {
    room_type == RoomType::Direct || user_mention || group
}

/// A `stream-notify-user` event for `<uid>/<event>`.
pub fn user_event(uid: &str, event: &str, args: Value) -> Emit {
    user_event_shared(uid, event, Arc::from(ejson::text(&args)))
}

/// [`user_event`] with arguments already serialised (shared between users).
pub fn user_event_shared(uid: &str, event: &str, args: Arc<str>) -> Emit {
    Emit::Stream {
        collection: "stream-notify-user",
        event: format!("{uid}/{event}"),
        args,
    }
}

/// The two message streams: `stream-room-messages/<rid>` `[msg]` and
/// `__my_messages__` `[msg, meta]`, sharing one serialisation of the message.
fn emit_message(
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
