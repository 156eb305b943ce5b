//! What a client sends is bounded before it is buffered: a frame whose
//! header declares more than the limit is refused with 1009 as soon as the
//! header is in, on both client protocols.

mod common;

use common::raw::{close_code, frame, header, read_frame, upgrade};
use common::{start, WAIT};
use rcsim::Settings;
use tokio::io::AsyncWriteExt;

/// Sends a text frame declaring 1 GiB and 64 KiB of its data, then reads to
/// the close: the server must not wait for the rest.
async fn gigabyte_frame(s: &mut tokio::net::TcpStream) -> (u16, Vec<String>) {
    s.write_all(&header(0x1, true, 1 << 30)).await.unwrap();
    // Part of the body, as an attacker streams it; the server may already
    // have closed, so a failed write is no failure.
    let _ = s.write_all(&vec![b'x'; 64 << 10]).await;
    tokio::time::timeout(WAIT, close_code(s))
        .await
        .expect("the server closes without waiting for the declared gibibyte")
}

#[actix_rt::test]
async fn an_oversize_frame_header_closes_a_native_client_with_1009() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    let mut s = upgrade(&env.url, &format!("/ws?token={token}"), None).await;
    let (op, welcome) = read_frame(&mut s).await.unwrap();
    assert_eq!(op, 0x1);
    assert!(String::from_utf8_lossy(&welcome).contains("welcome"));
    let (code, _) = gigabyte_frame(&mut s).await;
    assert_eq!(code, 1009, "Message Too Big");
    // The user's other clients and session are untouched.
    let mut c = env.client(&token).await;
    c.send(serde_json::json!({"type": "ping"})).await;
    assert_eq!(c.json().await["type"], "pong");
}

#[actix_rt::test]
async fn an_oversize_frame_header_closes_a_signalr_client_with_1009() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    let mut s = upgrade(&env.url, &format!("/signalr?access_token={token}"), None).await;
    s.write_all(&frame(0x1, b"{\"protocol\":\"json\",\"version\":1}\x1e"))
        .await
        .unwrap();
    let (_, hello) = read_frame(&mut s).await.unwrap();
    assert_eq!(hello, b"{}\x1e", "handshake accepted");
    let (code, texts) = gigabyte_frame(&mut s).await;
    assert_eq!(code, 1009, "Message Too Big");
    assert!(
        texts.iter().any(|t| t.contains("\"type\":7")
            && t.contains("message too large")
            && !t.contains("allowReconnect\":true")),
        "a Close record says why first: {texts:?}"
    );
}

#[actix_rt::test]
async fn a_fragmented_message_past_the_limit_is_refused() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    let mut s = upgrade(&env.url, &format!("/ws?token={token}"), None).await;
    read_frame(&mut s).await.unwrap();
    // Fragments each under the limit, together over it.
    let part = vec![b' '; 40 << 10];
    let mut first = header(0x1, false, part.len() as u64);
    first.extend_from_slice(&part);
    s.write_all(&first).await.unwrap();
    let mut more = header(0x0, false, part.len() as u64);
    more.extend_from_slice(&part);
    let _ = s.write_all(&more).await;
    let (code, _) = tokio::time::timeout(WAIT, close_code(&mut s))
        .await
        .unwrap();
    assert_eq!(code, 1008, "policy violation: the message is too large");
}
