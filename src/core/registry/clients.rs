//! The registry's side facing the client sockets: connect, disconnect, and
//! an operator's request that a user's clients reconnect.

use super::{next_id, Registry};
use crate::core::engine::{EngineError, Joined, Since};
use crate::core::words::{ClientId, EndReason, Protocol, ToClient};
use actix::prelude::*;
use tokio::sync::oneshot;

/// Why a client could not connect.
#[derive(Debug)]
pub enum Refused {
    /// The user's session is over, or imrelay is stopping.
    Ended(EndReason),
    /// The engine could not look the login up.
    Unavailable(EngineError),
}

/// A client registered: its id, and the user's stream as it joined (what
/// it missed, if it said where it left off). Events published after this
/// go to its mailbox.
pub struct Connected {
    pub id: ClientId,
    pub stream: Joined,
}

/// A client connected: registers it and joins it to the user's stream.
#[derive(Message)]
#[rtype(result = "Result<Connected, Refused>")]
pub struct ClientConnect {
    pub username: String,
    /// Where to push.
    pub client: Recipient<ToClient>,
    /// In which form.
    pub protocol: Protocol,
    /// Where it left off, if it is coming back.
    pub since: Option<Since>,
}

impl Handler<ClientConnect> for Registry {
    type Result = ResponseFuture<Result<Connected, Refused>>;

    fn handle(&mut self, msg: ClientConnect, ctx: &mut Self::Context) -> Self::Result {
        if self.shutting_down {
            return Box::pin(async { Err(Refused::Ended(EndReason::Shutdown)) });
        }
        let (tx, rx) = oneshot::channel();
        let touch = self.engine.touch(&msg.username);
        self.then(ctx, touch, move |act, ctx, login| match login {
            Ok(Some(_)) => {
                let join = act.engine.join(&msg.username, msg.since.as_ref());
                // Registered in the same turn as the join's answer: nothing
                // published in between, so the replay meets the live events.
                act.then(ctx, join, move |act, _, stream| {
                    let connected = stream.map_err(Refused::Unavailable).map(|stream| {
                        let id = next_id();
                        let state = act.users.entry(msg.username).or_default();
                        state.clients.insert(id, (msg.client, msg.protocol));
                        Connected { id, stream }
                    });
                    let _ = tx.send(connected);
                });
            }
            Ok(None) => drop(tx.send(Err(Refused::Ended(EndReason::Expired)))),
            Err(e) => drop(tx.send(Err(Refused::Unavailable(e)))),
        });
        Box::pin(async { rx.await.unwrap_or(Err(Refused::Ended(EndReason::Shutdown))) })
    }
}

/// A client disconnected.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientDisconnect {
    pub username: String,
    /// Which client.
    pub id: ClientId,
}

impl ClientDisconnect {
    /// Tells `registry` that the client `id` of `username` is gone (when it
    /// was registered: the registry may have dropped it already).
    pub(crate) fn send(registry: &Addr<Registry>, username: &str, id: Option<ClientId>) {
        if let Some(id) = id {
            registry.do_send(ClientDisconnect {
                username: username.to_string(),
                id,
            });
        }
    }
}

impl Handler<ClientDisconnect> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ClientDisconnect, ctx: &mut Self::Context) {
        if let Some(state) = self.users.get_mut(&msg.username) {
            state.clients.remove(&msg.id);
            if self.cfg.session.clients_keep_alive {
                // The idle TTL runs from the last client leaving.
                let touch = self.engine.touch(&msg.username);
                self.detach(ctx, "extending a login", touch);
            }
        }
    }
}

/// Tell a user's clients to reconnect (an operator drain); returns how many.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ReconnectClients {
    pub username: String,
}

impl Handler<ReconnectClients> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: ReconnectClients, _: &mut Self::Context) -> usize {
        let Some(state) = self.users.get_mut(&msg.username) else {
            return 0;
        };
        let n = state.clients.len();
        for (_, (c, _)) in state.clients.drain() {
            c.do_send(ToClient::Reconnect);
        }
        n
    }
}
