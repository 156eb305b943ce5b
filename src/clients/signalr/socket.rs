//! One SignalR client connection (JSON hub protocol over a websocket):
//! handshake, then pushes as invocations, completions for the client's
//! invocations (`register` is a no-op), pings, and Close records that tell
//! the client whether to reconnect. With stateful reconnect negotiated it
//! numbers what it sends and acknowledges what it gets, and when its
//! transport drops (not when it is closed) it leaves its state for a new
//! transport to take over.

use super::protocol::{self, ClientMsg, ServerRecord};
use super::resume::{Resend, Resumable};
use super::Connections;
use crate::clients::frames;
use crate::clients::native::MAX_CLIENT_FRAME;
use crate::core::engine::{Replay, Since};
use crate::core::registry::{ClientConnect, ClientDisconnect, Connected, Refused, Registry};
use crate::core::words::{ClientId, Protocol, ToClient};
use crate::fragments::{Fragment, Reassembler};
use actix::prelude::*;
use actix_web_actors::ws;
use std::time::{Duration, Instant};

/// Time allowed for the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// A SignalR connection.
pub struct SignalRSocket {
    username: String,
    registry: Addr<Registry>,
    queue_limit: usize,
    id: Option<ClientId>,
    handshaken: bool,
    buf: String,
    reasm: Reassembler,
    heard: Instant,
    sent: Instant,
    /// Ping after this much silence from us (`client.heartbeat_interval`;
    /// ASP.NET's 15 s default is what the official client's timers assume).
    keep_alive: Duration,
    /// Drop a client silent for this long (`client.heartbeat_timeout`).
    timeout: Duration,
    /// A stateful connection's place in the hub.
    link: Option<Link>,
    /// A stateful connection's sequence state (once joined, or taken over).
    state: Option<Resumable>,
    /// Taken over from a dropped transport: no handshake, a replay first.
    resumed: bool,
    /// Whether a new transport may take over when this one goes (not after
    /// a close or an end).
    resumable: bool,
    /// A new transport took the connection over.
    handed_over: bool,
}

/// Where a stateful connection leaves its state when its transport drops.
pub(crate) struct Link {
    pub hub: actix_web::web::Data<Connections>,
    /// The negotiated connection token.
    pub token: String,
    /// How long a new transport may take over (`client.signalr_reconnect_window`).
    pub window: Duration,
}

/// A new transport is taking over this connection: its state, and it goes.
#[derive(Message)]
#[rtype(result = "Option<Resumable>")]
pub(crate) struct Handover;

impl SignalRSocket {
    /// A connection for an authenticated user; stateful with a `link`,
    /// resuming with `taken` (the state a dropped transport left).
    pub(crate) fn new(
        username: String,
        registry: Addr<Registry>,
        queue_limit: usize,
        keep_alive: Duration,
        timeout: Duration,
        link: Option<Link>,
        taken: Option<Resumable>,
    ) -> Self {
        let now = Instant::now();
        let resumed = taken.is_some();
        SignalRSocket {
            link,
            state: taken,
            resumed,
            resumable: true,
            handed_over: false,
            username,
            registry,
            queue_limit,
            id: None,
            handshaken: resumed,
            buf: String::new(),
            reasm: Reassembler::default(),
            heard: now,
            sent: now,
            keep_alive,
            timeout,
        }
    }

    fn send(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        text: impl Into<bytestring::ByteString>,
    ) {
        self.sent = Instant::now();
        ctx.text(text);
    }

    /// Sends a sequenced hub record (a completion).
    fn send_record(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: bytestring::ByteString) {
        if let Some(state) = &mut self.state {
            state.sent_record(&text);
        }
        self.send(ctx, text);
    }

    /// Pushes the event `seq`.
    fn push(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        seq: u64,
        frame: bytestring::ByteString,
    ) {
        if let Some(state) = &mut self.state {
            state.sent_event(seq);
        }
        self.send(ctx, frame);
    }

