//! Can imrelay serve? One REST call as the admin (Rocket.Chat answers, the
//! admin token is good) and one DDP round trip (a fresh socket connects and
//! answers a ping), each within the REST timeout. `/readyz` reports the last
//! result.

use super::rest::RestClient;
use super::{ddp, Credentials, RcError};
use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;

/// Why a probe failed.
#[derive(Debug)]
pub enum ProbeError {
    /// The admin token was refused: log in again.
    AdminToken,
    /// Rocket.Chat's REST API failed or did not answer.
    Rest(RcError),
    /// The realtime API (DDP) failed or did not answer.
    Ddp(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::AdminToken => f.write_str("Rocket.Chat refused the admin token"),
            ProbeError::Rest(e) => write!(f, "Rocket.Chat's REST API: {e}"),
            ProbeError::Ddp(e) => write!(f, "Rocket.Chat's realtime API (DDP): {e}"),
        }
    }
}

impl ProbeError {
    /// Which part failed, without detail: for `/readyz`, which anyone may read.
    pub fn part(&self) -> &'static str {
        match self {
            ProbeError::AdminToken => "Rocket.Chat refused the admin token; logging in again",
            ProbeError::Rest(_) => {
                "Rocket.Chat's REST API does not answer (details in imrelay's log)"
            }
            ProbeError::Ddp(_) => {
                "Rocket.Chat's realtime API (DDP) does not answer (details in imrelay's log)"
            }
        }
    }
}

/// Probes REST as `admin`, then DDP at `ws_url`.
pub async fn probe(
    rest: &RestClient,
    admin: &Credentials,
    ws_url: &str,
    timeout: Duration,
) -> Result<(), ProbeError> {
    match rest.me(admin).await {
        Ok(_) => {}
        Err(RcError::Unauthorized) => return Err(ProbeError::AdminToken),
        Err(e) => return Err(ProbeError::Rest(e)),
    }
    tokio::time::timeout(timeout, ddp_round_trip(ws_url))
        .await
        .map_err(|_| ProbeError::Ddp(format!("no answer within {timeout:?}")))?
        .map_err(ProbeError::Ddp)
}

async fn ddp_round_trip(ws_url: &str) -> Result<(), String> {
    let (_, mut ws) = awc::Client::new()
        .ws(ws_url)
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {ws_url}: {e}"))?;
    let send = async |ws: &mut actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
                      text: String| {
        ws.send(Message::Text(text.into()))
            .await
            .map_err(|e| format!("send: {e}"))
    };
    send(&mut ws, ddp::connect()).await?;
    let mut pinged = false;
    while let Some(frame) = ws.next().await {
        let text = match frame.map_err(|e| format!("read: {e}"))? {
            Frame::Text(t) => t,
            Frame::Ping(p) => {
                let _ = ws.send(Message::Pong(p)).await;
                continue;
            }
            Frame::Close(r) => return Err(format!("closed: {r:?}")),
            _ => continue,
        };
        match ddp::parse(&text).map_err(|e| format!("not DDP: {e}"))? {
            ddp::ServerMsg::Connected if !pinged => {
                pinged = true;
                send(&mut ws, r#"{"msg":"ping","id":"readyz"}"#.to_string()).await?;
            }
            ddp::ServerMsg::Failed(v) => return Err(format!("DDP version {v} refused")),
            ddp::ServerMsg::Pong if pinged => {
                let _ = ws.send(Message::Close(None)).await;
                return Ok(());
            }
            ddp::ServerMsg::Ping(id) => send(&mut ws, ddp::pong(id)).await?,
            _ => {}
        }
    }
    Err("the socket closed before the round trip".into())
}
