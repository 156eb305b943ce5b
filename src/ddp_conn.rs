//! One DDP websocket to Rocket.Chat, as a task owned by a session actor:
//! it connects (awc), sends `connect`, forwards whole text messages to the
//! actor (reassembling fragments, capped), answers websocket pings, writes
//! what the actor queues, and reports when the socket is gone. The actor
//! closes the socket by dropping its sender.

use crate::fragments::{Fragment, Reassembler};
use crate::rocketchat::ddp;
use actix::prelude::*;
use awc::ws::{CloseCode, Frame, Message};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc::UnboundedReceiver;

/// What a connection task tells its actor.
#[derive(Message)]
#[rtype(result = "()")]
pub enum FromConn {
    /// A whole text message.
    Text {
        /// The connection it came from.
        conn: u64,
        /// The bytes.
        text: bytes::Bytes,
    },
    /// The socket is gone (or never opened).
    Closed {
        /// The connection.
        conn: u64,
        /// Why, for the log.
        error: String,
    },
}

thread_local! {
    /// One HTTP client per thread for every DDP connection: a client per
    /// connection builds its own connector and TLS configuration.
    static CLIENT: awc::Client = awc::Client::builder()
        // A websocket holds its pooled connection for life; the default
        // limit (100 per scheme) would stall the 101st session.
        .connector(awc::Connector::new().limit(0))
        .max_http_version(awc::http::Version::HTTP_11)
        .finish();
}

/// Runs one connection until it closes or the actor drops `rx`'s sender.
pub async fn run(
    url: String,
    max_frame: usize,
    conn: u64,
    to: Recipient<FromConn>,
    mut rx: UnboundedReceiver<String>,
) {
    let client = CLIENT.with(Clone::clone);
    let framed = match client
        .ws(url.as_str())
        .max_frame_size(max_frame)
        .connect()
        .await
    {
        Ok((_, f)) => f,
        Err(e) => {
            to.do_send(FromConn::Closed {
                conn,
                error: format!("cannot connect to {url}: {e}"),
            });
            return;
        }
    };
    let (mut sink, mut stream) = framed.split();
    let mut reasm = Reassembler::default();
    let error;
    if sink
        .send(Message::Text(ddp::connect().into()))
        .await
        .is_err()
    {
        to.do_send(FromConn::Closed {
            conn,
            error: "the socket closed at once".into(),
        });
        return;
    }
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(text) => {
                    if let Err(e) = sink.send(Message::Text(text.into())).await {
                        error = format!("write failed: {e}");
                        break;
                    }
                }
                None => {
                    let _ = sink.send(Message::Close(Some(CloseCode::Normal.into()))).await;
                    return;
                }
            },
            frame = stream.next() => match frame {
                Some(Ok(Frame::Text(text))) => to.do_send(FromConn::Text { conn, text }),
                Some(Ok(Frame::Continuation(item))) => {
                    use actix_http::ws::Item;
                    let r = match item {
                        Item::FirstText(b) => reasm.first(&b, max_frame),
                        Item::FirstBinary(_) => Fragment::Violation("a fragmented binary message".into()),
                        Item::Continue(b) => reasm.more(&b, max_frame),
                        Item::Last(b) => reasm.last(&b, max_frame),
                    };
                    match r {
                        Fragment::Pending => {}
                        Fragment::Complete(text) => to.do_send(FromConn::Text { conn, text: text.into() }),
                        Fragment::Violation(v) => {
                            error = format!("protocol violation from Rocket.Chat: {v}");
                            let _ = sink.send(Message::Close(Some(CloseCode::Size.into()))).await;
                            break;
                        }
                    }
                }
                Some(Ok(Frame::Ping(p))) => {
                    let _ = sink.send(Message::Pong(p)).await;
                }
                Some(Ok(Frame::Close(reason))) => {
                    error = format!("Rocket.Chat closed the socket ({})", reason.map_or("no code".into(), |r| format!("{:?}", r.code)));
                    break;
                }
                Some(Ok(Frame::Pong(_) | Frame::Binary(_))) => {}
                Some(Err(e)) => {
                    error = format!("websocket error: {e}");
                    break;
                }
                None => {
                    error = "the connection ended without a close frame".into();
                    break;
                }
            },
        }
    }
    to.do_send(FromConn::Closed { conn, error });
}