    /// Joins the user's stream: as a new connection, or, taking over, after
    /// the last event this connection pushed (what is un-acked included).
    fn join(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let since = self.state.as_ref().filter(|_| self.resumed).map(|s| Since {
            epoch: s.epoch.to_string(),
            seq: s.replay_from() - 1,
        });
        let from = since.as_ref().map_or(0, |s| s.seq);
        let connect = ClientConnect {
            username: self.username.clone(),
            client: ctx.address().recipient(),
            protocol: Protocol::SignalR,
            since,
        };
        self.registry
            .send(connect)
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(Ok(Connected { id, stream })) => {
                    act.id = Some(id);
                    match stream.replay {
                        None => {
                            if act.link.is_some() {
                                act.state = Some(Resumable::new(stream.epoch, stream.last));
                            }
                        }
                        Some(replay @ Replay::Recovered(_)) => act.resume(ctx, &replay, from),
                        Some(Replay::Lost) => act.finish(
                            ctx,
                            "Stateful reconnect failed: what was pushed while the connection was away is no longer held.",
                            true,
                            ws::CloseCode::Normal,
                        ),
                    }
                }
                Ok(Err(Refused::Ended(reason))) => act.finish(
                    ctx,
                    &format!("Session ended: {}", reason.as_str()),
                    false,
                    ws::CloseCode::Normal,
                ),
                Ok(Err(Refused::Unavailable(e))) => {
                    act.finish(ctx, &e.to_string(), true, ws::CloseCode::Error)
                }
                Err(_) => act.finish(ctx, "registry unavailable", true, ws::CloseCode::Error),
            })
            .wait(ctx);
    }

    /// On a new transport: the Sequence, what the client had not
    /// acknowledged, in order and with its ids, then what was published
    /// while no transport was there.
    fn resume(&mut self, ctx: &mut ws::WebsocketContext<Self>, replay: &Replay, from: u64) {
        let Some(state) = &mut self.state else {
            return;
        };
        let (first, again) = state.resume();
        self.send(ctx, ServerRecord::Sequence { sequence_id: first }.text());
        let mut events = replay.events(from).peekable();
        for r in again {
            match r {
                Resend::Event(seq) => {
                    // The history holds it: the replay starts at the oldest.
                    while events.next_if(|(s, _)| *s < seq).is_some() {}
                    if let Some((s, e)) = events.next_if(|(s, _)| *s == seq) {
                        self.push(ctx, s, protocol::invocation_frame(s, e));
                    }
                }
                Resend::Record(text) => self.send_record(ctx, text),
            }
        }
        let delivered = self.state.as_ref().map_or(0, |s| s.delivered);
        for (s, e) in events.filter(|(s, _)| *s > delivered) {
            self.push(ctx, s, protocol::invocation_frame(s, e));
        }
        log::info!(
            "user={} signalr client={:?} resumed on a new transport",
            self.username,
            self.id
        );
    }

    /// A Close record, then the websocket close.
    fn finish(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        error: &str,
        reconnect: bool,
        code: ws::CloseCode,
    ) {
        self.id = None;
        self.resumable = false;
        self.send(ctx, protocol::close(error, reconnect));
        ctx.close(Some(ws::CloseReason {
            code,
            description: Some(error.to_string()),
        }));
        ctx.stop();
    }

    fn handshake(&mut self, record: &str, ctx: &mut ws::WebsocketContext<Self>) {
        if let Err(e) = protocol::check_handshake(record, self.link.is_some()) {
            self.send(ctx, protocol::handshake_error(&e));
            ctx.close(Some(ws::CloseCode::Policy.into()));
            ctx.stop();
            return;
        }
        self.handshaken = true;
        self.send(ctx, protocol::HANDSHAKE_OK);
        self.join(ctx);
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        self.buf.push_str(text);
        if self.buf.len() > MAX_CLIENT_FRAME {
            return self.finish(ctx, "message too large", false, ws::CloseCode::Size);
        }
        for record in protocol::take_records(&mut self.buf) {
            if !self.handshaken {
                self.handshake(&record, ctx);
                continue;
            }
            let msg = protocol::parse(&record);
            if let (Ok(m), Some(state)) = (&msg, &mut self.state) {
                // A record the client replayed after a reconnect, done already.
                if m.sequenced() && !state.received() {
                    continue;
                }
            }
            match msg {
                Ok(ClientMsg::Invoke {
                    id: Some(id),
                    target,
                    stream,
                }) => {
                    let error = if stream {
                        Some("Streaming is not supported by this hub.".to_string())
                    } else if target.eq_ignore_ascii_case("register") {
                        // ABP's front end registers once after connecting; the user is
                        // already attached from the token.
                        None
                    } else {
                        Some(format!("Unknown hub method '{target}'"))
                    };
                    self.send_record(ctx, protocol::completion(&id, error.as_deref()));
                }
                Ok(ClientMsg::Invoke { id: None, .. } | ClientMsg::Ping | ClientMsg::Other(_)) => {}
                Ok(ClientMsg::Ack(id)) => {
                    if let Some(state) = &mut self.state {
                        state.acked(id);
                    }
                }
                Ok(ClientMsg::Sequence(id)) => {
                    if let Some(state) = &mut self.state {
                        state.client_sequence(id);
                    }
                }
                Ok(ClientMsg::Close) => {
                    self.resumable = false;
                    ctx.close(Some(ws::CloseCode::Normal.into()));
                    ctx.stop();
                }
                Err(e) => {
                    return self.finish(
                        ctx,
                        &format!("invalid message: {e}"),
                        false,
                        ws::CloseCode::Invalid,
                    )
                }
            }
        }
        if let Some(id) = self.state.as_mut().and_then(Resumable::ack_due) {
            self.send(ctx, ServerRecord::Ack { sequence_id: id }.text());
        }
    }
}

