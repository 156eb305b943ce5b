//! Client websockets run on their own socket, outside actix-http's
//! connection dispatcher.
//!
//! Why: the HTTP/1 dispatcher keeps an 8 KiB read and an 8 KiB write buffer
//! per connection for as long as the connection lives, and a websocket served
//! as a streaming response lives as long as the client: that was half of the
//! daemon's memory per user. actix-http hands an upgrade request and its
//! socket (with those buffers) to an upgrade service instead; this module is
//! that service. It still runs the request through the same actix-web app,
//! so routing, authentication and JSON errors stay in the ordinary handlers:
//! a websocket handler answers with [`accept`], which puts a [`Handoff`] in
//! the 101 response, and the upgrade service then writes the 101 itself,
//! moves the bare socket to the thread of the user's registry shard (where
//! the user's session runs too, see `registry`), and runs the actor there
//! with no buffer held while the client is idle. Any other answer (401, 404,
//! a bad handshake) is written out and the connection closed.

use super::frames::Frames;
use crate::api::errors::ApiError;
use actix::{Actor, ArbiterHandle, AsyncContext, StreamHandler};
use actix_codec::Framed;
use actix_http::body::{BodySize, MessageBody};
use actix_http::error::PayloadError;
use actix_http::{h1, ConnectionType, Request, StatusCode};
use actix_rt::net::TcpStream;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::{HttpRequest, HttpResponse};
use actix_web_actors::ws;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use std::io;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

/// How long a closed websocket waits for the client to close its side.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Runs on the target thread with the socket and the bytes that came with
/// the request; answers on the channel when the websocket is over.
type Start = Box<dyn FnOnce(std::net::TcpStream, Bytes, oneshot::Sender<()>) + Send>;

/// What bounds one client websocket.
pub struct Limits {
    /// Largest frame (and reassembled message) the client may send.
    pub max_frame: usize,
    /// Longest output may wait for the socket to take it.
    pub write_timeout: Duration,
    /// Who the client is, for log lines (`user=alice`).
    pub who: String,
}

/// Carried by a 101 response from [`accept`]: how to run the websocket once
/// the upgrade service owns the socket.
pub struct Handoff(Start);

/// Completes a websocket handshake for `actor`: the 101 response, carrying
/// the [`Handoff`] that the upgrade service runs. The socket then moves to
/// `thread` (the user's registry shard) and the actor starts there. A
/// request that is not a valid websocket handshake gets a 400 naming what is
/// wrong.
pub fn accept<A>(
    req: &HttpRequest,
    actor: A,
    limits: Limits,
    thread: &ArbiterHandle,
) -> Result<HttpResponse, actix_web::Error>
where
    A: Actor<Context = ws::WebsocketContext<A>>
        + StreamHandler<Result<ws::Message, ws::ProtocolError>>
        + Send,
{
    let mut res = ws::handshake(req)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_websocket_handshake",
                format!("not a websocket handshake: {e}"),
            )
        })?
        .finish();
    let thread = thread.clone();
    let start: Start = Box::new(move |io, early, done| {
        let spawned = thread.spawn_fn(move || {
            actix_rt::spawn(async move {
                match TcpStream::from_std(io) {
                    Ok(io) => run(actor, Rc::new(io), early, limits).await,
                    Err(e) => log::warn!(
                        "a client websocket was closed: its socket could not be moved to the user's registry thread ({e})"
                    ),
                }
                let _ = done.send(());
            });
        });
        if !spawned {
            log::warn!("a client websocket was closed: the user's registry thread has stopped (is imrelay shutting down?)");
        }
    });
    res.extensions_mut().insert(Handoff(start));
    Ok(res)
}

/// The upgrade service's body: `app` is the worker's actix-web app.
///
/// A client that leaves while its answer is being written is not an error
/// worth more than a debug line (actix logs a service error at `error`).
pub async fn serve<S, B>(
    app: Rc<S>,
    req: Request,
    framed: Framed<TcpStream, h1::Codec>,
) -> Result<(), actix_web::Error>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    if let Err(e) = answer(app, req, framed).await {
        log::debug!("a client left during its upgrade: {e}");
    }
    Ok(())
}

async fn answer<S, B>(
    app: Rc<S>,
    req: Request,
    mut framed: Framed<TcpStream, h1::Codec>,
) -> io::Result<()>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    let mut res = match app.call(req).await {
        Ok(r) => r.into_parts().1.map_into_boxed_body(),
        Err(e) => e.error_response(),
    };
    let handoff = res.extensions_mut().remove::<Handoff>();
    let (mut head, body) = actix_http::Response::from(res).into_parts();
    match handoff {
        Some(Handoff(start)) if head.status() == StatusCode::SWITCHING_PROTOCOLS => {
            framed
                .send(h1::Message::Item((head, BodySize::None)))
                .await?;
            let mut parts = framed.into_parts();
            // Frames the client sent right behind its request, copied: the
            // buffer is the dispatcher's 8 KiB.
            let early = Bytes::copy_from_slice(&parts.read_buf);
            drop(std::mem::take(&mut parts.read_buf));
            drop(std::mem::take(&mut parts.write_buf));
            let io = parts.io.into_std()?;
            let (done, ended) = oneshot::channel();
            start(io, early, done);
            // This connection (and a graceful stop) waits for the websocket.
            let _ = ended.await;
        }
        _ => {
            // Buffered whole: on websocket routes these are small JSON
            // errors, and other routes see upgrade headers only from odd clients.
            let bytes = actix_http::body::to_bytes(body)
                .await
                .map_err(|e| io::Error::other(e.to_string()))?;
            head.head_mut().set_connection_type(ConnectionType::Close);
            let size = BodySize::Sized(bytes.len() as u64);
            framed.send(h1::Message::Item((head, size))).await?;
            if !bytes.is_empty() {
                framed.send(h1::Message::Chunk(Some(bytes))).await?;
            }
            framed.send(h1::Message::Chunk(None)).await?;
        }
    }
    Ok(())
}

