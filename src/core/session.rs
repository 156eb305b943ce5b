//! The session actor: one per logged-in user. It owns the user's DDP
//! connection to Rocket.Chat (connect → login → subscriptions → events),
//! answers and sends pings, reconnects with jittered backoff and resumes,
//! and stops itself when Rocket.Chat revokes the token or the registry
//! tells it to (expiry, logout, deletion, a newer login, shutdown).

use super::report::{Deliver, Established, SessionGone, SessionReport, SubscriptionsReady};
use super::words::EndReason;
use crate::config::Config;
use crate::rocketchat::connection::{self as ddp_conn, FromConn};
use crate::rocketchat::ddp::{self, ServerMsg};
use crate::rocketchat::{map_event, Credentials, Event, Mapped, RcError};
use actix::prelude::*;
use rand::Rng;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// How the session logs in.
#[derive(Clone)]
pub enum SessionAuth {
    /// DDP `login` with the password digest (`login_method = "ddp"`).
    Password {
        /// Lowercase hex SHA-256 of the password.
        digest: String,
    },
    /// DDP `login {resume}` with a token obtained elsewhere.
    Resume(Credentials),
}

/// Events a reconnected session keeps while it subscribes again, at most.
const HOLD_MAX: usize = 4096;

/// Tells a session to stop (without reporting back: the registry already knows).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop(pub EndReason);

/// The session actor.
pub struct UserSession {
    id: u64,
    /// Shared with every [`Deliver`] (a refcount, not a copy).
    username: Arc<str>,
    /// Events of the frames read so far, delivered together at the end of
    /// the read (or before any other report to the registry, to keep order).
    events: Vec<Event>,
    auth: SessionAuth,
    cfg: Arc<Config>,
    registry: Recipient<SessionReport>,
    /// Outgoing frames to the current connection task; dropping it closes the socket.
    tx: Option<local_channel::mpsc::Sender<String>>,
    /// Which connection is current; older connections' reports are ignored.
    conn: u64,
    next_id: u64,
    login_id: Option<String>,
    established: bool,
    uid: Option<String>,
    attempt: u32,
    last_heard: Instant,
    /// When the lost connection last heard from Rocket.Chat, until the next
    /// one's subscriptions are ready (a backfill starts from it).
    lost_at: Option<std::time::SystemTime>,
    pending_subs: usize,
    stopping: bool,
}

impl UserSession {
    /// A session for `username`; start it with `.start()`.
    pub fn new(
        id: u64,
        username: String,
        auth: SessionAuth,
        cfg: Arc<Config>,
        registry: Recipient<SessionReport>,
    ) -> Self {
        UserSession {
            id,
            username: username.into(),
            events: vec![],
            auth,
            cfg,
            registry,
            tx: None,
            conn: 0,
            next_id: 0,
            login_id: None,
            established: false,
            uid: None,
            attempt: 0,
            last_heard: Instant::now(),
            lost_at: None,
            pending_subs: 0,
            stopping: false,
        }
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    fn send(&self, frame: String) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(frame);
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.conn += 1;
        self.login_id = None;
        self.pending_subs = 0;
        self.last_heard = Instant::now();
        // A channel local to this thread: the task runs on this actor's arbiter.
        let (tx, rx) = local_channel::mpsc::channel();
        self.tx = Some(tx);
        let url = self.cfg.rocketchat.ws_url.clone();
        // Detached from the actor on purpose: when the actor stops, the task
        // still writes what was queued (a logout) and a Close frame.
        actix_rt::spawn(ddp_conn::run(
            url,
            self.cfg.rocketchat.max_frame_bytes,
            self.conn,
            ctx.address().recipient(),
            rx,
        ));
    }

    /// The connection is gone: what Rocket.Chat emits from now until the
    /// next one is subscribed is missing.
    fn lost(&mut self) {
        self.tx = None;
        if self.established && self.lost_at.is_none() {
            self.lost_at = Some(std::time::SystemTime::now() - self.last_heard.elapsed());
        }
    }

    fn reconnect_later(&mut self, ctx: &mut Context<Self>) {
        self.lost();
        let s = &self.cfg.session;
        let exp = s.reconnect_min.saturating_mul(1u32 << self.attempt.min(16));
        let base = exp.min(s.reconnect_max);
        // Full jitter between half and all of the delay: a Rocket.Chat
        // restart must not bring every session back in the same instant.
        let delay = base.mul_f64(rand::rng().random_range(0.5..=1.0));
        self.attempt = self.attempt.saturating_add(1);
        log::info!(
            "user={} session={} reconnecting in {delay:?} (attempt {})",
            self.username,
            self.id,
            self.attempt
        );
        ctx.run_later(delay, |act, ctx| {
            if !act.stopping {
                act.connect(ctx);
            }
        });
    }

