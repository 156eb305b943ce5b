//! A client that cannot keep up is closed with 4008; the others are unaffected.
//! A client that stops answering pings is closed and forgotten. A client
//! that never reads at all is cut off, and does not hold up a graceful stop.

mod common;

use common::raw::{close_code, tcp_state, upgrade};
use common::{start, WAIT};
use rcsim::Settings;
use std::time::Duration;
use std::time::Instant;
use testkit::Seen;

#[actix_rt::test]
async fn a_slow_client_is_closed_with_4008_while_a_fast_one_keeps_up() {
    let env = start(Settings::default(), |c| {
        c.client.queue_limit = 64;
        // Longer than the flood takes: this client reads again afterwards.
        c.client.write_timeout = Duration::from_secs(60);
    })
    .await;
    env.sync("alice").await;
    env.sync("bob").await;
    env.login("bob").await;
    let token = env.login_token("alice").await;
    let mut fast = env.client(&token).await;
    let mut slow = upgrade(&env.url, &format!("/ws?token={token}"), Some(4096)).await;
    env.subscribed("alice").await;
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
    let (code, _) = tokio::time::timeout(WAIT, close_code(&mut slow))
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

/// Posts 16 KiB messages to alice until `done` holds (bounded).
async fn flood_until(env: &common::Env, rid: &str, what: &str, done: impl Fn() -> bool) {
    let text = "x".repeat(16 << 10);
    let start = Instant::now();
    for _ in 0..2_000 {
        if done() {
            return;
        }
        assert!(
            start.elapsed() < 3 * WAIT,
            "timed out flooding until {what}"
        );
        env.sim.post_message("bob", rid, &text).unwrap();
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("2,000 messages and still not {what}");
}

/// alice's client that never reads (a tiny receive window), subscribed, and
/// the DM room bob posts to.
async fn deaf_alice(env: &common::Env) -> (tokio::net::TcpStream, String) {
    env.sync("alice").await;
    env.sync("bob").await;
    env.login("bob").await;
    let token = env.login_token("alice").await;
    let deaf = upgrade(&env.url, &format!("/ws?token={token}"), Some(4096)).await;
    env.subscribed("alice").await;
    (deaf, env.sim.direct_room("bob", "alice").unwrap())
}

#[actix_rt::test]
async fn a_client_that_never_reads_is_cut_off() {
    let env = start(Settings::default(), |c| {
        c.client.write_timeout = Duration::from_secs(1)
    })
    .await;
    let (deaf, rid) = deaf_alice(&env).await;
    // Nothing reads, so the server's writes stop making progress; the
    // server then resets the connection (a FIN would queue behind the data).
    flood_until(&env, &rid, "the connection is reset", || {
        tcp_state(&deaf) != 1
    })
    .await;
    env.until(WAIT, "the connection to close", async || {
        tcp_state(&deaf) == 7
    })
    .await;
    let clients =
        async || env.api("GET", "/users/alice", None).await.body["session"]["clients"].clone();
    env.until(WAIT, "the client to be forgotten", async || {
        clients().await == 0
    })
    .await;
}

#[actix_rt::test]
async fn a_graceful_stop_does_not_wait_for_a_client_that_never_reads() {
    let mut env = start(Settings::default(), |c| {
        c.client.write_timeout = Duration::from_secs(4);
        c.server.shutdown_timeout = Duration::from_secs(60);
    })
    .await;
    let (deaf, rid) = deaf_alice(&env).await;
    // 6 MB for a client that reads nothing: more than the kernel buffers.
    let text = "x".repeat(16 << 10);
    for _ in 0..400 {
        env.sim.post_message("bob", &rid, &text).unwrap();
        actix_rt::task::yield_now().await;
    }
    let t = Instant::now();
    env.shutdown().await;
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the stop took {:?}: about write_timeout (4s) was expected, far under shutdown_timeout (60s)",
        t.elapsed()
    );
    assert_eq!(tcp_state(&deaf), 7, "the stalled connection was reset");
}
