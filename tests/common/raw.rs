//! Raw sockets for what a client library would refuse to send: websocket
//! upgrades by hand, frames with any header, clients that never read, and
//! HTTP requests written byte by byte.

use super::WAIT;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn addr(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().unwrap()
}

/// A TCP connection to the daemon; with `recv_buffer` a tiny receive
/// window, so the server's writes back up quickly.
pub async fn connect(base: &str, recv_buffer: Option<u32>) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(n) = recv_buffer {
        sock.set_recv_buffer_size(n).unwrap();
    }
    tokio::time::timeout(WAIT, sock.connect(addr(base)))
        .await
        .expect("connect timeout")
        .expect("connect")
}

/// Reads an HTTP response head, up to the blank line.
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut head = vec![];
    while !head.ends_with(b"\r\n\r\n") {
        let b = tokio::time::timeout(WAIT, s.read_u8())
            .await
            .expect("response head timeout")
            .expect("response head");
        head.push(b);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Upgrades `path_and_query` to a websocket by hand; returns the socket
/// after the 101.
pub async fn upgrade(base: &str, path_and_query: &str, recv_buffer: Option<u32>) -> TcpStream {
    let mut s = connect(base, recv_buffer).await;
    let req = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        addr(base)
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "upgraded: {head}");
    s
}

/// The header of a masked client frame declaring `len` payload bytes
/// (mask 0: the payload goes as is).
pub fn header(opcode: u8, fin: bool, len: u64) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | opcode];
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= 0xffff {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&len.to_be_bytes());
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f
}

/// A whole masked client frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = header(opcode, true, payload.len() as u64);
    f.extend_from_slice(payload);
    f
}

/// Reads one server frame: its opcode and payload.
pub async fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await?;
    let mut len = u64::from(h[1] & 0x7f);
    if len == 126 {
        len = u64::from(s.read_u16().await?);
    } else if len == 127 {
        len = s.read_u64().await?;
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await?;
    Ok((h[0] & 0x0f, payload))
}

/// Reads server frames until a Close; returns its code and the text
/// frames before it.
pub async fn close_code(s: &mut TcpStream) -> (u16, Vec<String>) {
    let mut texts = vec![];
    loop {
        let (op, payload) = read_frame(s).await.expect("a frame before the close");
        match op {
            0x8 => return (u16::from_be_bytes([payload[0], payload[1]]), texts),
            0x1 => texts.push(String::from_utf8_lossy(&payload).into_owned()),
            _ => {}
        }
    }
}

/// The kernel's `TCP_INFO` for a socket (a listener's too).
pub fn tcp_info(fd: &impl std::os::fd::AsRawFd) -> libc::tcp_info {
    // SAFETY: getsockopt writes at most `len` bytes into a zeroed tcp_info.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "getsockopt(TCP_INFO): {}",
        std::io::Error::last_os_error()
    );
    info
}

/// The kernel's state of a TCP socket: 1 is ESTABLISHED, 7 CLOSE.
pub fn tcp_state(s: &TcpStream) -> u8 {
    tcp_info(s).tcpi_state
}

/// Sends `request` as written on a new connection and reads the whole
/// answer, which ends with the server closing the connection.
pub async fn exchange(base: &str, request: &[u8]) -> String {
    let mut s = connect(base, None).await;
    s.write_all(request).await.unwrap();
    let mut out = vec![];
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("the server answers and closes in time")
        .expect("answer");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads server text frames until `want` of them, skipping pings (a
/// heartbeat may come at any time in the first period).
pub async fn read_texts(s: &mut TcpStream, want: usize) -> Vec<serde_json::Value> {
    let mut out = vec![];
    while out.len() < want {
        let (op, payload) = tokio::time::timeout(WAIT, read_frame(s))
            .await
            .expect("frames in time")
            .expect("a frame");
        match op {
            0x9 => continue,
            0x1 => out.push(serde_json::from_slice(&payload).expect("JSON")),
            other => panic!("expected a text frame, got opcode {other}"),
        }
    }
    out
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body` as written, with `Connection: close`; returns the status and the
/// body read to the end.
pub async fn http(base: &str, head: &str, body: &[u8]) -> (u16, String) {
    let mut req = format!(
        "{head}\r\nHost: {}\r\nConnection: close\r\n\r\n",
        addr(base)
    )
    .into_bytes();
    req.extend_from_slice(body);
    let mut text = exchange(base, &req).await;
    // Interim answers (100 Continue) come first.
    while text.starts_with("HTTP/1.1 1") {
        text = text
            .split_once("\r\n\r\n")
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default();
    }
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
