//! Open DDP connections and their stream subscriptions, and the fan-out of
//! events to them. Each event is serialised once and the bytes shared by
//! every connection that receives it, which is what lets rcsim push well
//! over 100k events a second on two cores.

use crate::store::Emit;
use bytestring::ByteString;
use parking_lot::RwLock;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// A connection id, unique for the life of the simulator.
pub type ConnId = u64;

/// What the hub asks a connection's task to do.
#[derive(Debug)]
pub enum Out {
    /// Send this text frame.
    Text(ByteString),
    /// Send a Close frame with this code and reason, then end (sockjs closes
    /// with 1000 when the server drops a session).
    Close(u16, String),
    /// End the TCP connection without a Close frame (a crash, a network cut).
    Abort,
    /// Send these texts as one fragmented message (first, continuations, last).
    Fragments(Vec<String>),
}

struct Conn {
    tx: UnboundedSender<Out>,
    user: Option<String>,
    token: Option<String>,
}

#[derive(Default)]
struct Routes {
    conns: HashMap<ConnId, Conn>,
    /// collection → eventName → connection → number of subscriptions
    /// (nested so that a lookup borrows the event name, no allocation).
    streams: HashMap<&'static str, HashMap<String, HashMap<ConnId, u32>>>,
    /// uid → connections subscribed to `__my_messages__` while logged in as uid.
    my_messages: HashMap<String, HashMap<ConnId, u32>>,
    /// uid → logged-in connections.
    by_user: HashMap<String, HashSet<ConnId>>,
}

/// The routing table. Cheap to read (events), briefly written (subscribe,
/// login, close).
#[derive(Default)]
pub struct Hub {
    next: AtomicU64,
    routes: RwLock<Routes>,
    delivered: AtomicU64,
}

