//! The upgrade path byte by byte, over a raw TCP socket: client websockets
//! are taken out of the HTTP dispatcher at the upgrade (src/clients/upgrade.rs),
//! so what the dispatcher used to do for them is checked here.

mod common;

use common::raw::{exchange, frame, read_head, read_texts};
use common::start;
use rcsim::Settings;
use tokio::io::AsyncWriteExt;
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

#[actix_rt::test]
async fn a_frame_sent_with_the_upgrade_request_is_answered() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    let mut s = TcpStream::connect(env.daemon().addr()).await.unwrap();
    // The request and the first frame in one write: the frame arrives in the
    // same read as the request, before any 101 has been written.
    let mut bytes = upgrade_request(&format!("/ws?token={token}"), true).into_bytes();
    bytes.extend(frame(0x1, br#"{"type":"ping"}"#));
    s.write_all(&bytes).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let frames = read_texts(&mut s, 2).await;
    let types: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert!(types.contains(&"welcome"), "{frames:?}");
    assert!(types.contains(&"pong"), "{frames:?}");
}

#[actix_rt::test]
async fn upgrade_requests_that_are_not_websockets_get_ordinary_answers() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    let addr = env.url.as_str();

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
