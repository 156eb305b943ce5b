//! DDP over `/websocket`, as Meteor's `livedata_server` and RC's streamer
//! speak it (`docs/protocol/rocketchat.md` §2–§3). One task per connection reads
//! client frames, runs methods in order, and writes the events the hub
//! queues for it.

use crate::ejson::{date, parse_date};
use crate::error::MeteorError;
use crate::hub::{ConnId, Out};
use crate::ids;
use crate::sim::{Credential, LoginOk, LoginPath, Password, Sim};
use crate::store::UserRef;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Item, Session};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// DDP versions Meteor supports, best first.
const SUPPORTED: [&str; 3] = ["1", "pre2", "pre1"];

/// Meteor's accounts rule: this many `login` calls per connection…
const LOGINS_PER_WINDOW: usize = 5;
/// …in this window.
const LOGIN_WINDOW: Duration = Duration::from_secs(10);

/// The streams rcsim publishes, by publication name.
const STREAMS: [&str; 6] = [
    "stream-notify-user",
    "stream-room-messages",
    "stream-notify-room",
    "stream-notify-logged",
    "stream-notify-all",
    "stream-user-presence",
];

/// `GET /websocket`: upgrades and spawns the connection task.
pub async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    sim: web::Data<Arc<Sim>>,
) -> actix_web::Result<HttpResponse> {
    if sim.faults.refusing() {
        return Ok(
            HttpResponse::ServiceUnavailable().body("rcsim: refusing connections (injected fault)")
        );
    }
    let (resp, session, stream) = actix_ws::handle(&req, body)?;
    let max = sim.settings.read().max_ddp_frame;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let ip = crate::rest::client_ip(&req);
    let sim: Arc<Sim> = Arc::clone(&sim);
    let (id, rx) = sim.hub.open();
    sim.bump();
    actix_web::rt::spawn(async move {
        // Deregisters even when the task is dropped mid-flight (a server
        // stop or restart drops its workers' tasks).
        let _registered = Registered {
            sim: Arc::clone(&sim),
            id,
        };
        let mut conn = Connection::new(sim, session, id, ip);
        conn.run(stream, rx).await;
    });
    Ok(resp)
}

