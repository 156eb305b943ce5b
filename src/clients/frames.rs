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
/// limit, 1007 for text that is not UTF-8, 1002 for any other breach.
pub fn close_code(e: &ProtocolError) -> CloseCode {
    match e {
        ProtocolError::Overflow => CloseCode::Size,
        ProtocolError::Io(io) if io.kind() == io::ErrorKind::InvalidData => CloseCode::Invalid,
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
                // Incomplete and within the limit: the buffer holds less than
                // one frame and its header, so reading more is safe.
                None => debug_assert!(this.decoder.buffered() < MAX_HEADER + this.decoder.max),
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
        let e = d.decode().unwrap().unwrap_err();
        assert_eq!(
            close_code(&e),
            CloseCode::Invalid,
            "1007 for text that is not UTF-8"
        );
    }

    proptest! {
        /// Whatever a client sends, decoding never panics and never holds
        /// more than one frame of the limit, its header and one read: raw
        /// bytes, and frames with valid masked headers declaring any length
        /// followed by any payload.
        #[test]
        fn arbitrary_bytes_stay_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            frames in proptest::collection::vec((0u8..11, any::<bool>(), 0u64..1200, proptest::collection::vec(any::<u8>(), 0..700)), 0..6),
            chunk in 1usize..600,
            max in 16usize..512,
        ) {
            let (_, most) = run(&bytes, chunk, max);
            prop_assert!(most <= MAX_HEADER + max + chunk, "held {most}");
            let mut stream = vec![];
            for (opcode, fin, declared, payload) in frames {
                // A header declaring `declared` bytes, whatever follows.
                let mut f = vec![(u8::from(fin) << 7) | opcode];
                if declared < 126 {
                    f.push(0x80 | declared as u8);
                } else {
                    f.push(0x80 | 126);
                    f.extend_from_slice(&(declared as u16).to_be_bytes());
                }
                f.extend_from_slice(&[7, 7, 7, 7]);
                f.extend_from_slice(&payload);
                stream.extend(f);
            }
            let (_, most) = run(&stream, chunk, max);
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
            let refused = payloads.iter().position(|p| p.len() > max);
            // Every frame up to the first one over the limit, then its refusal.
            prop_assert_eq!(out.len(), refused.map_or(payloads.len(), |i| i + 1));
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