/// `{"msg":"changed","collection":..,"id":"id","fields":{"eventName":..,"args":..}}`
/// around arguments already serialised.
pub fn changed_frame(collection: &str, event: &str, args: &str) -> ByteString {
    let event = crate::ejson::text(&event);
    // Sized once: `format!` grew the frame by doubling, several reallocations
    // for each of the ~30 frames a posted message makes.
    let mut f = String::with_capacity(80 + collection.len() + event.len() + args.len());
    f.push_str(r#"{"msg":"changed","collection":""#);
    f.push_str(collection);
    f.push_str(r#"","id":"id","fields":{"eventName":"#);
    f.push_str(&event);
    f.push_str(r#","args":"#);
    f.push_str(args);
    f.push_str("}}");
    ByteString::from(f)
}

impl Hub {
    /// Registers a new connection; its task reads the receiver.
    pub fn open(&self) -> (ConnId, UnboundedReceiver<Out>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = unbounded_channel();
        self.routes.write().conns.insert(
            id,
            Conn {
                tx,
                user: None,
                token: None,
            },
        );
        (id, rx)
    }

    /// Forgets a connection and its subscriptions.
    pub fn close(&self, id: ConnId) {
        let mut r = self.routes.write();
        if let Some(c) = r.conns.remove(&id) {
            if let Some(u) = c.user {
                Self::unbind_user(&mut r, id, &u);
            }
        }
        for events in r.streams.values_mut() {
            events.retain(|_, m| {
                m.remove(&id);
                !m.is_empty()
            });
        }
    }

    fn unbind_user(r: &mut Routes, id: ConnId, uid: &str) {
        if let Some(set) = r.by_user.get_mut(uid) {
            set.remove(&id);
            if set.is_empty() {
                r.by_user.remove(uid);
            }
        }
        if let Some(m) = r.my_messages.get_mut(uid) {
            if let Some(n) = m.remove(&id) {
                // Meteor re-runs subscriptions on a user change; the
                // `__my_messages__` subscription follows the connection.
                let _ = n;
            }
            if m.is_empty() {
                r.my_messages.remove(uid);
            }
        }
    }

    /// Binds a connection to a user and token after login (or unbinds with `None`).
    /// Returns how many `__my_messages__` subscriptions moved with it.
    pub fn set_user(&self, id: ConnId, login: Option<(String, String)>, my_messages_subs: u32) {
        let mut r = self.routes.write();
        let old = r.conns.get(&id).and_then(|c| c.user.clone());
        if let Some(u) = old {
            Self::unbind_user(&mut r, id, &u);
        }
        let Some(conn) = r.conns.get_mut(&id) else {
            return;
        };
        match login {
            Some((uid, token)) => {
                conn.user = Some(uid.clone());
                conn.token = Some(token);
                r.by_user.entry(uid.clone()).or_default().insert(id);
                if my_messages_subs > 0 {
                    r.my_messages
                        .entry(uid)
                        .or_default()
                        .insert(id, my_messages_subs);
                }
            }
            None => {
                conn.user = None;
                conn.token = None;
            }
        }
    }

    /// Adds a stream subscription.
    pub fn subscribe(&self, id: ConnId, collection: &'static str, event: &str) {
        let mut r = self.routes.write();
        *r.streams
            .entry(collection)
            .or_default()
            .entry(event.to_string())
            .or_default()
            .entry(id)
            .or_default() += 1;
    }

    /// Adds a `__my_messages__` subscription for the connection's user.
    pub fn subscribe_my_messages(&self, id: ConnId, uid: &str) {
        let mut r = self.routes.write();
        *r.my_messages
            .entry(uid.to_string())
            .or_default()
            .entry(id)
            .or_default() += 1;
    }

    /// Removes one stream subscription.
    pub fn unsubscribe(
        &self,
        id: ConnId,
        collection: &'static str,
        event: &str,
        my_uid: Option<&str>,
    ) {
        let mut r = self.routes.write();
        let map = if event == "__my_messages__" && collection == "stream-room-messages" {
            match my_uid {
                Some(u) => r.my_messages.get_mut(u),
                None => None,
            }
        } else {
            r.streams.get_mut(collection).and_then(|e| e.get_mut(event))
        };
        if let Some(m) = map {
            if let Some(n) = m.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&id);
                }
            }
        }
    }

    /// Drops every room-stream subscription a user's connections hold for
    /// `rid` (Rocket.Chat stops streaming a room to a user who left it).
    pub fn forget_room(&self, uid: &str, rid: &str) {
        let mut r = self.routes.write();
        let conns: Vec<ConnId> = r
            .by_user
            .get(uid)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        if let Some(m) = r
            .streams
            .get_mut("stream-room-messages")
            .and_then(|e| e.get_mut(rid))
        {
            for c in conns {
                m.remove(&c);
            }
        }
    }

    /// Delivers events.
    pub fn emit(&self, emits: Vec<Emit>) {
        self.emit_except(emits, None);
    }

    /// Delivers events to every subscriber but `origin` (RC's streamer does
    /// not retransmit a client's own stream writes to it).
    pub fn emit_except(&self, emits: Vec<Emit>, origin: Option<ConnId>) {
        if emits.is_empty() {
            return;
        }
        let r = self.routes.read();
        let mut n = 0u64;
        for e in emits {
            match e {
                Emit::Stream {
                    collection,
                    event,
                    args,
                } => {
                    let Some(subs) = r
                        .streams
                        .get(collection)
                        .and_then(|e| e.get(event.as_str()))
                    else {
                        continue;
                    };
                    let frame = changed_frame(collection, &event, &args);
                    for (conn, count) in subs {
                        if Some(*conn) == origin {
                            continue;
                        }
                        if let Some(c) = r.conns.get(conn) {
                            for _ in 0..*count {
                                let _ = c.tx.send(Out::Text(frame.clone()));
                                n += 1;
                            }
                        }
                    }
                }
                Emit::MyMessages {
                    message,
                    room_type,
                    room_name,
                    members,
                    public,
                } => {
                    let mut frames: [Option<ByteString>; 2] = [None, None];
                    let mut frame_for = |participant: bool| {
                        frames[usize::from(participant)]
                            .get_or_insert_with(|| {
                                let mut meta =
                                    json!({"roomParticipant": participant, "roomType": room_type});
                                if let Some(n) = &room_name {
                                    meta["roomName"] = json!(n);
                                }
                                changed_frame(
                                    "stream-room-messages",
                                    "__my_messages__",
                                    &format!("[{message},{meta}]"),
                                )
                            })
                            .clone()
                    };
                    let mut send = |uid: &str, participant: bool| {
                        if let Some(subs) = r.my_messages.get(uid) {
                            for (conn, count) in subs {
                                if let Some(c) = r.conns.get(conn) {
                                    for _ in 0..*count {
                                        let _ = c.tx.send(Out::Text(frame_for(participant)));
                                        n += 1;
                                    }
                                }
                            }
                        }
                    };
                    if public {
                        // Rocket.Chat streams public rooms to every user who
                        // could read them, marked roomParticipant:false.
                        for uid in r.my_messages.keys() {
                            send(uid, members.contains(uid));
                        }
                    } else {
                        for uid in members.iter() {
                            send(uid, true);
                        }
                    }
                }
            }
        }
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    /// Sends `out` to the connections chosen by `pick(user, token)`; returns how many.
    pub fn signal(
        &self,
        pick: impl Fn(Option<&str>, Option<&str>) -> bool,
        out: impl Fn() -> Out,
    ) -> usize {
        let r = self.routes.read();
        let mut n = 0;
        for c in r.conns.values() {
            if pick(c.user.as_deref(), c.token.as_deref()) {
                let _ = c.tx.send(out());
                n += 1;
            }
        }
        n
    }

    /// Closes (1000, no DDP frame) every connection logged in with one of `hashes`,
    /// except `keep`.
    pub fn close_tokens(&self, hashes: &[String], keep: Option<ConnId>) -> usize {
        if hashes.is_empty() {
            return 0;
        }
        let set: HashSet<&str> = hashes.iter().map(String::as_str).collect();
        let r = self.routes.read();
        let mut n = 0;
        for (id, c) in &r.conns {
            if Some(*id) != keep && c.token.as_deref().is_some_and(|t| set.contains(t)) {
                let _ = c.tx.send(Out::Close(1000, "Normal closure".into()));
                n += 1;
            }
        }
        n
    }

    /// Logged-in connections of a user.
    pub fn user_connections(&self, uid: &str) -> usize {
        self.routes.read().by_user.get(uid).map_or(0, HashSet::len)
    }

    /// All open connections.
    pub fn connections(&self) -> usize {
        self.routes.read().conns.len()
    }

    /// Stream subscriptions (all kinds) held by a user's connections.
    pub fn user_subscriptions(&self, uid: &str) -> usize {
        let r = self.routes.read();
        let Some(conns) = r.by_user.get(uid) else {
            return 0;
        };
        let streams: u32 = r
            .streams
            .values()
            .flat_map(HashMap::values)
            .flat_map(|m| conns.iter().filter_map(|c| m.get(c)))
            .sum();
        let mine: u32 = r.my_messages.get(uid).map_or(0, |m| m.values().sum());
        (streams + mine) as usize
    }

    /// Stream subscriptions across all connections.
    pub fn total_subscriptions(&self) -> usize {
        let r = self.routes.read();
        let streams: u32 = r
            .streams
            .values()
            .flat_map(HashMap::values)
            .flat_map(HashMap::values)
            .sum();
        let mine: u32 = r.my_messages.values().flat_map(HashMap::values).sum();
        (streams + mine) as usize
    }

    /// Events handed to connections so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_changed_frame_is_the_ddp_message_serde_would_write() {
        let args = r#"["updated",{"_id":"r1","name":"zoë \"quoted\"","n":[1,2.5,null]}]"#;
        let event = "uid/rooms-\"changed\"\n";
        let frame = changed_frame("stream-notify-user", event, args);
        let expected = json!({
            "msg": "changed",
            "collection": "stream-notify-user",
            "id": "id",
            "fields": {
                "eventName": event,
                "args": serde_json::from_str::<Value>(args).unwrap(),
            },
        });
        assert_eq!(&*frame, expected.to_string());
    }
}
