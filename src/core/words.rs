//! The words the relay's actors and adapters share: why a session ended, a
//! client's id and protocol, and what the registry tells a client. They sit
//! here, below the actors, so that imports point one way.

use actix::Message;
use bytestring::ByteString;

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Idle TTL passed.
    Expired,
    /// The backend logged the user out.
    LoggedOut,
    /// The backend deleted the user.
    Deleted,
    /// Rocket.Chat removed the token (resume 403, `force_logout`).
    Revoked,
    /// The session could not log in, or not speak to Rocket.Chat: a refused
    /// login, a DDP version Rocket.Chat does not offer, a login that did not
    /// finish within `session.login_timeout`.
    Failed,
    /// A newer login replaced this session (clients stay).
    Replaced,
    /// imrelay is stopping.
    Shutdown,
}

impl EndReason {
    /// The `reason` of the native `sessionEnded` frame.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::LoggedOut => "logged_out",
            EndReason::Deleted => "deleted",
            EndReason::Revoked => "revoked",
            EndReason::Failed => "failed",
            EndReason::Replaced => "replaced",
            EndReason::Shutdown => "shutdown",
        }
    }

    /// Whether the user's clients are told the session is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            EndReason::Expired
                | EndReason::LoggedOut
                | EndReason::Deleted
                | EndReason::Revoked
                | EndReason::Failed
        )
    }
}

/// A client connection's id.
pub type ClientId = u64;

/// How a client wants its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `/ws`: `{"type":"event","seq":..}`.
    Native,
    /// `/signalr`: JSON hub protocol invocations.
    SignalR,
}

impl Protocol {
    /// Its place in a per-protocol array.
    pub(crate) fn slot(self) -> usize {
        self as usize
    }
}

/// What the registry tells a client.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub enum ToClient {
    /// The event frames of one read from Rocket.Chat, each serialised once
    /// for all of the user's clients that speak its protocol; the first is
    /// the user's event `first`, the others follow it.
    Push {
        /// The first frame's event `seq`.
        first: u64,
        /// The frames.
        frames: Vec<ByteString>,
    },
    /// The session is over for good.
    End(EndReason),
    /// The client fell behind: close with 4008.
    SlowConsumer,
    /// imrelay is stopping: close with 1001.
    GoingAway,
    /// An operator asks the client to reconnect (1012 here; SignalR: Close with allowReconnect).
    Reconnect,
}
