//! A client websocket's incoming frames, read off the socket with a bound.
//!
//! Why not actix-web-actors' own input stream: it appends whatever the
//! socket has to one buffer before decoding anything, and actix-http's frame
//! parser reports "not enough data" before it compares a frame's declared
//! length with the limit, so a header declaring 1 GiB followed by data grew
//! the buffer without bound. Here the declared length is checked as soon as
//! the header is in, and the socket is read only when the frame in progress
//! needs more bytes: what is buffered stays under one frame, its header and
//! one read.

use crate::fragments::declared_len;
use actix_http::ws::{CloseCode, Codec, Frame, Message, ProtocolError};
use actix_rt::net::TcpStream;
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

/// Most bytes taken per read: clients send pings and small records.
pub const READ_CHUNK: usize = 2048;

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEADER: usize = 14;

/// The close code for a frame the client got wrong: 1009 for one over the
/// limit, 1002 for any other breach.
pub fn close_code(e: &ProtocolError) -> CloseCode {
    match e {
        ProtocolError::Overflow => CloseCode::Size,
        _ => CloseCode::Protocol,
    }
}

/// The close reason for such a frame, for the client to read.
pub fn close_reason(e: &ProtocolError) -> String {
    match e {
        ProtocolError::Overflow => "message too large".into(),
        e => format!("invalid frame: {e}"),
    }
}

/// Decodes client frames from bytes pushed in as they arrive.
pub struct Decoder {
    buf: BytesMut,
    codec: Codec,
    max: usize,
}

impl Decoder {
    /// A decoder for masked client frames of at most `max` payload bytes.
    pub fn new(max: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            codec: Codec::new().max_size(max),
            max,
        }
    }

    /// Bytes received and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the frame in progress needs more bytes before it can be
    /// decoded or refused (read only then).
    pub fn wants_more(&self) -> bool {
        let need_header = declared_len(&self.buf).is_none();
        need_header || self.buf.len() < MAX_HEADER + self.max
    }

    /// Appends bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next message, `None` until a whole frame is in; an error ends
    /// the stream (a frame over the limit is refused from its header).
    pub fn decode(&mut self) -> Option<Result<Message, ProtocolError>> {
        if declared_len(&self.buf).is_some_and(|n| n > self.max as u64) {
            return Some(Err(ProtocolError::Overflow));
        }
        let frame = match actix_codec::Decoder::decode(&mut self.codec, &mut self.buf) {
            Ok(Some(f)) => f,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        if self.buf.is_empty() {
            // Frees the read buffer: an idle client holds none.
            self.buf = BytesMut::new();
        }
        Some(message(frame))
    }
}

