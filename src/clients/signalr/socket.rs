//! One SignalR client connection (JSON hub protocol over a websocket):
//! handshake, then pushes as invocations, completions for the client's
//! invocations (`register` is a no-op), pings, and Close records that tell
//! the client whether to reconnect.

use super::protocol::{self, ClientMsg};
use crate::clients::frames;
use crate::clients::native::MAX_CLIENT_FRAME;
use crate::core::registry::{ClientConnect, ClientDisconnect, Refused, Registry};
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
}

impl SignalRSocket {
    /// A connection for an authenticated user.
    pub fn new(
        username: String,
        registry: Addr<Registry>,
        queue_limit: usize,
        keep_alive: Duration,
        timeout: Duration,
    ) -> Self {
        let now = Instant::now();
        SignalRSocket {
            username,
            registry,
            queue_limit,
            id: None,
            handshaken: false,
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

    /// A Close record, then the websocket close.
    fn finish(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        error: &str,
        reconnect: bool,
        code: ws::CloseCode,
    ) {
        self.id = None;
        self.send(ctx, protocol::close(error, reconnect));
        ctx.close(Some(ws::CloseReason {
            code,
            description: Some(error.to_string()),
        }));
        ctx.stop();
    }

    fn handshake(&mut self, record: &str, ctx: &mut ws::WebsocketContext<Self>) {
        if let Err(e) = protocol::check_handshake(record) {
            self.send(ctx, protocol::handshake_error(&e));
            ctx.close(Some(ws::CloseCode::Policy.into()));
            ctx.stop();
            return;
        }
        self.handshaken = true;
        self.send(ctx, protocol::HANDSHAKE_OK);
        let connect = ClientConnect {
            username: self.username.clone(),
            client: ctx.address().recipient(),
            protocol: Protocol::SignalR,
            since: None,
        };
        self.registry
            .send(connect)
            .into_actor(self)
            .map(|res, act, ctx| match res {
                Ok(Ok(connected)) => act.id = Some(connected.id),
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
            match protocol::parse(&record) {
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
                    self.send(ctx, protocol::completion(&id, error.as_deref()));
                }
                Ok(ClientMsg::Invoke { id: None, .. } | ClientMsg::Ping | ClientMsg::Other) => {}
                Ok(ClientMsg::Close) => {
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
    }
}

impl Actor for SignalRSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.queue_limit);
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
        Running::Stop
    }
}

impl Handler<ToClient> for SignalRSocket {
    type Result = ();

    fn handle(&mut self, msg: ToClient, ctx: &mut Self::Context) {
        match msg {
            ToClient::Push(frames) => frames.into_iter().for_each(|f| self.send(ctx, f)),
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
                ctx.close(reason);
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
