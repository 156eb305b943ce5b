//! One DDP websocket to Rocket.Chat, as a task owned by a session actor:
//! it connects (awc), sends `connect`, forwards whole text messages to the
//! actor (reassembling fragments, capped), answers websocket pings, writes
//! what the actor queues, and reports when the socket is gone. The actor
//! closes the socket by dropping its sender.

use crate::fragments::{Fragment, Reassembler};
use crate::rocketchat::ddp;
use actix::prelude::*;
use actix_codec::{Decoder, Encoder};
use awc::ws::{CloseCode, Frame, Message};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
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

/// Room kept free in the read buffer before each read.
const READ_CHUNK: usize = 2048;
/// An idle connection's read buffer shrinks back below this.
const IDLE_BUFFER: usize = 4096;
/// How long a closing connection waits for the server's Close frame.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs one connection until it closes or the actor drops `rx`'s sender.
pub async fn run(
    url: String,
    max_frame: usize,
    conn: u64,
    to: Recipient<FromConn>,
    rx: UnboundedReceiver<String>,
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
    // awc's Framed keeps 8 KiB read and 8 KiB write buffers per connection for
    // life (16 KiB a session, the biggest part of its memory): after the
    // handshake the socket is driven here with buffers sized to the traffic.
    let parts = framed.into_parts();
    let error = drive(
        parts.io,
        parts.codec,
        parts.read_buf,
        max_frame,
        conn,
        &to,
        rx,
    )
    .await;
    log::debug!("DDP connection {conn} ended: {error}");
    to.do_send(FromConn::Closed { conn, error });
}

async fn drive(
    io: awc::BoxedSocket,
    mut codec: awc::ws::Codec,
    mut buf: BytesMut,
    max_frame: usize,
    conn: u64,
    to: &Recipient<FromConn>,
    mut rx: UnboundedReceiver<String>,
) -> String {
    let (mut reader, mut writer) = tokio::io::split(io);
    let mut reasm = Reassembler::default();
    if let Err(e) = send(
        &mut writer,
        &mut codec,
        Message::Text(ddp::connect().into()),
    )
    .await
    {
        return format!("write failed: {e}");
    }
    loop {
        // Whole frames already buffered (the handshake may have brought some).
        loop {
            let frame = match codec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return format!("websocket error: {e}"),
            };
            match frame {
                Frame::Text(text) => to.do_send(FromConn::Text { conn, text }),
                Frame::Continuation(item) => {
                    let r = reasm.item(item, max_frame);
                    match r {
                        Fragment::Pending => {}
                        Fragment::Complete(text) => to.do_send(FromConn::Text {
                            conn,
                            text: text.into(),
                        }),
                        Fragment::Violation(v) => {
                            let _ = send(
                                &mut writer,
                                &mut codec,
                                Message::Close(Some(CloseCode::Size.into())),
                            )
                            .await;
                            return format!("protocol violation from Rocket.Chat: {v}");
                        }
                    }
                }
                Frame::Ping(p) => {
                    let _ = send(&mut writer, &mut codec, Message::Pong(p)).await;
                }
                Frame::Close(reason) => {
                    return format!(
                        "Rocket.Chat closed the socket ({})",
                        reason.map_or("no code".into(), |r| format!("{:?}", r.code))
                    );
                }
                Frame::Pong(_) | Frame::Binary(_) => {}
            }
        }
        if buf.is_empty() && buf.capacity() > IDLE_BUFFER {
            buf = BytesMut::new();
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            out = rx.recv() => match out {
                Some(text) => {
                    if let Err(e) = send(&mut writer, &mut codec, Message::Text(text.into())).await {
                        return format!("write failed: {e}");
                    }
                }
                None => {
                    let _ = send(&mut writer, &mut codec, Message::Close(Some(CloseCode::Normal.into()))).await;
                    // The closing handshake: closing with unread data makes the
                    // kernel send a RST, and the server may then drop what it
                    // had not read yet (a final DDP logout among it).
                    let _ = tokio::time::timeout(CLOSE_WAIT, async {
                        loop {
                            while let Ok(Some(frame)) = codec.decode(&mut buf) {
                                if let Frame::Close(_) = frame {
                                    return;
                                }
                            }
                            buf.reserve(READ_CHUNK);
                            if !matches!(reader.read_buf(&mut buf).await, Ok(n) if n > 0) {
                                return;
                            }
                        }
                    })
                    .await;
                    return "closed by imrelay".into();
                }
            },
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => return "the connection ended without a close frame".into(),
                Ok(_) => {}
                Err(e) => return format!("read failed: {e}"),
            },
        }
    }
}

/// Encodes one message into a short-lived buffer and writes it out.
async fn send(
    writer: &mut WriteHalf<awc::BoxedSocket>,
    codec: &mut awc::ws::Codec,
    msg: Message,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    codec.encode(msg, &mut out).map_err(std::io::Error::other)?;
    writer.write_all(&out).await?;
    writer.flush().await
}
