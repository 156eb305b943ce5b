//! The upgrade path byte by byte, over a raw TCP socket: client websockets
//! are taken out of the HTTP dispatcher at the upgrade (src/http/upgrade.rs),
//! so what the dispatcher used to do for them is checked here.

mod common;

use common::{start, WAIT};
use rcsim::Settings;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn upgrade_request(path: &str, key: bool) -> String {
    let key = if key {
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    } else {
        ""
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n{key}\r\n"
    )
}

/// A masked client text frame (payload under 126 bytes).
fn client_text(text: &str) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | text.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads until the HTTP head is complete; returns it and what followed.
async fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = vec![];
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = buf.split_off(end + 4);
                return (String::from_utf8_lossy(&buf).into_owned(), rest);
            }
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before a whole head: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("an HTTP head in time")
}

/// Reads server text frames (unmasked, unfragmented) until `want` of them,
/// skipping pings.
async fn read_texts(s: &mut TcpStream, mut buf: Vec<u8>, want: usize) -> Vec<Value> {
    let mut out = vec![];
    tokio::time::timeout(WAIT, async {
        while out.len() < want {
            if buf.len() >= 2 {
                let (op, len) = (buf[0] & 0x0f, (buf[1] & 0x7f) as usize);
                let (start, len) = match len {
                    126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
                    126 => (usize::MAX, 0),
                    127 => panic!("unexpectedly large frame"),
                    n => (2, n),
                };
                if start != usize::MAX && buf.len() >= start + len && op == 9 {
                    // A heartbeat ping: it may come at any time in the first period.
                    buf.drain(..start + len);
                    continue;
                }
                if start != usize::MAX && buf.len() >= start + len {
                    assert_eq!(op, 1, "a text frame");
                    out.push(serde_json::from_slice(&buf[start..start + len]).expect("JSON"));
                    buf.drain(..start + len);
                    continue;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed after {out:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("frames in time");
    out
}

#[actix_rt::test]
async fn a_frame_sent_with_the_upgrade_request_is_answered() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    let mut s = TcpStream::connect(env.daemon().addr()).await.unwrap();
    // The request and the first frame in one write: the frame arrives in the
    // same read as the request, before any 101 has been written.
    let mut bytes = upgrade_request(&format!("/ws?token={token}"), true).into_bytes();
    bytes.extend(client_text(r#"{"type":"ping"}"#));
    s.write_all(&bytes).await.unwrap();
    let (head, rest) = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let frames = read_texts(&mut s, rest, 2).await;
    let types: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert!(types.contains(&"welcome"), "{frames:?}");
    assert!(types.contains(&"pong"), "{frames:?}");
}

/// Sends `request` on a new connection and reads the whole answer, which
/// ends with the server closing the connection.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut all = vec![];
    tokio::time::timeout(WAIT, s.read_to_end(&mut all))
        .await
        .expect("the server closes after answering")
        .unwrap();
    String::from_utf8_lossy(&all).into_owned()
}

#[actix_rt::test]
async fn upgrade_requests_that_are_not_websockets_get_ordinary_answers() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    let addr = env.daemon().addr();

    // An h2c upgrade attempt on a plain route: answered as HTTP/1.1, then closed.
    let all = exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n").await;
    assert!(all.starts_with("HTTP/1.1 200"), "{all}");

    // A websocket route with a good token but a broken handshake: 400, with the reason.
    let no_key = upgrade_request(&format!("/ws?token={token}"), false);
    let all = exchange(addr, no_key.as_bytes()).await;
    assert!(all.starts_with("HTTP/1.1 400"), "{all}");
    assert!(
        all.contains("bad_websocket_handshake") && all.contains("key"),
        "names the missing key: {all:?}"
    );

    // A bad token on the upgrade: imrelay's JSON error, not a websocket.
    let all = exchange(addr, upgrade_request("/ws?token=nope", true).as_bytes()).await;
    assert!(all.starts_with("HTTP/1.1 401"), "{all}");
    assert!(all.contains("bad_client_token"), "{all}");
}