struct Registered {
    sim: Arc<Sim>,
    id: ConnId,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.sim.hub.close(self.id);
        self.sim.bump();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SubKind {
    Stream(&'static str),
    MyMessages,
    Other,
}

struct SubRec {
    kind: SubKind,
    event: String,
}

/// Whether the loop goes on.
enum Flow {
    Continue,
    Stop,
}

struct Connection {
    sim: Arc<Sim>,
    session: Session,
    id: ConnId,
    ip: String,
    connected: bool,
    heartbeat: bool,
    login: Option<LoginOk>,
    subs: HashMap<String, SubRec>,
    login_calls: VecDeque<Instant>,
}

impl Connection {
    fn new(sim: Arc<Sim>, session: Session, id: ConnId, ip: String) -> Self {
        Connection {
            sim,
            session,
            id,
            ip,
            connected: false,
            heartbeat: true,
            login: None,
            subs: HashMap::new(),
            login_calls: VecDeque::new(),
        }
    }

    async fn run(
        &mut self,
        mut stream: actix_ws::AggregatedMessageStream,
        mut rx: UnboundedReceiver<Out>,
    ) {
        let settings = self.sim.settings();
        if settings.send_server_id
            && self
                .send_raw(r#"{"server_id":"0"}"#.to_string())
                .await
                .is_err()
        {
            return;
        }
        let interval = settings.heartbeat_interval;
        let timeout = settings.heartbeat_timeout;
        let connect_deadline = Instant::now() + settings.connect_timeout;
        // Meteor's heartbeat: every `interval`, if nothing arrived since the
        // last check, ping and wait `timeout` for any frame.
        let mut next_check = Instant::now() + interval;
        let mut heard = false;
        let mut ping_deadline: Option<Instant> = None;
        // One timer for the connection's life, moved only when the deadline
        // changes (a fresh timer per frame costs more than the frame).
        let timer = tokio::time::sleep_until(connect_deadline.into());
        tokio::pin!(timer);
        loop {
            let wake = if !self.connected {
                connect_deadline
            } else if !self.heartbeat {
                Instant::now() + Duration::from_secs(3600)
            } else {
                ping_deadline.unwrap_or(next_check)
            };
            if timer.deadline() != wake.into() {
                timer.as_mut().reset(wake.into());
            }
            tokio::select! {
                msg = stream.recv() => {
                    // Meteor's heartbeat counts DDP messages only; websocket
                    // control frames never reach it.
                    if matches!(msg, Some(Ok(AggregatedMessage::Text(_)))) {
                        heard = true;
                        ping_deadline = None;
                    }
                    let flow = match msg {
                        None | Some(Ok(AggregatedMessage::Close(_))) => Flow::Stop,
                        Some(Ok(AggregatedMessage::Text(t))) => self.handle_text(&t).await,
                        Some(Ok(AggregatedMessage::Ping(p))) => {
                            if self.session.pong(&p).await.is_err() { Flow::Stop } else { Flow::Continue }
                        }
                        Some(Ok(AggregatedMessage::Pong(_) | AggregatedMessage::Binary(_))) => Flow::Continue,
                        Some(Err(e)) => {
                            log::debug!("ddp conn {}: protocol error: {e}", self.id);
                            let _ = self.session.clone().close(Some(CloseReason { code: CloseCode::Protocol, description: Some(e.to_string()) })).await;
                            Flow::Stop
                        }
                    };
                    if let Flow::Stop = flow { break; }
                }
                out = rx.recv() => {
                    let Some(out) = out else { break };
                    if let Flow::Stop = self.handle_out(out).await { break; }
                    // Write whatever else is queued before selecting again.
                    let mut stop = false;
                    while let Ok(out) = rx.try_recv() {
                        if let Flow::Stop = self.handle_out(out).await { stop = true; break; }
                    }
                    if stop { break; }
                }
                _ = &mut timer => {
                    if !self.connected {
                        log::debug!("ddp conn {}: no connect within the socket timeout", self.id);
                        self.close_normal().await;
                        break;
                    }
                    if ping_deadline.is_some() {
                        log::debug!("ddp conn {}: heartbeat timeout", self.id);
                        self.close_normal().await;
                        break;
                    }
                    if !heard {
                        if self.send(&json!({"msg": "ping"})).await.is_err() { break; }
                        ping_deadline = Some(Instant::now() + timeout);
                    }
                    heard = false;
                    next_check = Instant::now() + interval;
                }
            }
        }
    }

    async fn handle_out(&mut self, out: Out) -> Flow {
        match out {
            Out::Text(t) => {
                if self.session.text(t).await.is_err() {
                    return Flow::Stop;
                }
            }
            Out::Close(code, reason) => {
                let _ = self
                    .session
                    .clone()
                    .close(Some(CloseReason {
                        code: CloseCode::from(code),
                        description: Some(reason),
                    }))
                    .await;
                return Flow::Stop;
            }
            Out::Abort => return Flow::Stop,
            Out::Fragments(parts) => {
                let n = parts.len();
                for (i, p) in parts.into_iter().enumerate() {
                    let item = match i {
                        0 => Item::FirstText(p.into()),
                        _ if i + 1 == n => Item::Last(p.into()),
                        _ => Item::Continue(p.into()),
                    };
                    if self.session.continuation(item).await.is_err() {
                        return Flow::Stop;
                    }
                }
            }
        }
        Flow::Continue
    }

    async fn close_normal(&mut self) {
        let _ = self
            .session
            .clone()
            .close(Some(CloseReason {
                code: CloseCode::Normal,
                description: Some("Normal closure".into()),
            }))
            .await;
    }

    async fn send_raw(&mut self, text: String) -> Result<(), actix_ws::Closed> {
        self.session.text(text).await
    }

    async fn send(&mut self, v: &Value) -> Result<(), actix_ws::Closed> {
        self.send_raw(v.to_string()).await
    }

    async fn send_error(&mut self, reason: &str, offending: Option<&Value>) -> Flow {
        let mut m = json!({"msg": "error", "reason": reason});
        if let Some(o) = offending {
            m["offendingMessage"] = o.clone();
        }
        let r = self.send(&m).await;
        self.flow(r)
    }

    fn flow(&self, r: Result<(), actix_ws::Closed>) -> Flow {
        if r.is_ok() {
            Flow::Continue
        } else {
            Flow::Stop
        }
    }

    async fn handle_text(&mut self, text: &str) -> Flow {
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            return self.send_error("Parse error", None).await;
        };
        let kind = msg
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if kind.is_empty() {
            let offending = (!msg.is_null()).then_some(&msg);
            return self.send_error("Bad request", offending).await;
        }
        if kind == "connect" {
            if self.connected {
                return self.send_error("Already connected", Some(&msg)).await;
            }
            return self.handle_connect(&msg).await;
        }
        if !self.connected {
            return self.send_error("Must connect first", Some(&msg)).await;
        }
        match kind.as_str() {
            "ping" => {
                if self
                    .sim
                    .faults
                    .deaf
                    .load(std::sync::atomic::Ordering::Relaxed)
                {
                    return Flow::Continue;
                }
                let mut pong = json!({"msg": "pong"});
                if let Some(id) = msg.get("id") {
                    pong["id"] = id.clone();
                }
                let r = self.send(&pong).await;
                self.flow(r)
            }
            "pong" => Flow::Continue,
            "method" => self.handle_method(&msg).await,
            "sub" => self.handle_sub(&msg).await,
            "unsub" => self.handle_unsub(&msg).await,
            _ => self.send_error("Bad request", Some(&msg)).await,
        }
    }

    async fn handle_connect(&mut self, msg: &Value) -> Flow {
        let version = msg.get("version").and_then(Value::as_str);
        let support: Option<Vec<&str>> = msg
            .get("support")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_str).collect());
        let (Some(version), Some(support)) = (version, support) else {
            return self.fail_connect(SUPPORTED[0]).await;
        };
        if !support.contains(&version) {
            return self.fail_connect(SUPPORTED[0]).await;
        }
        let best = support
            .iter()
            .find(|v| SUPPORTED.contains(v))
            .copied()
            .unwrap_or(SUPPORTED[0]);
        if best != version {
            return self.fail_connect(best).await;
        }
        self.connected = true;
        self.heartbeat = version != "pre1";
        let r = self
            .send(&json!({"msg": "connected", "session": ids::random_id()}))
            .await;
        self.flow(r)
    }

