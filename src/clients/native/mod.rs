//! The native client protocol (`/ws`, docs/DESIGN.md §4): its websocket actor:
//! registers with the registry, writes events, answers JSON pings, keeps a
//! heartbeat, and closes with a reason: the session ended, 4008 when it
//! cannot keep up, 1001 on shutdown.

pub(crate) mod protocol;

use super::frames;
use crate::api::errors::ApiError;
use crate::core::engine::{Replay, Since};
use crate::core::registry::{ClientConnect, ClientDisconnect, Connected, Refused, Registry};
use crate::core::words::{ClientId, EndReason, Protocol, ToClient};
use crate::fragments::{Fragment, Reassembler};
use actix::prelude::*;
use actix_web::{http::StatusCode, web};
use actix_web_actors::ws;
use bytestring::ByteString;
pub(crate) use protocol::event_frame;
use protocol::{reply, ServerFrame};
use std::time::{Duration, Instant};

/// Largest message a client may send (they only send pings).
pub const MAX_CLIENT_FRAME: usize = 64 << 10;

/// One client websocket.
pub struct ClientSocket {
    username: String,
    registry: Addr<Registry>,
    id: Option<ClientId>,
    heard: Instant,
    heartbeat: Duration,
    timeout: Duration,
    queue_limit: usize,
    reasm: Reassembler,
    /// Where the client left off, until it has joined.
    since: Option<Since>,
}

impl ClientSocket {
    /// A socket for an authenticated user, resuming after `since` if given.
    pub(crate) fn new(
        username: String,
        registry: Addr<Registry>,
        heartbeat: Duration,
        timeout: Duration,
        queue_limit: usize,
        since: Option<Since>,
    ) -> Self {
        ClientSocket {
            username,
            registry,
            id: None,
            heard: Instant::now(),
            heartbeat,
            timeout,
            queue_limit,
            reasm: Reassembler::default(),
            since,
        }
    }

    fn close(ctx: &mut ws::WebsocketContext<Self>, code: ws::CloseCode, reason: &str) {
        ctx.close(Some(ws::CloseReason {
            code,
            description: Some(reason.to_string()),
        }));
        ctx.stop();
    }

    fn on_text(&mut self, text: &[u8], ctx: &mut ws::WebsocketContext<Self>) {
        ctx.text(reply(text));
    }
}

/// `?since=S&epoch=E` on `/ws`: where a returning client left off.
#[derive(serde::Deserialize)]
struct ResumeQuery {
    since: Option<u64>,
    epoch: Option<String>,
}

/// The longest epoch a client may send back (imrelay's are 12 characters).
const MAX_EPOCH: usize = 64;

/// Where the client says it left off, if it says so; a 400 that tells how
/// to say it otherwise.
pub(crate) fn resume_point(query: &str) -> Result<Option<Since>, ApiError> {
    let bad = |why: &str| ApiError::new(StatusCode::BAD_REQUEST, "bad_resume", why);
    let q = web::Query::<ResumeQuery>::from_query(query)
        .map_err(|_| bad("since must be the seq of the last event processed (a number)"))?
        .into_inner();
    match (q.since, q.epoch) {
        (None, None) => Ok(None),
        (Some(seq), Some(epoch)) if !epoch.is_empty() && epoch.len() <= MAX_EPOCH => {
            Ok(Some(Since { epoch, seq }))
        }
        (Some(_), _) => Err(bad("since needs the epoch of the welcome it counts from")),
        (None, Some(_)) => Err(bad(
            "epoch goes with since, the seq of the last event processed",
        )),
    }
}

fn ended_frame(reason: EndReason) -> ByteString {
    ServerFrame::SessionEnded {
        reason: reason.as_str(),
    }
    .text()
}

