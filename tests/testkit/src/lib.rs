//! What the Rust test suites (imrelay's and rcsim's) share: a websocket
//! client that speaks JSON text frames over awc, answers pings, and fails
//! the test rather than wait past its deadline.

use actix_codec::Framed;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;

/// What a socket saw next.
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// A text frame, as JSON.
    Json(Value),
    /// A Close frame and its code.
    Close(Option<u16>),
    /// The stream ended without a Close frame.
    End,
}

/// A websocket of JSON text frames.
pub struct JsonSocket {
    framed: Framed<BoxedSocket, Codec>,
    /// The longest any one wait may take.
    wait: Duration,
    /// Frames read past while waiting for another ([`JsonSocket::until`]).
    pub backlog: Vec<Value>,
}

impl JsonSocket {
    /// Over a connected websocket; every wait fails the test after `wait`.
    pub fn new(framed: Framed<BoxedSocket, Codec>, wait: Duration) -> Self {
        JsonSocket {
            framed,
            wait,
            backlog: vec![],
        }
    }

    /// The websocket itself, for assertions on raw frames.
    pub fn framed_mut(&mut self) -> &mut Framed<BoxedSocket, Codec> {
        &mut self.framed
    }

    /// Sends a value as a text frame.
    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Sends a text frame as it is.
    pub async fn send_text(&mut self, t: &str) {
        self.framed
            .send(Message::Text(t.to_string().into()))
            .await
            .expect("send a text frame");
    }

    /// The next text frame, Close or end; pings are answered on the way.
    pub async fn next(&mut self) -> Seen {
        loop {
            let f = tokio::time::timeout(self.wait, self.framed.next())
                .await
                .unwrap_or_else(|_| panic!("no frame within {:?}", self.wait));
            match f {
                None => return Seen::End,
                Some(Ok(Frame::Text(t))) => {
                    return Seen::Json(serde_json::from_slice(&t).expect("a JSON text frame"))
                }
                Some(Ok(Frame::Close(r))) => return Seen::Close(r.map(|r| r.code.into())),
                Some(Ok(Frame::Ping(p))) => {
                    let _ = self.framed.send(Message::Pong(p)).await;
                }
                Some(Ok(Frame::Pong(_))) => {}
                Some(Ok(other)) => {
                    panic!("unexpected frame {other:?} (read fragments with framed_mut)")
                }
                Some(Err(e)) => panic!("websocket protocol error: {e}"),
            }
        }
    }

    /// The next text frame (a close fails the test).
    pub async fn json(&mut self) -> Value {
        match self.next().await {
            Seen::Json(v) => v,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The first frame, kept from before or read now, that matches; the
    /// others read meanwhile go to the backlog.
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        loop {
            let v = self.json().await;
            if pred(&v) {
                return v;
            }
            self.backlog.push(v);
        }
    }

    /// Reads to the end: the frames before it and the Close code (`None`:
    /// no Close frame).
    pub async fn until_closed(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut before = vec![];
        loop {
            match self.next().await {
                Seen::Json(v) => before.push(v),
                Seen::Close(c) => return (before, c),
                Seen::End => return (before, None),
            }
        }
    }

    /// What arrives within `d` other than pings (answered), if anything:
    /// only for proving that nothing does.
    pub async fn quiet_for(&mut self, d: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.framed.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Frame::Ping(p)))) => {
                    let _ = self.framed.send(Message::Pong(p)).await;
                }
                Ok(f) => return Some(format!("{f:?}")),
            }
        }
    }
}