    fn gone(&mut self, ctx: &mut Context<Self>, reason: EndReason, error: Option<RcError>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.deliver();
        self.registry.do_send(SessionReport::Gone(SessionGone {
            username: self.username.to_string(),
            session: self.id,
            reason,
            error,
        }));
        ctx.stop();
    }

    /// Hands the events read so far to the registry, in one message: one
    /// mailbox round per read instead of one per event.
    fn deliver(&mut self) {
        if self.events.is_empty() {
            return;
        }
        self.registry.do_send(SessionReport::Deliver(Deliver {
            username: Arc::clone(&self.username),
            session: self.id,
            events: std::mem::take(&mut self.events),
        }));
    }

    fn login(&mut self) {
        let id = self.id();
        let frame = match &self.auth {
            SessionAuth::Password { digest } => ddp::password_login(&id, &self.username, digest),
            SessionAuth::Resume(c) => ddp::resume_login(&id, &c.token),
        };
        self.send(frame);
        self.login_id = Some(id);
    }

    fn subscribe(&mut self, uid: &str) {
        self.pending_subs = 0;
        for (stream, event) in crate::rocketchat::subscriptions(uid) {
            let id = self.id();
            self.send(ddp::sub_stream(&id, stream, &event));
            self.pending_subs += 1;
        }
    }

    fn on_login_result(
        &mut self,
        result: Option<Value>,
        error: Option<Value>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(e) = error {
            let (code, reason) = ddp::error_parts(&e);
            let err = ddp::login_error(&e);
            if matches!(self.auth, SessionAuth::Resume(_)) && code == "403" {
                log::info!(
                    "user={} session={} Rocket.Chat revoked the token ({reason})",
                    self.username,
                    self.id
                );
                let error = (!self.established).then_some(RcError::Unauthorized);
                return self.gone(ctx, EndReason::Revoked, error);
            }
            log::warn!(
                "user={} session={} Rocket.Chat login failed: {err}",
                self.username,
                self.id
            );
            if let RcError::RateLimited { retry_after } = err {
                if self.established {
                    self.lost();
                    ctx.run_later(retry_after, |act, ctx| act.connect(ctx));
                    return;
                }
            }
            return self.gone(ctx, EndReason::Failed, Some(err));
        }
        let r = result.unwrap_or(Value::Null);
        let (Some(uid), Some(token)) = (
            r.get("id").and_then(Value::as_str),
            r.get("token").and_then(Value::as_str),
        ) else {
            return self.gone(
                ctx,
                EndReason::Failed,
                Some(RcError::Server("login result without id/token".into())),
            );
        };
        let creds = Credentials {
            user_id: uid.to_string(),
            token: token.to_string(),
        };
        self.uid = Some(uid.to_string());
        self.attempt = 0;
        self.subscribe(uid);
        if !self.established {
            self.established = true;
            // Later reconnects resume with the token; the password is not kept.
            self.auth = SessionAuth::Resume(creds.clone());
            self.deliver();
            self.registry
                .do_send(SessionReport::Established(Established {
                    username: self.username.to_string(),
                    session: self.id,
                    creds,
                }));
        }
    }

