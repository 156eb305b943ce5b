//! A SignalR client at the wire level, for the hub's tests: negotiate, the
//! websocket, and its records (JSON objects ended by 0x1E).

use super::{Env, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

pub const RS: char = '\u{1e}';

pub async fn negotiate(
    env: &Env,
    query: &str,
    token: Option<&str>,
    origin: Option<&str>,
) -> (u16, Value, awc::http::header::HeaderMap) {
    let mut req = env
        .http
        .post(format!("{}/signalr/negotiate{query}", env.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(o) = origin {
        req = req.insert_header(("Origin", o));
    }
    let mut r = req.send().await.unwrap();
    let v = r.json().await.unwrap_or(Value::Null);
    (r.status().as_u16(), v, r.headers().clone())
}

pub type Ws = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

pub async fn open(env: &Env, query: &str) -> Result<Ws, u16> {
    match awc::Client::new()
        .ws(format!(
            "{}/signalr{query}",
            env.url.replacen("http", "ws", 1)
        ))
        .connect()
        .await
    {
        Ok((_, f)) => Ok(f),
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => Err(s.as_u16()),
        Err(e) => panic!("{e}"),
    }
}

pub async fn send(ws: &mut Ws, text: &str) {
    ws.send(awc::ws::Message::Text(text.to_string().into()))
        .await
        .unwrap();
}

/// The next text message, split into records.
pub async fn records(ws: &mut Ws) -> Vec<Value> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame")
        {
            Some(Ok(awc::ws::Frame::Text(t))) => {
                let t = String::from_utf8(t.to_vec()).unwrap();
                assert!(
                    t.ends_with(RS),
                    "a message ends at a record boundary: {t:?}"
                );
                return t
                    .split(RS)
                    .filter(|r| !r.is_empty())
                    .map(|r| serde_json::from_str(r).unwrap())
                    .collect();
            }
            Some(Ok(awc::ws::Frame::Ping(_))) => {}
            other => panic!("expected records, got {other:?}"),
        }
    }
}

pub async fn record(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        for r in records(ws).await {
            if pred(&r) {
                return r;
            }
        }
    }
}

pub async fn closed(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a close")
        {
            Some(Ok(awc::ws::Frame::Close(c))) => return c.map(|c| c.code.into()),
            None => return None,
            _ => {}
        }
    }
}