impl Actor for ClientSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The registry's try_send fails once this many messages wait: the
        // client is then closed as a slow consumer instead of growing memory.
        ctx.set_mailbox_capacity(self.queue_limit);
        let since = self.since.take();
        let from = since.as_ref().map_or(0, |s| s.seq);
        let connect = ClientConnect {
            username: self.username.clone(),
            client: ctx.address().recipient(),
            protocol: Protocol::Native,
            since,
        };
        self.registry
            .send(connect)
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(Ok(Connected { id, stream })) => {
                    act.id = Some(id);
                    let recovered = stream
                        .replay
                        .as_ref()
                        .map(|r| matches!(r, Replay::Recovered(_)));
                    ctx.text(
                        ServerFrame::Welcome {
                            username: &act.username,
                            seq: stream.last,
                            epoch: &stream.epoch,
                            recovered,
                        }
                        .text(),
                    );
                    // Before any live event: this actor reads its mailbox
                    // only once this future is done.
                    if let Some(replay) = &stream.replay {
                        for (seq, event) in replay.events(from) {
                            ctx.text(event_frame(seq, event));
                        }
                    }
                }
                Ok(Err(Refused::Ended(reason))) => {
                    ctx.text(ended_frame(reason));
                    Self::close(ctx, ws::CloseCode::Normal, reason.as_str());
                }
                Ok(Err(Refused::Unavailable(e))) => {
                    log::warn!("user={} client refused: {e}", act.username);
                    Self::close(ctx, ws::CloseCode::Error, "session store unavailable");
                }
                Err(_) => Self::close(ctx, ws::CloseCode::Error, "registry unavailable"),
            })
            .wait(ctx);
        crate::core::timers::run_interval_spread(ctx, self.heartbeat, |act: &mut Self, ctx| {
            if act.heard.elapsed() > act.timeout {
                log::info!(
                    "user={} client={:?} dropped: silent for {:?}",
                    act.username,
                    act.id,
                    act.timeout
                );
                Self::close(ctx, ws::CloseCode::Away, "heartbeat timeout");
                return;
            }
            ctx.ping(b"");
        });
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        ClientDisconnect::send(&self.registry, &self.username, self.id.take());
        Running::Stop
    }
}

impl Handler<ToClient> for ClientSocket {
    type Result = ();

    fn handle(&mut self, msg: ToClient, ctx: &mut Self::Context) {
        match msg {
            ToClient::Push { frames, .. } => frames.into_iter().for_each(|f| ctx.text(f)),
            ToClient::End(reason) => {
                // The registry already forgot this client.
                self.id = None;
                ctx.text(ended_frame(reason));
                Self::close(ctx, ws::CloseCode::Normal, reason.as_str());
            }
            ToClient::SlowConsumer => {
                self.id = None;
                Self::close(ctx, ws::CloseCode::Other(4008), "slow consumer");
            }
            ToClient::GoingAway => {
                self.id = None;
                Self::close(ctx, ws::CloseCode::Away, "server shutting down");
            }
            ToClient::Reconnect => {
                self.id = None;
                Self::close(ctx, ws::CloseCode::Restart, "reconnect");
            }
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for ClientSocket {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.heard = Instant::now();
        match msg {
            Ok(ws::Message::Text(t)) => self.on_text(t.as_bytes(), ctx),
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Pong(_)) => {}
            Ok(ws::Message::Binary(_)) => ctx.text(
                ServerFrame::Error {
                    message: "binary frames are not supported",
                }
                .text(),
            ),
            Ok(ws::Message::Continuation(item)) => {
                let r = self.reasm.item(item, MAX_CLIENT_FRAME);
                match r {
                    Fragment::Pending => {}
                    Fragment::Complete(t) => self.on_text(&t, ctx),
                    Fragment::Violation(v) => Self::close(ctx, ws::CloseCode::Policy, &v),
                }
            }
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Nop) => {}
            Err(e) => {
                log::info!(
                    "user={} client={:?} protocol error: {e}",
                    self.username,
                    self.id
                );
                let (code, reason) = (frames::close_code(&e), frames::close_reason(&e));
                Self::close(ctx, code, &reason);
            }
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::protocol::reply;
    use crate::testing::json_ish;
    use proptest::prelude::*;
    use serde_json::Value;

    proptest! {
        /// Whatever a client sends, the answer is one JSON frame: a pong
        /// for a ping, an error for anything else.
        #[test]
        fn every_client_message_gets_a_json_answer(bytes in proptest::collection::vec(any::<u8>(), 0..300), text in json_ish()) {
            for input in [bytes.as_slice(), text.as_bytes()] {
                let v: Value = serde_json::from_str(&reply(input)).expect("JSON");
                let ping = serde_json::from_slice::<Value>(input).ok().and_then(|v| v.get("type").cloned()) == Some("ping".into());
                prop_assert_eq!(v["type"].as_str(), Some(if ping { "pong" } else { "error" }));
            }
        }
    }
}
