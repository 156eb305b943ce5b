//! Connections are bounded before they authenticate: per IP address and in
//! all, with the refusals counted in `/metrics`.

mod common;

use common::raw::{addr, connect};
use common::{start, WAIT};
use rcsim::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server closes the socket without a byte (EOF or a reset).
async fn refused(s: &mut tokio::net::TcpStream) -> bool {
    let _ = s
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut b = [0u8; 64];
    match tokio::time::timeout(WAIT, s.read(&mut b))
        .await
        .expect("an answer or a close")
    {
        Ok(0) | Err(_) => true,
        Ok(_) => false,
    }
}

#[actix_rt::test]
async fn connections_past_the_per_ip_bound_are_closed_and_counted() {
    let env = start(Settings::default(), |c| c.server.max_connections_per_ip = 4).await;
    let mut idle = vec![];
    for _ in 0..4 {
        idle.push(connect(&env.url, None).await);
    }
    // Let the server take them (an accept is not a round trip).
    // (The test's own HTTP client may hold one more, kept alive.)
    env.until(WAIT, "four connections open", async || {
        env.daemon().open_connections() >= 4
    })
    .await;
    let mut fifth = connect(&env.url, None).await;
    assert!(
        refused(&mut fifth).await,
        "the fifth from 127.0.0.1 is refused"
    );

    // Another address has its own allowance.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = sock.connect(addr(&env.url)).await.unwrap();
    assert!(!refused(&mut other).await, "127.0.0.2 is served");

    drop(idle);
    env.until(WAIT, "the idle connections to close", async || {
        env.daemon().open_connections() <= 1
    })
    .await;
    let m = env
        .call("GET", "/metrics", None, Some(common::API_KEY))
        .await;
    let text = m.body["raw"].as_str().unwrap_or_default().to_string();
    let per_ip: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("imrelay_connections_refused_total{reason=\"per_ip\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no per_ip count in {text}"));
    assert!(per_ip >= 1, "{text}");
    assert_eq!(
        env.call("GET", "/metrics", None, None).await.status,
        401,
        "the API key is required"
    );
}