impl Actor for SignalRSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.queue_limit);
        if let Some(link) = &self.link {
            link.hub.attached(&link.token, ctx.address());
        }
        if self.resumed {
            // The client sends its Sequence, not a handshake, on a new transport.
            self.join(ctx);
        }
        ctx.run_later(HANDSHAKE_TIMEOUT, |act, ctx| {
            if !act.handshaken {
                ctx.close(Some(ws::CloseCode::Policy.into()));
                ctx.stop();
            }
        });
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            if act.heard.elapsed() > act.timeout {
                log::info!(
                    "user={} signalr client={:?} dropped: silent for {:?}",
                    act.username,
                    act.id,
                    act.timeout
                );
                // stop() runs stopping(), which tells the registry.
                ctx.close(Some(ws::CloseCode::Away.into()));
                ctx.stop();
            } else if act.handshaken && act.sent.elapsed() >= act.keep_alive {
                act.send(ctx, protocol::ServerRecord::Ping.text());
            }
        });
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        ClientDisconnect::send(&self.registry, &self.username, self.id.take());
        if let Some(link) = &self.link {
            match self.state.take() {
                // The new transport holds the connection now.
                _ if self.handed_over => {}
                Some(state) if self.resumable && !state.overflowed => {
                    link.hub.detached(&link.token, state, link.window);
                }
                _ => link.hub.ended(&link.token),
            }
        }
        Running::Stop
    }
}

impl Handler<ToClient> for SignalRSocket {
    type Result = ();

    fn handle(&mut self, msg: ToClient, ctx: &mut Self::Context) {
        match msg {
            ToClient::Push { first, frames } => {
                for (seq, f) in (first..).zip(frames) {
                    self.push(ctx, seq, f);
                }
            }
            // The session is over for good: no reconnect.
            ToClient::End(reason) => self.finish(
                ctx,
                &format!("Session ended: {}", reason.as_str()),
                false,
                ws::CloseCode::Normal,
            ),
            ToClient::SlowConsumer => {
                self.finish(ctx, "slow consumer", true, ws::CloseCode::Other(4008))
            }
            ToClient::GoingAway => {
                self.finish(ctx, "Server is shutting down.", true, ws::CloseCode::Normal)
            }
            ToClient::Reconnect => self.finish(
                ctx,
                "Server asked the client to reconnect.",
                true,
                ws::CloseCode::Normal,
            ),
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for SignalRSocket {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.heard = Instant::now();
        match msg {
            Ok(ws::Message::Text(t)) => self.on_text(&t, ctx),
            Ok(ws::Message::Continuation(item)) => {
                let r = self.reasm.item(item, MAX_CLIENT_FRAME);
                match r {
                    Fragment::Pending => {}
                    Fragment::Complete(bytes) => match String::from_utf8(bytes) {
                        Ok(t) => self.on_text(&t, ctx),
                        Err(_) => self.finish(ctx, "invalid UTF-8", false, ws::CloseCode::Invalid),
                    },
                    Fragment::Violation(v) => self.finish(ctx, &v, false, ws::CloseCode::Policy),
                }
            }
            Ok(ws::Message::Binary(_)) => self.finish(
                ctx,
                "the JSON hub protocol uses text frames",
                false,
                ws::CloseCode::Unsupported,
            ),
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Pong(_) | ws::Message::Nop) => {}
            Ok(ws::Message::Close(reason)) => {
                // A close is the client stopping, not a transport lost.
                self.resumable = false;
                ctx.close(reason);
                ctx.stop();
            }
            // A reset is the transport lost, not the client misbehaving:
            // a stateful connection stays resumable.
            Err(ws::ProtocolError::Io(e)) => {
                log::info!(
                    "user={} signalr client={:?} transport lost: {e}",
                    self.username,
                    self.id
                );
                ctx.stop();
            }
            Err(e) => {
                log::info!(
                    "user={} signalr client={:?} protocol error: {e}",
                    self.username,
                    self.id
                );
                let code = frames::close_code(&e);
                self.finish(ctx, &frames::close_reason(&e), false, code);
            }
        }
    }
}

impl Handler<Handover> for SignalRSocket {
    type Result = Option<Resumable>;

    fn handle(&mut self, _: Handover, ctx: &mut Self::Context) -> Option<Resumable> {
        let state = self.state.take().filter(|s| !s.overflowed)?;
        self.handed_over = true;
        ctx.stop();
        Some(state)
    }
}