/// Output the context may produce while earlier output still waits for the
/// socket; past it the actor is no longer polled, its mailbox fills and the
/// registry closes it as a slow consumer.
const MAX_UNSENT: usize = 256 << 10;

/// Runs `actor` on the socket until its context finishes, then closes the
/// socket politely; a client whose socket does not take what waits for it
/// within `limits.write_timeout` is cut off (RST) instead.
async fn run<A>(actor: A, io: Rc<TcpStream>, early: Bytes, limits: Limits)
where
    A: Actor<Context = ws::WebsocketContext<A>>
        + StreamHandler<Result<ws::Message, ws::ProtocolError>>,
{
    let frames = Frames::new(Rc::clone(&io), early, limits.max_frame);
    let no_input = futures_util::stream::pending::<Result<Bytes, PayloadError>>();
    let mut out = Box::pin(ws::WebsocketContext::with_factory(no_input, move |ctx| {
        ctx.add_stream(frames);
        actor
    }));
    // The common case: the context's output goes straight out.
    while let Some(Ok(bytes)) = out.next().await {
        let rest = match try_write(&io, &bytes) {
            Ok(n) if n == bytes.len() => continue,
            Ok(n) => &bytes[n..],
            Err(_) => break,
        };
        // Boxed: a backlog's state is large and most connections never have one.
        match Box::pin(backlog(out.as_mut(), &io, rest, &limits)).await {
            Backlog::Drained => {}
            Backlog::Done => break,
            Backlog::Stalled(unsent) => {
                log::info!(
                    "{} client cut off: its socket did not take what was sent within {:?} ({unsent} bytes unsent)",
                    limits.who,
                    limits.write_timeout,
                );
                drop(out);
                abort(io);
                return;
            }
        }
    }
    drop(out);
    if let Ok(mut io) = Rc::try_unwrap(io) {
        Box::pin(close(&mut io)).await;
    }
}

/// How a backlog of output ended.
enum Backlog {
    /// All written; the context goes on.
    Drained,
    /// The context finished (all written) or the socket failed.
    Done,
    /// The backlog did not drain within `write_timeout`; this many bytes were left.
    Stalled(usize),
}

/// Writes `first` and what the context produces meanwhile as the socket
/// takes it, keeping the actor running (heartbeats, closes) while output
/// waits, up to [`MAX_UNSENT`]. The whole backlog must drain within
/// `write_timeout`: a client that takes a byte now and then is as stuck as
/// one that takes none.
async fn backlog<S>(
    mut out: std::pin::Pin<&mut S>,
    io: &TcpStream,
    first: &[u8],
    limits: &Limits,
) -> Backlog
where
    S: futures_util::Stream<Item = Result<Bytes, actix_web::Error>>,
{
    let mut unsent = BytesMut::from(first);
    let mut finished = false;
    let stalled = tokio::time::sleep(limits.write_timeout);
    tokio::pin!(stalled);
    while !unsent.is_empty() {
        tokio::select! {
            ready = io.writable() => {
                if ready.is_err() {
                    return Backlog::Done;
                }
                match try_write(io, &unsent) {
                    Ok(0) => {}
                    Ok(n) => {
                        let _ = unsent.split_to(n);
                    }
                    Err(_) => return Backlog::Done,
                }
            }
            chunk = out.next(), if !finished && unsent.len() < MAX_UNSENT => match chunk {
                Some(Ok(bytes)) => unsent.extend_from_slice(&bytes),
                _ => finished = true,
            },
            () = &mut stalled => return Backlog::Stalled(unsent.len()),
        }
    }
    if finished {
        Backlog::Done
    } else {
        Backlog::Drained
    }
}

/// Bytes written now, without waiting (0 when the socket is full).
fn try_write(io: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    match io.try_write(bytes) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        other => other,
    }
}

/// Closes with a RST: a FIN would wait behind the unsent bytes, and the
/// kernel would keep them (and the connection) for minutes.
fn abort(io: Rc<TcpStream>) {
    if let Err(e) = socket2::SockRef::from(&*io).set_linger(Some(Duration::ZERO)) {
        log::debug!("SO_LINGER on a stalled client: {e}");
    }
    drop(io);
}

/// Sends FIN, then reads until the client closes too (bounded): closing a
/// socket with unread data makes the kernel send a RST, and the client may
/// then drop frames it has not read yet (the Close frame among them).
async fn close(io: &mut TcpStream) {
    let _ = io.shutdown().await;
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        let mut sink = [0u8; 512];
        loop {
            if io.readable().await.is_err() {
                return;
            }
            match io.try_read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}