    async fn fail_connect(&mut self, version: &str) -> Flow {
        let _ = self
            .send(&json!({"msg": "failed", "version": version}))
            .await;
        self.close_normal().await;
        Flow::Stop
    }

    // ---- methods -----------------------------------------------------

    async fn handle_method(&mut self, msg: &Value) -> Flow {
        let id = msg.get("id").and_then(Value::as_str);
        let method = msg.get("method").and_then(Value::as_str);
        let params_ok = msg.get("params").is_none_or(Value::is_array);
        let seed_ok = msg.get("randomSeed").is_none_or(Value::is_string);
        let (Some(id), Some(method), true, true) = (id, method, params_ok, seed_ok) else {
            return self
                .send_error("Malformed method invocation", Some(msg))
                .await;
        };
        let id = id.to_string();
        let params = msg
            .get("params")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let delay = self.sim.faults.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let result = match method {
            "login" => self.method_login(&params).await,
            "logout" => self.method_logout().await,
            "rooms/get" => Ok(self.method_rooms_get(&params)),
            "sendMessage" => self.method_send_message(&params),
            "setReaction" => self.method_set_reaction(&params),
            "stream-notify-room" => self.method_notify_room(&params),
            other => {
                // Meteor answers an unknown method at once, then arms the fence.
                let err = MeteorError::new(404, format!("Method '{other}' not found"));
                let r = self
                    .send(&json!({"msg": "result", "id": id, "error": err.to_ddp()}))
                    .await;
                if r.is_err() {
                    return Flow::Stop;
                }
                let r = self.send(&json!({"msg": "updated", "methods": [id]})).await;
                return self.flow(r);
            }
        };
        let mut frame = json!({"msg": "result", "id": id});
        match result {
            Ok(Some(v)) => frame["result"] = v,
            Ok(None) => {}
            Err(e) => frame["error"] = e.to_ddp(),
        }
        let updated = json!({"msg": "updated", "methods": [id]});
        let frames = if self.sim.settings.read().updated_before_result {
            [updated, frame]
        } else {
            [frame, updated]
        };
        for f in &frames {
            if self.send(f).await.is_err() {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    fn login_rate_limited(&mut self) -> Option<MeteorError> {
        if !self.sim.settings.read().ddp_login_rate_limit {
            return None;
        }
        let now = Instant::now();
        while self
            .login_calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= LOGIN_WINDOW)
        {
            self.login_calls.pop_front();
        }
        self.login_calls.push_back(now);
        if self.login_calls.len() <= LOGINS_PER_WINDOW {
            return None;
        }
        let oldest = *self.login_calls.front().expect("just pushed");
        let wait = LOGIN_WINDOW.saturating_sub(now.duration_since(oldest));
        Some(
            MeteorError::new(
                "too-many-requests",
                format!(
                    "Error, too many requests. Please slow down. You must wait {} seconds before trying again.",
                    wait.as_secs_f64().ceil() as u64
                ),
            )
            .with_details(json!({"timeToReset": wait.as_millis() as u64})),
        )
    }

    async fn method_login(&mut self, params: &[Value]) -> Result<Option<Value>, MeteorError> {
        if let Some(e) = self.login_rate_limited() {
            return Err(e);
        }
        let cred = parse_login_params(params.first())?;
        let ok = self.sim.login(cred, &self.ip, LoginPath::Ddp)?;
        let user = self.sim.store.lock().user(&ok.uid).cloned();
        let Some(user) = user else {
            return Err(MeteorError::new(403, "User not found"));
        };
        let my_subs = self
            .subs
            .values()
            .filter(|s| s.kind == SubKind::MyMessages)
            .count() as u32;
        self.sim.hub.set_user(
            self.id,
            Some((ok.uid.clone(), ok.token_hash.clone())),
            my_subs,
        );
        // The token may have been removed between the check and the bind.
        if self.sim.store.lock().token(&ok.token_hash).is_none() {
            return Err(MeteorError::new(
                403,
                "You've been logged out by the server. Please log in again.",
            ));
        }
        let added = json!({"msg": "added", "collection": "users", "id": ok.uid, "fields": user.ddp_fields()});
        if self.send(&added).await.is_err() {
            return Err(MeteorError::internal());
        }
        let result = json!({"id": ok.uid, "token": ok.token, "tokenExpires": date(ok.expires), "type": ok.kind});
        self.login = Some(ok);
        self.sim.bump();
        Ok(Some(result))
    }

    async fn method_logout(&mut self) -> Result<Option<Value>, MeteorError> {
        let Some(login) = self.login.take() else {
            return Ok(None);
        };
        self.sim.hub.set_user(self.id, None, 0);
        self.sim.store.lock().remove_token(&login.token_hash);
        self.sim
            .tokens_removed(std::slice::from_ref(&login.token_hash), Some(self.id));
        // setUserId(null) re-runs the subscriptions: user-scoped ones stop.
        let scoped: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| matches!(s.kind, SubKind::Stream(c) if c != "stream-notify-all"))
            .map(|(id, _)| id.clone())
            .collect();
        for sub_id in scoped {
            if let Some(s) = self.subs.remove(&sub_id) {
                if let SubKind::Stream(c) = s.kind {
                    self.sim.hub.unsubscribe(self.id, c, &s.event, None);
                }
                let _ = self
                    .send(&json!({"msg": "nosub", "id": sub_id, "error": MeteorError::bare("not-allowed").to_ddp()}))
                    .await;
            }
        }
        let _ = self
            .send(&json!({"msg": "removed", "collection": "users", "id": login.uid}))
            .await;
        Ok(None)
    }

    fn method_rooms_get(&self, params: &[Value]) -> Option<Value> {
        let Some(login) = &self.login else {
            return Some(json!([]));
        };
        let store = self.sim.store.lock();
        match params.first().and_then(parse_date) {
            Some(since) => {
                Some(json!({"update": store.rooms_of(&login.uid, Some(since)), "remove": []}))
            }
            None => Some(Value::Array(store.rooms_of(&login.uid, None))),
        }
    }

    fn method_send_message(&self, params: &[Value]) -> Result<Option<Value>, MeteorError> {
        let Some(login) = &self.login else {
            return Err(MeteorError::new("error-invalid-user", "Invalid user")
                .with_details(json!({"method": "sendMessage"})));
        };
        let Some(Value::Object(m)) = params.first() else {
            return Err(MeteorError::new(400, "Match failed"));
        };
        let (Some(rid), Some(text)) = (
            m.get("rid").and_then(Value::as_str),
            m.get("msg").and_then(Value::as_str),
        ) else {
            return Err(MeteorError::new(400, "Match failed"));
        };
        let extra: Map<String, Value> = m
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "rid" | "msg"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let real_name = self.sim.settings.read().use_real_name;
        let mut out = vec![];
        let doc = self
            .sim
            .store
            .lock()
            .post_message(&login.uid, rid, text, extra, real_name, &mut out)?;
        self.sim.emit(out);
        Ok(Some(doc))
    }

    /// `setReaction [emoji, messageId, shouldReact?]`.
    fn method_set_reaction(&self, params: &[Value]) -> Result<Option<Value>, MeteorError> {
        let Some(login) = &self.login else {
            return Err(MeteorError::new("error-invalid-user", "Invalid user")
                .with_details(json!({"method": "setReaction"})));
        };
        let (Some(emoji), Some(id)) = (
            params.first().and_then(Value::as_str),
            params.get(1).and_then(Value::as_str),
        ) else {
            return Err(MeteorError::new(400, "Match failed"));
        };
        let should = params.get(2).and_then(Value::as_bool);
        let mut out = vec![];
        let r = self
            .sim
            .store
            .lock()
            .react(&login.uid, id, emoji, should, &mut out);
        self.sim.emit(out);
        r.map(|()| None)
    }

    /// The method RC's streamer registers for `stream-notify-room`: a client
    /// announces typing (`<rid>/user-activity` or the deprecated
    /// `<rid>/typing`) as itself, to the room's other subscribers.
    fn method_notify_room(&self, params: &[Value]) -> Result<Option<Value>, MeteorError> {
        let not_allowed = || MeteorError::bare("not-allowed");
        let Some(login) = &self.login else {
            return Err(not_allowed());
        };
        let Some(event) = params.first().and_then(Value::as_str) else {
            return Err(MeteorError::new(400, "Match failed"));
        };
        let (rid, kind) = event.split_once('/').unwrap_or((event, ""));
        let store = self.sim.store.lock();
        let username = store
            .user(&login.uid)
            .map(|u| u.username.clone())
            .unwrap_or_default();
        let writes_as_self = params.get(1).and_then(Value::as_str) == Some(username.as_str());
        if !matches!(kind, "typing" | "user-activity")
            || !writes_as_self
            || !store.can_access(rid, &login.uid)
        {
            return Err(not_allowed());
        }
        drop(store);
        let args = Value::Array(params[1..].to_vec());
        let mut emits = vec![crate::store::Emit::Stream {
            collection: "stream-notify-room",
            event: event.to_string(),
            args: Arc::from(args.to_string()),
        }];
        if kind == "user-activity" {
            let typing = params
                .get(2)
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "user-typing"));
            emits.push(crate::store::Emit::Stream {
                collection: "stream-notify-room",
                event: format!("{rid}/typing"),
                args: Arc::from(json!([username, typing]).to_string()),
            });
        }
        self.sim.hub.emit_except(emits, Some(self.id));
        Ok(None)
    }

    // ---- subscriptions -----------------------------------------------

    async fn handle_sub(&mut self, msg: &Value) -> Flow {
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
        let params = msg
            .get("params")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
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

    fn read_allowed(&self, collection: &str, event: &str) -> bool {
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

    async fn nosub(&mut self, id: &str, error: Option<MeteorError>) -> Flow {
        let mut m = json!({"msg": "nosub", "id": id});
        if let Some(e) = error {
            m["error"] = e.to_ddp();
        }
        let r = self.send(&m).await;
        self.flow(r)
    }

    async fn handle_unsub(&mut self, msg: &Value) -> Flow {
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

/// Reads the `login` method's argument: `{resume}`, or `{user, password}`
/// (optionally wrapped as `{totp:{login, code}}`).
fn parse_login_params(arg: Option<&Value>) -> Result<Credential, MeteorError> {
    let Some(Value::Object(o)) = arg else {
        return Err(MeteorError::new(400, "Match failed"));
    };
    if let Some(totp) = o.get("totp") {
        let code = totp.get("code").and_then(Value::as_str).map(str::to_string);
        let mut cred = parse_login_params(totp.get("login"))?;
        if let Credential::Password { code: c, .. } = &mut cred {
            *c = code;
        }
        return Ok(cred);
    }
    if let Some(r) = o.get("resume") {
        return match r.as_str() {
            Some(t) => Ok(Credential::Resume(t.to_string())),
            None => Err(MeteorError::new(400, "Match failed")),
        };
    }
    let (Some(user), Some(password)) = (o.get("user"), o.get("password")) else {
        return Err(MeteorError::new(
            400,
            "Unrecognized options for login request",
        ));
    };
    let user = if let Some(u) = user.get("username").and_then(Value::as_str) {
        UserRef::Username(u.to_string())
    } else if let Some(e) = user.get("email").and_then(Value::as_str) {
        UserRef::Email(e.to_string())
    } else if let Some(i) = user.get("id").and_then(Value::as_str) {
        UserRef::Id(i.to_string())
    } else if let Some(s) = user.as_str() {
        if s.contains('@') {
            UserRef::Email(s.to_string())
        } else {
            UserRef::Username(s.to_string())
        }
    } else {
        return Err(MeteorError::new(400, "Match failed"));
    };
    let password = match password {
        Value::String(p) => Password::Plain(p.clone()),
        Value::Object(p) if p.get("algorithm").and_then(Value::as_str) == Some("sha-256") => {
            match p.get("digest").and_then(Value::as_str) {
                Some(d) => Password::Digest(d.to_string()),
                None => return Err(MeteorError::new(400, "Match failed")),
            }
        }
        _ => return Err(MeteorError::new(400, "Match failed")),
    };
    Ok(Credential::Password {
        user,
        password,
        code: None,
    })
}
