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

mod methods;
mod subscriptions;

use subscriptions::{SubKind, SubRec};

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
}

/// A `method` or `sub` message's `params` (none: empty).
fn params(msg: &Value) -> Vec<Value> {
    msg.get("params")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}
