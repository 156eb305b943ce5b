//! One DDP websocket to Rocket.Chat, as a task owned by a session actor:
//! it connects (awc), sends `connect`, forwards whole text messages to the
//! actor (reassembling fragments, capped), answers websocket pings, writes
//! what the actor queues, and reports when the socket is gone. The actor
//! closes the socket by dropping its sender.

use crate::fragments::{declared_len, Fragment, Reassembler};
use crate::rocketchat::ddp;
use actix::prelude::*;
use actix_codec::{Decoder, Encoder};
use awc::ws::{CloseCode, Frame, Message};
use bytes::{Bytes, BytesMut};
use local_channel::mpsc::Receiver;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};

/// What a connection task tells its actor.
#[derive(Message)]
#[rtype(result = "()")]
pub enum FromConn {
    /// The whole text messages of one read, in order: one actor message
    /// per read, not per DDP frame (one chat message brings a user three).
    Texts {
        /// The connection they came from.
        conn: u64,
        /// Their bytes.
        texts: Vec<Bytes>,
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

/// Most bytes taken per read, through a scratch buffer on the stack: a
/// connection keeps only the bytes of a frame not yet complete, so an idle
/// one holds no read buffer at all.
const READ_CHUNK: usize = 4096;
/// How long a closing connection waits for the server's Close frame.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs one connection until it closes or the actor drops `rx`'s sender.
pub async fn run(
    url: String,
    max_frame: usize,
    conn: u64,
    to: Recipient<FromConn>,
    rx: Receiver<String>,
) {
    let client = CLIENT.with(Clone::clone);
    // Boxed: the handshake's state is large, and unboxed it would size this
    // task for the connection's whole life.
    let connect = Box::pin(client.ws(url.as_str()).max_frame_size(max_frame).connect());
    let framed = match connect.await {
        Ok((_, f)) => f,
        Err(e) => {
            to.do_send(FromConn::Closed {
                conn,
                error: format!("cannot connect to {url}: {e}"),
            });
            return;
        }
    };
    // awc's Framed holds 8 KiB read and 8 KiB write buffers for the
    // connection's life: after the handshake the socket is driven here, and
    // only the bytes already read are kept, in a buffer of their size.
    let mut parts = framed.into_parts();
    let early = BytesMut::from(&parts.read_buf[..]);
    // Freed here: `parts` itself lives as long as this task.
    drop(std::mem::take(&mut parts.read_buf));
    drop(std::mem::take(&mut parts.write_buf));
    let (io, codec) = (parts.io, parts.codec);
    let error = drive(io, codec, early, max_frame, conn, &to, rx).await;
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
    mut rx: Receiver<String>,
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
        let mut texts = vec![];
        loop {
            if declared_len(&buf).is_some_and(|n| n > max_frame as u64) {
                // Refused from its header: otherwise the whole frame is
                // buffered before the codec compares it with the limit.
                hand_over(to, conn, &mut texts);
                let close = Message::Close(Some(CloseCode::Size.into()));
                let _ =
                    tokio::time::timeout(CLOSE_WAIT, send(&mut writer, &mut codec, close)).await;
                return format!(
                    "Rocket.Chat sent a frame over rocketchat.max_frame_bytes ({max_frame})"
                );
            }
            let frame = match codec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    hand_over(to, conn, &mut texts);
                    return format!("websocket error: {e}");
                }
            };
            match frame {
                Frame::Text(text) => texts.push(text),
                Frame::Continuation(item) => {
                    let r = reasm.item(item, max_frame);
                    match r {
                        Fragment::Pending => {}
                        Fragment::Complete(text) => texts.push(text.into()),
                        Fragment::Violation(v) => {
                            hand_over(to, conn, &mut texts);
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
                    hand_over(to, conn, &mut texts);
                    return format!(
                        "Rocket.Chat closed the socket ({})",
                        reason.map_or("no code".into(), |r| format!("{:?}", r.code))
                    );
                }
                Frame::Pong(_) | Frame::Binary(_) => {}
            }
        }
        hand_over(to, conn, &mut texts);
        if buf.is_empty() {
            // Frees the allocation once the frames split off it are dropped.
            buf = BytesMut::new();
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
                            let read = std::future::poll_fn(|cx| read_some(&mut reader, &mut buf, cx));
                            if !matches!(read.await, Ok(n) if n > 0) {
                                return;
                            }
                        }
                    })
                    .await;
                    return "closed by imrelay".into();
                }
            },
            read = std::future::poll_fn(|cx| read_some(&mut reader, &mut buf, cx)) => match read {
                Ok(0) => return "the connection ended without a close frame".into(),
                Ok(_) => {}
                Err(e) => return format!("read failed: {e}"),
            },
        }
    }
}

/// Sends the session what one read brought, if anything.
fn hand_over(to: &Recipient<FromConn>, conn: u64, texts: &mut Vec<Bytes>) {
    if !texts.is_empty() {
        to.do_send(FromConn::Texts {
            conn,
            texts: std::mem::take(texts),
        });
    }
}

/// Reads what the socket has (at most [`READ_CHUNK`]) and appends it to `buf`.
fn read_some(
    reader: &mut ReadHalf<awc::BoxedSocket>,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    // Uninitialised: zeroing 4 KiB per read was a twelfth of the relay's instructions.
    let mut scratch = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
    let mut read = ReadBuf::uninit(&mut scratch);
    ready!(Pin::new(reader).poll_read(cx, &mut read))?;
    buf.extend_from_slice(read.filled());
    Poll::Ready(Ok(read.filled().len()))
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