fn message(frame: Frame) -> Result<Message, ProtocolError> {
    Ok(match frame {
        Frame::Text(data) => Message::Text(ByteString::try_from(data).map_err(|e| {
            ProtocolError::Io(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
        })?),
        Frame::Binary(data) => Message::Binary(data),
        Frame::Ping(p) => Message::Ping(p),
        Frame::Pong(p) => Message::Pong(p),
        Frame::Close(r) => Message::Close(r),
        Frame::Continuation(item) => Message::Continuation(item),
    })
}

/// The messages a client sends, as the websocket actor's input stream.
pub struct Frames {
    io: Rc<TcpStream>,
    decoder: Decoder,
    done: bool,
}

impl Frames {
    /// Frames read from `io`, after the `early` bytes that came with the
    /// upgrade request.
    pub fn new(io: Rc<TcpStream>, early: Bytes, max: usize) -> Self {
        let mut decoder = Decoder::new(max);
        decoder.push(&early);
        Frames {
            io,
            decoder,
            done: false,
        }
    }

    fn end(
        &mut self,
        item: Option<Result<Message, ProtocolError>>,
    ) -> Poll<Option<Result<Message, ProtocolError>>> {
        self.done = true;
        Poll::Ready(item)
    }
}

impl futures_util::Stream for Frames {
    type Item = Result<Message, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.decoder.decode() {
                Some(Err(e)) => return this.end(Some(Err(e))),
                Some(ok) => return Poll::Ready(Some(ok)),
                None if !this.decoder.wants_more() => {
                    return this.end(Some(Err(ProtocolError::Overflow)))
                }
                None => {}
            }
            if let Err(e) = ready!(this.io.poll_read_ready(cx)) {
                return this.end(Some(Err(ProtocolError::Io(e))));
            }
            let mut scratch = [0u8; READ_CHUNK];
            match this.io.try_read(&mut scratch) {
                Ok(0) => return this.end(None),
                Ok(n) => this.decoder.push(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return this.end(Some(Err(ProtocolError::Io(e)))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A masked client frame, as a browser sends it.
    fn frame(opcode: u8, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// Feeds `bytes` in `chunk`-sized reads the way [`Frames`] does, reading
    /// only while the decoder wants more; returns what came out.
    fn run(bytes: &[u8], chunk: usize, max: usize) -> (Vec<Result<Message, String>>, usize) {
        let mut d = Decoder::new(max);
        let (mut out, mut most, mut at) = (vec![], 0, 0);
        loop {
            match d.decode() {
                Some(Err(e)) => {
                    out.push(Err(e.to_string()));
                    break;
                }
                Some(Ok(m)) => out.push(Ok(m)),
                None if !d.wants_more() => {
                    out.push(Err("overflow".into()));
                    break;
                }
                None if at >= bytes.len() => break,
                None => {
                    let end = (at + chunk).min(bytes.len());
                    d.push(&bytes[at..end]);
                    at = end;
                }
            }
            most = most.max(d.buffered());
        }
        (out, most)
    }

    #[test]
    fn a_frame_declaring_more_than_the_limit_is_refused_from_its_header() {
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 30).to_be_bytes());
        let mut d = Decoder::new(64 << 10);
        d.push(&header[..6]);
        assert!(d.decode().is_none(), "the length is not in yet");
        d.push(&header[6..]);
        assert!(matches!(d.decode(), Some(Err(ProtocolError::Overflow))));
        assert_eq!(close_code(&ProtocolError::Overflow), CloseCode::Size);
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_the_buffer_is_freed() {
        let mut bytes = frame(0x1, true, br#"{"type":"ping"}"#, [1, 2, 3, 4]);
        bytes.extend(frame(0x9, true, b"hi", [9, 9, 9, 9]));
        for chunk in 1..bytes.len() {
            let (out, _) = run(&bytes, chunk, 1024);
            assert_eq!(out.len(), 2, "chunk {chunk}");
            assert!(matches!(&out[0], Ok(Message::Text(t)) if t == r#"{"type":"ping"}"#));
            assert!(matches!(&out[1], Ok(Message::Ping(p)) if p.as_ref() == b"hi"));
        }
        let mut d = Decoder::new(1024);
        d.push(&bytes);
        d.decode();
        d.decode();
        assert_eq!(d.buf.capacity(), 0, "no buffer is kept once idle");
    }

    #[test]
    fn unmasked_and_bad_utf8_frames_are_protocol_errors() {
        let mut d = Decoder::new(1024);
        d.push(&[0x81, 0x02, b'h', b'i']);
        assert!(matches!(
            d.decode(),
            Some(Err(ProtocolError::UnmaskedFrame))
        ));
        let mut d = Decoder::new(1024);
        d.push(&frame(0x1, true, &[0xff, 0xfe], [0, 0, 0, 0]));
        assert!(matches!(d.decode(), Some(Err(ProtocolError::Io(_)))));
    }

    proptest! {
        /// Whatever a client sends, decoding never panics and never holds
        /// more than one frame of the limit, its header and one read.
        #[test]
        fn arbitrary_bytes_stay_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            chunk in 1usize..600,
            max in 16usize..512,
        ) {
            let (_, most) = run(&bytes, chunk, max);
            prop_assert!(most <= MAX_HEADER + max + chunk, "held {most}");
        }

        /// Valid frames of any size up to the limit, split at any point,
        /// come out as sent; one past the limit is refused.
        #[test]
        fn valid_frames_round_trip(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..5),
            mask in any::<[u8; 4]>(),
            chunk in 1usize..700,
        ) {
            let max = 256;
            let bytes: Vec<u8> = payloads.iter().flat_map(|p| frame(0x2, true, p, mask)).collect();
            let (out, _) = run(&bytes, chunk, max);
            for (p, got) in payloads.iter().zip(&out) {
                if p.len() > max {
                    prop_assert!(got.is_err(), "{got:?}");
                    break;
                }
                prop_assert!(matches!(got, Ok(Message::Binary(b)) if b.as_ref() == p.as_slice()));
            }
        }
    }
}
