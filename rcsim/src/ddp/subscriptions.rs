//! DDP subscriptions: the streams a client may subscribe to, who may read
//! what, `ready` and `nosub`.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum SubKind {
    Stream(&'static str),
    MyMessages,
    Other,
}

pub(super) struct SubRec {
    pub(super) kind: SubKind,
    pub(super) event: String,
}

impl Connection {
    pub(super) async fn handle_sub(&mut self, msg: &Value) -> Flow {
        let id = msg.get("id").and_then(Value::as_str);
        let name = msg.get("name").and_then(Value::as_str);
        let params_ok = msg.get("params").is_none_or(Value::is_array);
        let (Some(id), Some(name), true) = (id, name, params_ok) else {
            return self.send_error("Malformed subscription", Some(msg)).await;
        };
        if self.subs.contains_key(id) {
            return Flow::Continue;
        }
        let id = id.to_string();
        let params = params(msg);
        if name == "meteor.loginServiceConfiguration" {
            self.subs.insert(
                id.clone(),
                SubRec {
                    kind: SubKind::Other,
                    event: String::new(),
                },
            );
            let r = self.send(&json!({"msg": "ready", "subs": [id]})).await;
            return self.flow(r);
        }
        let Some(collection) = STREAMS.iter().find(|s| **s == name).copied() else {
            let err = MeteorError::new(404, format!("Subscription '{name}' not found"));
            return self.nosub(&id, Some(err)).await;
        };
        let event = match params.first() {
            Some(Value::String(e)) if !e.is_empty() => e.clone(),
            _ => {
                return self
                    .nosub(&id, Some(MeteorError::bare("invalid-event-name")))
                    .await
            }
        };
        let use_collection = match params.get(1) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Object(o)) => o
                .get("useCollection")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            Some(Value::Null) => return self.nosub(&id, Some(MeteorError::internal())).await,
            Some(_) => false,
        };
        if !self.read_allowed(collection, &event) {
            return self
                .nosub(&id, Some(MeteorError::bare("not-allowed")))
                .await;
        }
        let kind = if collection == "stream-room-messages" && event == "__my_messages__" {
            if let Some(l) = &self.login {
                self.sim.hub.subscribe_my_messages(self.id, &l.uid);
            }
            SubKind::MyMessages
        } else {
            self.sim.hub.subscribe(self.id, collection, &event);
            SubKind::Stream(collection)
        };
        self.subs.insert(
            id.clone(),
            SubRec {
                kind,
                event: event.clone(),
            },
        );
        self.sim.bump();
        if use_collection {
            let added = json!({"msg": "added", "collection": collection, "id": "id", "fields": {"eventName": event}});
            if self.send(&added).await.is_err() {
                return Flow::Stop;
            }
        }
        let r = self.send(&json!({"msg": "ready", "subs": [id]})).await;
        self.flow(r)
    }

    pub(super) fn read_allowed(&self, collection: &str, event: &str) -> bool {
        let uid = self.login.as_ref().map(|l| l.uid.as_str());
        match collection {
            "stream-notify-user" => {
                event.ends_with("/webrtc")
                    || uid.is_some_and(|u| event.split('/').next() == Some(u))
            }
            "stream-room-messages" if event == "__my_messages__" => true,
            "stream-room-messages" => {
                uid.is_some_and(|u| self.sim.store.lock().can_access(event, u))
            }
            "stream-notify-room" => {
                let rid = event.split('/').next().unwrap_or_default();
                uid.is_some_and(|u| self.sim.store.lock().can_access(rid, u))
            }
            "stream-notify-all" => true,
            _ => uid.is_some(),
        }
    }

    pub(super) async fn nosub(&mut self, id: &str, error: Option<MeteorError>) -> Flow {
        let mut m = json!({"msg": "nosub", "id": id});
        if let Some(e) = error {
            m["error"] = e.to_ddp();
        }
        let r = self.send(&m).await;
        self.flow(r)
    }

    pub(super) async fn handle_unsub(&mut self, msg: &Value) -> Flow {
        let Some(id) = msg.get("id").and_then(Value::as_str) else {
            return self.send_error("Malformed subscription", Some(msg)).await;
        };
        if let Some(s) = self.subs.remove(id) {
            let uid = self.login.as_ref().map(|l| l.uid.clone());
            match s.kind {
                SubKind::Stream(c) => self.sim.hub.unsubscribe(self.id, c, &s.event, None),
                SubKind::MyMessages => self.sim.hub.unsubscribe(
                    self.id,
                    "stream-room-messages",
                    "__my_messages__",
                    uid.as_deref(),
                ),
                SubKind::Other => {}
            }
        }
        self.nosub(id, None).await
    }
}
