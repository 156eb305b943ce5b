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

use super::errors::ApiError;
use actix::{Actor, ArbiterHandle, StreamHandler};
use actix_codec::Framed;
use actix_http::body::{BodySize, MessageBody};
use actix_http::{h1, ConnectionType, Request, StatusCode};
use actix_rt::net::TcpStream;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::{HttpRequest, HttpResponse};
use actix_web_actors::ws;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::io;
use std::rc::Rc;
use std::task::{ready, Poll};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

/// Most bytes taken per read: clients send pings and small records.
const READ_CHUNK: usize = 2048;
/// How long a closed websocket waits for the client to close its side.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Runs on the target thread with the socket and the bytes that came with
/// the request; answers on the channel when the websocket is over.
type Start = Box<dyn FnOnce(std::net::TcpStream, Bytes, oneshot::Sender<()>) + Send>;

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
    max_frame: usize,
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
                    Ok(io) => run(actor, Rc::new(io), early, max_frame).await,
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

/// Runs `actor` on the socket until its context finishes, then closes the
/// socket politely.
async fn run<A>(actor: A, io: Rc<TcpStream>, early: Bytes, max_frame: usize)
where
    A: Actor<Context = ws::WebsocketContext<A>>
        + StreamHandler<Result<ws::Message, ws::ProtocolError>>,
{
    let first = (!early.is_empty()).then_some(Ok(early));
    let input = futures_util::stream::iter(first).chain(reads(Rc::clone(&io)));
    let codec = actix_http::ws::Codec::new().max_size(max_frame);
    let mut out = Box::pin(ws::WebsocketContext::with_codec(actor, input, codec));
    while let Some(chunk) = out.next().await {
        // The context encoded every frame it had queued into one chunk.
        let Ok(bytes) = chunk else { break };
        if write_all(&io, &bytes).await.is_err() {
            break;
        }
    }
    drop(out);
    if let Ok(mut io) = Rc::try_unwrap(io) {
        close(&mut io).await;
    }
}

/// The socket's bytes as the websocket context's input stream, read through
/// a scratch buffer: an idle client holds no read buffer.
fn reads(
    io: Rc<TcpStream>,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_http::error::PayloadError>> {
    futures_util::stream::poll_fn(move |cx| loop {
        if let Err(e) = ready!(io.poll_read_ready(cx)) {
            return Poll::Ready(Some(Err(e.into())));
        }
        let mut scratch = [0u8; READ_CHUNK];
        match io.try_read(&mut scratch) {
            Ok(0) => return Poll::Ready(None),
            Ok(n) => return Poll::Ready(Some(Ok(Bytes::copy_from_slice(&scratch[..n])))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Some(Err(e.into()))),
        }
    })
}

async fn write_all(io: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        io.writable().await?;
        match io.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
