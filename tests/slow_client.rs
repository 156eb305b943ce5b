//! A client that cannot keep up is closed with 4008; the others are unaffected.
//! A client that stops answering pings is closed and forgotten.

mod common;

use common::{start, Seen, WAIT};
use rcsim::Settings;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A websocket client that never reads, with a tiny receive buffer so the
/// server's writes back up quickly. Returns the socket after the upgrade.
async fn stalled_client(base: &str, token: &str) -> tokio::net::TcpStream {
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let req = format!(
        "GET /ws?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // The response head, up to the blank line.
    let mut head = vec![];
    while !head.ends_with(b"\r\n\r\n") {
        head.push(s.read_u8().await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "upgraded: {}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// Reads raw websocket frames until a Close; returns its code.
async fn close_code(s: &mut tokio::net::TcpStream) -> u16 {
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.expect("a frame header");
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            len = u64::from(s.read_u16().await.unwrap());
        } else if len == 127 {
            len = s.read_u64().await.unwrap();
        }
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).await.unwrap();
        if h[0] & 0x0f == 0x8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[actix_rt::test]
async fn a_slow_client_is_closed_with_4008_while_a_fast_one_keeps_up() {
    let env = start(Settings::default(), |c| c.client.queue_limit = 64).await;
    env.sync("alice").await;
    env.sync("bob").await;
    env.login("bob").await;
    let token = env.login_token("alice").await;
    let mut fast = env.client(&token).await;
    let mut slow = stalled_client(&env.url, &token).await;
    env.sim
        .wait_for(WAIT, "subscriptions", |s| s.ddp_subscriptions("alice") == 6)
        .await
        .unwrap();
    let rid = env.sim.direct_room("bob", "alice").unwrap();
    let text = "x".repeat(16 << 10);
    let n = 300;
    let poster = async {
        for _ in 0..n {
            env.sim.post_message("bob", &rid, &text).unwrap();
            actix_rt::task::yield_now().await;
        }
    };
    let reader = async {
        let mut got = 0;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(30), fast.next())
                .await
                .expect("fast client stalled")
            {
                Seen::Json(v) if v["event"] == "getRoomMessageNotification" => got += 1,
                Seen::Json(_) => {}
                other => panic!("the fast client was closed: {other:?}"),
            }
        }
        got
    };
    let ((), got) = futures_util::join!(poster, reader);
    assert_eq!(got, n, "the fast client got every message");
    // The slow one now reads: its backlog, then the 4008 close.
    let code = tokio::time::timeout(WAIT, close_code(&mut slow))
        .await
        .expect("a close frame");
    assert_eq!(code, 4008);
}

#[actix_rt::test]
async fn a_client_that_stops_answering_pings_is_dropped_and_forgotten() {
    let env = start(Settings::default(), |c| {
        c.client.heartbeat_interval = Duration::from_millis(200);
        c.client.heartbeat_timeout = Duration::from_secs(1);
    })
    .await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    // Connected and welcomed, then deaf: nothing reads, so no pongs go back.
    let mut deaf = env.client(&token).await;
    let clients =
        async || env.api("GET", "/users/alice", None).await.body["session"]["clients"].clone();
    assert_eq!(
        clients().await,
        1,
        "registered while the heartbeat is fresh"
    );
    env.until(WAIT, "the deaf client to be forgotten", async || {
        clients().await == 0
    })
    .await;
    assert_eq!(
        deaf.until_closed().await.1,
        Some(1001),
        "closed as going away"
    );
    // The user's session outlives its clients.
    let u = env.api("GET", "/users/alice", None).await;
    assert!(u.body["session"].is_object(), "{}", u.body);
}