    fn on_text(&mut self, text: &[u8], ctx: &mut Context<Self>) {
        let msg = match ddp::parse(text) {
            Ok(m) => m,
            Err(e) => {
                log::warn!(
                    "user={} session={} Rocket.Chat sent a frame that is not JSON ({e}); ignored",
                    self.username,
                    self.id
                );
                return;
            }
        };
        match msg {
            ServerMsg::Connected => self.login(),
            ServerMsg::Failed(v) => {
                log::error!(
                    "user={} Rocket.Chat speaks no DDP version we do (it offered {v})",
                    self.username
                );
                self.gone(
                    ctx,
                    EndReason::Failed,
                    Some(RcError::Server(format!("DDP version mismatch ({v})"))),
                );
            }
            ServerMsg::Ping(id) => self.send(ddp::pong(id)),
            ServerMsg::Result { id, result, error } if Some(&id) == self.login_id.as_ref() => {
                self.on_login_result(result, error, ctx)
            }
            ServerMsg::Result { .. } => {}
            ServerMsg::Ready(subs) => {
                let before = self.pending_subs;
                self.pending_subs = self.pending_subs.saturating_sub(subs.len());
                if before > 0 && self.pending_subs == 0 {
                    log::debug!(
                        "user={} session={} subscriptions ready",
                        self.username,
                        self.id
                    );
                    let lost_at = self.lost_at.take();
                    if lost_at.is_none() {
                        self.deliver();
                    }
                    self.registry
                        .do_send(SessionReport::SubscriptionsReady(SubscriptionsReady {
                            username: self.username.to_string(),
                            session: self.id,
                            lost_at,
                        }));
                    // After the report: the registry holds these for the backfill.
                    self.deliver();
                }
            }
            ServerMsg::NoSub { id, error: Some(e) } => {
                let (code, reason) = ddp::error_parts(&e);
                log::warn!(
                    "user={} session={} Rocket.Chat refused subscription {id}: {code} {reason}",
                    self.username,
                    self.id
                );
            }
            ServerMsg::NoSub { .. } => {}
            ServerMsg::Changed {
                collection,
                event_name,
                args,
            } => match map_event(&collection, &event_name, &args) {
                Mapped::Event(event) => self.events.push(event),
                Mapped::Revoked => {
                    log::info!(
                        "user={} session={} Rocket.Chat forced a logout",
                        self.username,
                        self.id
                    );
                    self.gone(ctx, EndReason::Revoked, None);
                }
                Mapped::Ignore => {}
            },
            ServerMsg::Error(reason) => {
                log::warn!(
                    "user={} session={} Rocket.Chat reported a DDP error: {reason}",
                    self.username,
                    self.id
                )
            }
            ServerMsg::Pong | ServerMsg::Other => {}
        }
    }

    fn on_closed(&mut self, error: String, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        if !self.established {
            log::warn!(
                "user={} session={} could not log in: {error}",
                self.username,
                self.id
            );
            return self.gone(ctx, EndReason::Failed, Some(RcError::Unreachable(error)));
        }
        log::info!(
            "user={} session={} lost the DDP connection: {error}",
            self.username,
            self.id
        );
        self.reconnect_later(ctx);
    }
}

impl Actor for UserSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.connect(ctx);
        let timeout = self.cfg.session.login_timeout;
        ctx.run_later(timeout, move |act, ctx| {
            if !act.established {
                act.gone(
                    ctx,
                    EndReason::Failed,
                    Some(RcError::Unreachable(format!(
                        "no login answer within {timeout:?}"
                    ))),
                );
            }
        });
        let every = self.cfg.session.ping_interval;
        super::timers::run_interval_spread(ctx, every, move |act: &mut Self, ctx| {
            if act.tx.is_none() {
                return;
            }
            let silent = act.last_heard.elapsed();
            if silent > every * 2 {
                log::info!(
                    "user={} session={} Rocket.Chat silent for {silent:?}; reconnecting",
                    act.username,
                    act.id
                );
                act.reconnect_later(ctx);
            } else if silent >= every {
                act.send(ddp::ping());
            }
        });
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        // Dropping the sender makes the connection task close the socket.
        self.tx = None;
        Running::Stop
    }
}

impl Handler<FromConn> for UserSession {
    type Result = ();

    fn handle(&mut self, msg: FromConn, ctx: &mut Self::Context) {
        match msg {
            FromConn::Texts { conn, texts } if conn == self.conn => {
                self.last_heard = Instant::now();
                for text in &texts {
                    // A frame may end the session or replace the connection.
                    if self.stopping || conn != self.conn {
                        break;
                    }
                    self.on_text(text, ctx);
                }
                // After a loss, what the new connection brings waits for the
                // backfill, to follow what was missed: here until the
                // subscriptions are ready, then in the registry.
                if self.lost_at.is_none() || self.events.len() >= HOLD_MAX {
                    self.deliver();
                }
            }
            FromConn::Closed { conn, error } if conn == self.conn => self.on_closed(error, ctx),
            _ => {}
        }
    }
}

impl Handler<Stop> for UserSession {
    type Result = ();

    fn handle(&mut self, msg: Stop, ctx: &mut Self::Context) {
        log::debug!(
            "user={} session={} stopping: {}",
            self.username,
            self.id,
            msg.0.as_str()
        );
        if msg.0 == EndReason::Replaced && self.established {
            // Its token is no longer used: free it (Rocket.Chat keeps at most 50 per user).
            let id = self.id();
            self.send(ddp::method(&id, "logout", json!([])));
        }
        self.stopping = true;
        ctx.stop();
    }
}
