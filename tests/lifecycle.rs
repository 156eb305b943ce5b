//! How sessions start, change and end, against rcsim's real behaviour.

mod common;

use common::{start, API_KEY, WAIT};
use rcsim::{LoginPath, Rcsim, Settings, SimConfig};
use serde_json::json;
use std::net::TcpListener;
use std::time::Duration;
use testkit::Seen;

/// The `sessionEnded` frame and the close after it.
async fn expect_ended(c: &mut common::Client, reason: &str) {
    let (frames, code) = c.until_closed().await;
    let ended = frames
        .iter()
        .find(|v| v["type"] == "sessionEnded")
        .unwrap_or_else(|| panic!("no sessionEnded in {frames:?}"));
    assert_eq!(ended["reason"], reason);
    assert_eq!(code, Some(1000));
}

#[actix_rt::test]
async fn an_idle_session_expires_and_its_ddp_socket_closes() {
    let env = start(Settings::default(), |c| {
        c.session.idle_ttl = Duration::from_millis(800);
        c.session.clients_keep_alive = false;
    })
    .await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    let mut c = env.client(&token).await;
    assert_eq!(env.sim.ddp_connections("alice"), 1);
    expect_ended(&mut c, "expired").await;
    env.sim
        .wait_for(Duration::from_secs(1), "the DDP socket closed", |s| {
            s.ddp_connections("alice") == 0
        })
        .await
        .unwrap();
    // The client token died with the session.
    assert!(env.raw_client(&token).await.is_err());
    assert!(env.api("GET", "/sessions", None).await.body["sessions"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[actix_rt::test]
async fn connected_clients_keep_sessions_alive_on_every_registry_shard() {
    let env = start(Settings::default(), |c| {
        c.session.idle_ttl = Duration::from_millis(400)
    })
    .await;
    // Enough users that every registry shard owns some: each shard sweeps
    // the shared cache, and must leave other shards' users alone.
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let mut clients = vec![];
    for u in users {
        env.sync(u).await;
        let token = env.login_token(u).await;
        clients.push(env.client(&token).await);
    }
    // Three TTLs with clients connected: no end (absence can only be waited out).
    for c in &mut clients {
        assert_eq!(c.quiet_for(Duration::from_millis(1200) / 6).await, None);
    }
    let listed = env.api("GET", "/sessions", None).await.body["sessions"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(listed, users.len(), "every user's session is still listed");
    for u in users {
        assert_eq!(env.sim.ddp_connections(u), 1, "{u}");
    }
    drop(clients);
    env.sim
        .wait_for(WAIT, "every session expired after its clients left", |s| {
            users.iter().all(|u| s.ddp_connections(u) == 0)
        })
        .await
        .unwrap();
}

#[actix_rt::test]
async fn a_renewed_login_replaces_the_session_and_clients_keep_receiving() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    env.sync("bob").await;
    env.login("bob").await;
    let first = env.login("alice").await;
    let mut c = env.client(first["client_token"].as_str().unwrap()).await;
    let gen1 = env.daemon().live("alice").await.unwrap().generation;
    let r = env
        .api("POST", "/users/alice/login", Some(json!({"renew": true})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["client_token"], first["client_token"],
        "clients survive a new generation"
    );
    assert!(env.daemon().live("alice").await.unwrap().generation > gen1);
    env.sim
        .wait_for(WAIT, "one DDP socket and one token left", |s| {
            s.logins(LoginPath::Ddp, "alice") == 2
                && s.ddp_connections("alice") == 1
                && s.token_count("alice") == 1
                && s.ddp_subscriptions("alice") == 6
        })
        .await
        .unwrap();
    env.rc_as(
        "bob",
        "chat.postMessage",
        json!({"channel": "@alice", "text": "after the change"}),
    )
    .await;
    let (msg, skipped) = c.event("getRoomMessageNotification").await;
    assert_eq!(msg["data"]["msg"], "after the change");
    assert!(
        skipped.iter().all(|v| v["type"] != "sessionEnded"),
        "{skipped:?}"
    );
    // Exactly once.
    while let Some(f) = c.quiet_for(Duration::from_millis(300)).await {
        assert!(
            !f.contains("after the change") || !f.contains("getRoomMessageNotification"),
            "a duplicate: {f}"
        );
    }
}

#[actix_rt::test]
async fn a_revoked_token_ends_the_session_after_resume_403() {
    let env = start(Settings::default(), |c| {
        c.session.reconnect_min = Duration::from_millis(50)
    })
    .await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    let mut c = env.client(&token).await;
    // users.logout in Rocket.Chat: the socket closes with no frame, resume gets 403.
    assert_eq!(env.sim.remove_tokens("alice"), 1);
    expect_ended(&mut c, "revoked").await;
    assert_eq!(env.sim.ddp_connections("alice"), 0);
    assert!(env.daemon().live("alice").await.is_none());
    // A new login starts over.
    let again = env.login("alice").await;
    assert_ne!(again["client_token"].as_str().unwrap(), token);
}

#[actix_rt::test]
async fn force_logout_ends_the_session() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    let mut c = env.client(&token).await;
    env.subscribed("alice").await;
    env.sim.force_logout("alice");
    expect_ended(&mut c, "revoked").await;
}

#[actix_rt::test]
async fn sessions_survive_a_rocket_chat_restart() {
    let env = start(Settings::default(), |c| {
        c.session.reconnect_min = Duration::from_millis(50);
        c.session.reconnect_max = Duration::from_millis(400);
    })
    .await;
    env.sync("alice").await;
    env.sync("bob").await;
    env.login("bob").await;
    let mut c = env.client(&env.login_token("alice").await).await;
    env.subscribed("alice").await;
    // Reconnected means: resumed (one more DDP login) and resubscribed.
    let resumed = |s: &Rcsim, user: &str, logins: u64| {
        s.logins(LoginPath::Ddp, user) > logins && s.ddp_subscriptions(user) == 6
    };
    let (a0, b0) = (
        env.sim.logins(LoginPath::Ddp, "alice"),
        env.sim.logins(LoginPath::Ddp, "bob"),
    );
    env.sim.restart(Duration::from_millis(300)).unwrap();
    env.sim
        .wait_for(WAIT, "alice resubscribed", |s| {
            resumed(s, "alice", a0) && s.ddp_connections("alice") == 1
        })
        .await
        .unwrap();
    env.sim
        .wait_for(WAIT, "bob resubscribed", |s| resumed(s, "bob", b0))
        .await
        .unwrap();
    env.rc_as(
        "bob",
        "chat.postMessage",
        json!({"channel": "@alice", "text": "still there?"}),
    )
    .await;
    let (msg, skipped) = c.event("getRoomMessageNotification").await;
    assert_eq!(msg["data"]["msg"], "still there?");
    assert!(skipped.iter().all(|v| v["type"] != "sessionEnded"));
    // An abrupt drop (no Close frame) is survived too.
    let a1 = env.sim.logins(LoginPath::Ddp, "alice");
    env.sim.drop_ddp(Some("alice"), true);
    env.sim
        .wait_for(WAIT, "alice back", |s| resumed(s, "alice", a1))
        .await
        .unwrap();
    env.rc_as(
        "bob",
        "chat.postMessage",
        json!({"channel": "@alice", "text": "and now?"}),
    )
    .await;
    assert_eq!(
        c.event("getRoomMessageNotification").await.0["data"]["msg"],
        "and now?"
    );
}

#[actix_rt::test]
async fn rocket_chat_down_at_start_then_ready_when_it_appears() {
    let _ = env_logger::builder().is_test(true).try_init();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = imrelay::config::Config::for_rocketchat(
        &format!("http://{port}"),
        ("super", "123qwe"),
        API_KEY,
    );
    let daemon = imrelay::Daemon::start(cfg, TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
    let env = common::Env {
        sim: Rcsim::start(SimConfig::default()).unwrap(),
        daemon: Some(daemon),
        http: awc::Client::new(),
        url: String::new(),
    };
    let url = env.daemon().url();
    let get = |path: &'static str| {
        let (http, url) = (env.http.clone(), url.clone());
        async move {
            http.get(format!("{url}{path}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    assert_eq!(get("/healthz").await, 200);
    assert_eq!(get("/readyz").await, 503);
    // A backend call meanwhile gets a clear 503.
    let r = env
        .http
        .post(format!("{url}/api/v1/users/alice/login"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let sim = Rcsim::start_on(TcpListener::bind(port).unwrap(), SimConfig::default()).unwrap();
    env.until(
        Duration::from_secs(15),
        "ready after Rocket.Chat appeared",
        async || get("/readyz").await == 200,
    )
    .await;
    assert_eq!(sim.logins(LoginPath::Rest, "super"), 1);
}

#[actix_rt::test]
async fn logout_and_delete_end_sessions_with_their_reasons() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    env.sync("bob").await;
    let mut a = env.client(&env.login_token("alice").await).await;
    let mut b = env.client(&env.login_token("bob").await).await;
    let r = env.api("POST", "/users/alice/logout", None).await;
    assert_eq!(r.status, 204);
    expect_ended(&mut a, "logged_out").await;
    env.sim
        .wait_for(WAIT, "alice's token removed in Rocket.Chat", |s| {
            s.token_count("alice") == 0 && s.ddp_connections("alice") == 0
        })
        .await
        .unwrap();
    assert_eq!(
        env.api("POST", "/users/alice/logout", None).await.status,
        204,
        "idempotent"
    );
    let r = env.api("DELETE", "/users/bob", None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    expect_ended(&mut b, "deleted").await;
    assert!(env.sim.user_id("bob").is_none());
    let r = env.api("GET", "/users/bob", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error"]["code"], "user_not_found");
}

#[actix_rt::test]
async fn a_logout_during_a_login_answers_the_login_with_login_interrupted() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    // The DDP login answer is held back long enough to log out meanwhile.
    env.sim.set_delay(Duration::from_secs(2));
    let login = env.api("POST", "/users/alice/login", None);
    let logout = async {
        env.sim
            .wait_for(WAIT, "alice's session to connect", |s| {
                s.total_ddp_connections() == 1
            })
            .await
            .unwrap();
        env.api("POST", "/users/alice/logout", None).await
    };
    let (login, logout) = futures_util::join!(login, logout);
    assert_eq!(logout.status, 204, "{}", logout.body);
    assert_eq!(
        login.error(),
        (409, Some("login_interrupted")),
        "{}",
        login.body
    );
}

#[actix_rt::test]
async fn shutdown_closes_clients_with_1001_and_logs_the_admin_out() {
    let mut env = start(Settings::default(), |c| {
        c.server.shutdown_timeout = Duration::from_secs(30)
    })
    .await;
    env.sync("alice").await;
    let mut c = env.client(&env.login_token("alice").await).await;
    assert_eq!(env.sim.token_count("super"), 1);
    let t = std::time::Instant::now();
    env.shutdown().await;
    // An idle keep-alive connection (the test's own HTTP client holds one)
    // is let go when its keep-alive (5 s) runs out.
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "far under server.shutdown_timeout (30s): took {:?}",
        t.elapsed()
    );
    match c.next().await {
        Seen::Close(code) => assert_eq!(code, Some(1001)),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    assert_eq!(env.sim.token_count("super"), 0, "the admin logged out");
    env.sim
        .wait_for(WAIT, "sessions closed", |s| s.total_ddp_connections() == 0)
        .await
        .unwrap();
}

#[actix_rt::test]
async fn a_session_that_cannot_speak_to_rocket_chat_ends_as_failed_not_revoked() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    let mut c = env.client(&env.login_token("alice").await).await;
    env.subscribed("alice").await;
    // Rocket.Chat refuses the DDP version: the token was never revoked.
    let pushed = env.sim.send_frame(
        "alice",
        rcsim::RawFrame::Text(r#"{"msg":"failed","version":"pre9"}"#.into()),
    );
    assert_eq!(pushed, 1);
    expect_ended(&mut c, "failed").await;
}
