//! DDP behaviour over real websockets (`docs/protocol/rocketchat.md` §2–§4).

mod common;

use common::{sim, Ddp, Rest, WAIT};
use rcsim::{RawFrame, Settings};
use serde_json::json;
use std::time::Duration;

#[actix_rt::test]
async fn connect_negotiates_versions_and_rejects_others() {
    let s = sim(Settings::default());
    let mut d = Ddp::open(&s).await;
    assert_eq!(d.json().await, json!({"server_id": "0"}));
    d.send(json!({"msg": "method", "method": "login", "params": [], "id": "1"}))
        .await;
    let e = d.json().await;
    assert_eq!(e["msg"], "error");
    assert_eq!(e["reason"], "Must connect first");
    assert_eq!(e["offendingMessage"]["method"], "login");
    d.send(json!({"msg": "connect", "version": "pre2", "support": ["pre2"]}))
        .await;
    assert_eq!(d.json().await["msg"], "connected");
    d.send(json!({"msg": "connect", "version": "1", "support": ["1"]}))
        .await;
    assert_eq!(d.json().await["reason"], "Already connected");

    // A version the server does not speak: failed with its best, then close 1000.
    let mut d = Ddp::open(&s).await;
    d.send(json!({"msg": "connect", "version": "2", "support": ["2"]}))
        .await;
    let (frames, code) = d.until_closed().await;
    assert!(
        frames.contains(&json!({"msg": "failed", "version": "1"})),
        "{frames:?}"
    );
    assert_eq!(code, Some(1000));

    // Client prefers pre1 first while asking for 1: failed with pre1.
    let mut d = Ddp::open(&s).await;
    d.send(json!({"msg": "connect", "version": "1", "support": ["pre1", "1"]}))
        .await;
    let (frames, _) = d.until_closed().await;
    assert!(
        frames.contains(&json!({"msg": "failed", "version": "pre1"})),
        "{frames:?}"
    );
}

#[actix_rt::test]
async fn parse_errors_bad_requests_and_ping_echo() {
    let s = sim(Settings::default());
    let mut d = Ddp::connected(&s).await;
    d.send_text("{not json").await;
    assert_eq!(
        d.json().await,
        json!({"msg": "error", "reason": "Parse error"})
    );
    d.send(json!({"hello": 1})).await;
    assert_eq!(
        d.json().await,
        json!({"msg": "error", "reason": "Bad request", "offendingMessage": {"hello": 1}})
    );
    d.send(json!({"msg": "ping", "id": "abc"})).await;
    assert_eq!(d.json().await, json!({"msg": "pong", "id": "abc"}));
    d.send(json!({"msg": "ping"})).await;
    assert_eq!(d.json().await, json!({"msg": "pong"}));
    d.send(json!({"msg": "method", "method": 7, "id": "1"}))
        .await;
    assert_eq!(d.json().await["reason"], "Malformed method invocation");
    d.send(json!({"msg": "sub", "id": "1", "name": "x", "params": {}}))
        .await;
    assert_eq!(d.json().await["reason"], "Malformed subscription");
}

#[actix_rt::test]
async fn server_heartbeat_pings_then_closes_a_silent_client() {
    let s = sim(Settings {
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_timeout: Duration::from_millis(200),
        ..Settings::default()
    });
    let mut d = Ddp::connected(&s).await;
    // Stay silent: the server pings (without an id), then closes with 1000.
    assert_eq!(d.json().await, json!({"msg": "ping"}));
    let (frames, code) = d.until_closed().await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(code, Some(1000));

    // A client that answers stays connected across several heartbeats.
    let mut d = Ddp::connected(&s).await;
    for _ in 0..3 {
        assert_eq!(d.json().await, json!({"msg": "ping"}));
        d.send(json!({"msg": "pong"})).await;
    }
    d.send(json!({"msg": "ping", "id": "x"})).await;
    assert_eq!(
        d.until(|v| v["msg"] == "pong").await,
        json!({"msg": "pong", "id": "x"})
    );
}

#[actix_rt::test]
async fn pre1_has_no_heartbeat() {
    let s = sim(Settings {
        heartbeat_interval: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_millis(100),
        send_server_id: false,
        ..Settings::default()
    });
    let mut d = Ddp::open(&s).await;
    d.send(json!({"msg": "connect", "version": "pre1", "support": ["pre1"]}))
        .await;
    assert_eq!(d.json().await["msg"], "connected");
    assert_eq!(d.quiet_for(Duration::from_millis(400)).await, None);
}

#[actix_rt::test]
async fn password_login_sends_added_updated_result() {
    let s = sim(Settings::default());
    let mut d = Ddp::connected(&s).await;
    let digest = rcsim::ids::sha256_hex("alice-pw");
    d.send(json!({"msg": "method", "method": "login", "id": "1",
        "params": [{"user": {"username": "alice"}, "password": {"digest": digest, "algorithm": "sha-256"}}]}))
    .await;
    let added = d.json().await;
    assert_eq!(added["msg"], "added");
    assert_eq!(added["collection"], "users");
    assert_eq!(added["fields"]["username"], "alice");
    assert!(added["fields"]["_updatedAt"]["$date"].is_i64());
    assert_eq!(d.json().await, json!({"msg": "updated", "methods": ["1"]}));
    let result = d.json().await;
    assert_eq!(result["msg"], "result");
    assert_eq!(result["result"]["id"], added["id"]);
    assert_eq!(result["result"]["type"], "password");
    assert_eq!(result["result"]["token"].as_str().unwrap().len(), 43);
    let expires = result["result"]["tokenExpires"]["$date"].as_i64().unwrap();
    let ninety_days = 90 * 86_400_000;
    assert!((expires - rcsim::ejson::now_ms() - ninety_days).abs() < 60_000);
    assert_eq!(s.ddp_connections("alice"), 1);

    // The token resumes on another socket and serves REST too.
    let token = result["result"]["token"].as_str().unwrap().to_string();
    let mut d2 = Ddp::connected(&s).await;
    let r = d2.call("login", json!([{"resume": token}])).await;
    assert_eq!(r["result"]["type"], "resume");
    assert_eq!(r["result"]["token"], token.as_str());
    assert_eq!(
        r["result"]["tokenExpires"],
        result["result"]["tokenExpires"]
    );
    let mut rest = Rest::new(&s);
    rest.auth = Some((added["id"].as_str().unwrap().into(), token));
    assert_eq!(rest.get("me").await.body["username"], "alice");
}

#[actix_rt::test]
async fn result_before_updated_when_configured() {
    let s = sim(Settings {
        updated_before_result: false,
        send_server_id: false,
        ..Settings::default()
    });
    let mut d = Ddp::connected(&s).await;
    d.send(json!({"msg": "method", "method": "login", "id": "1", "params": [{"user": {"username": "bob"}, "password": "bob-pw"}]}))
        .await;
    assert_eq!(d.json().await["msg"], "added");
    assert_eq!(d.json().await["msg"], "result");
    assert_eq!(d.json().await, json!({"msg": "updated", "methods": ["1"]}));
}

#[actix_rt::test]
async fn login_errors_are_meteor_errors() {
    let s = sim(Settings::default());
    let mut d = Ddp::connected(&s).await;
    let r = d.login_password("alice", "wrong").await;
    assert_eq!(
        r["error"],
        json!({"isClientSafe": true, "error": 403, "reason": "Incorrect password", "message": "Incorrect password [403]", "errorType": "Meteor.Error"})
    );
    let r = d.login_password("nobody", "x").await;
    assert_eq!(r["error"]["reason"], "User not found");
    let r = d.call("login", json!([{"resume": "not-a-token"}])).await;
    assert_eq!(r["error"]["error"], 403);
    assert_eq!(
        r["error"]["reason"],
        "You've been logged out by the server. Please log in again."
    );
    let mut d = Ddp::connected(&s).await;
    let r = d.call("login", json!([{"ldap": true}])).await;
    assert_eq!(
        r["error"]["reason"],
        "Unrecognized options for login request"
    );
    let r = d.call("login", json!(["x"])).await;
    assert_eq!(
        r["error"],
        json!({"isClientSafe": true, "error": 400, "reason": "Match failed", "message": "Match failed [400]", "errorType": "Meteor.Error"})
    );
}

#[actix_rt::test]
async fn sixth_login_on_one_connection_is_rate_limited() {
    let s = sim(Settings::default());
    let mut d = Ddp::connected(&s).await;
    for _ in 0..5 {
        assert!(d
            .login_password("alice", "alice-pw")
            .await
            .get("result")
            .is_some());
    }
    let r = d.login_password("alice", "alice-pw").await;
    assert_eq!(r["error"]["error"], "too-many-requests");
    assert!(r["error"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("Error, too many requests. Please slow down. You must wait"));
    assert!(r["error"]["details"]["timeToReset"].as_u64().unwrap() <= 10_000);
    // Another connection is not affected: one login per socket is unthrottled.
    let mut d2 = Ddp::connected(&s).await;
    assert!(d2
        .login_password("alice", "alice-pw")
        .await
        .get("result")
        .is_some());
}

#[actix_rt::test]
async fn email_two_factor_blocks_password_logins_until_the_code() {
    let s = sim(Settings::default());
    s.add_user("dave", "dave-pw", true).unwrap();
    let mut d = Ddp::connected(&s).await;
    let r = d.login_password("dave", "dave-pw").await;
    assert_eq!(r["error"]["error"], "totp-required");
    assert_eq!(r["error"]["details"]["method"], "email");
    assert_eq!(r["error"]["details"]["codeGenerated"], true);
    let code = s.email_code("dave").expect("a code was 'emailed'");
    let digest = rcsim::ids::sha256_hex("dave-pw");
    let r = d
        .call("login", json!([{"totp": {"login": {"user": {"username": "dave"}, "password": {"digest": digest, "algorithm": "sha-256"}}, "code": code}}]))
        .await;
    assert_eq!(r["result"]["type"], "password", "{r}");
}

#[actix_rt::test]
async fn unknown_method_404_then_updated() {
    let s = sim(Settings::default());
    let mut d = Ddp::connected(&s).await;
    d.send(json!({"msg": "method", "method": "nope", "params": [], "id": "9"}))
        .await;
    assert_eq!(
        d.json().await,
        json!({"msg": "result", "id": "9", "error": {"isClientSafe": true, "error": 404, "reason": "Method 'nope' not found", "message": "Method 'nope' not found [404]", "errorType": "Meteor.Error"}})
    );
    assert_eq!(d.json().await, json!({"msg": "updated", "methods": ["9"]}));
    // A method a later release removed is as unknown over DDP as over REST.
    s.update_settings(|s| s.removed_methods = vec!["rooms/get".into()]);
    d.send(json!({"msg": "method", "method": "rooms/get", "params": [], "id": "10"}))
        .await;
    let r = d.json().await;
    assert_eq!(r["error"]["reason"], "Method 'rooms/get' not found", "{r}");
    assert_eq!(d.json().await, json!({"msg": "updated", "methods": ["10"]}));
}

#[actix_rt::test]
async fn faults_drop_refuse_deaf_and_restart() {
    let s = sim(Settings {
        heartbeat_interval: Duration::from_millis(300),
        heartbeat_timeout: Duration::from_millis(300),
        ..Settings::default()
    });
    let mut d = Ddp::logged_in(&s, "alice", "alice-pw").await;
    assert_eq!(s.drop_ddp(Some("alice"), false), 1);
    assert_eq!(d.until_closed().await.1, Some(1000));
    let mut d = Ddp::logged_in(&s, "alice", "alice-pw").await;
    s.drop_ddp(None, true);
    assert_eq!(
        d.until_closed().await.1,
        None,
        "abrupt drop: no Close frame"
    );
    s.wait_for(WAIT, "sockets gone", |s| s.total_ddp_connections() == 0)
        .await
        .unwrap();

    s.refuse_connections(Duration::from_secs(60));
    let refused = awc::Client::new().ws(s.ws_url()).connect().await;
    assert!(refused.is_err());
    s.refuse_connections(Duration::ZERO);

    s.set_deaf(true);
    let mut d = Ddp::connected(&s).await;
    d.send(json!({"msg": "ping", "id": "1"})).await;
    assert_eq!(d.quiet_for(Duration::from_millis(100)).await, None);
    s.set_deaf(false);

    // Restart: sockets drop, the port refuses for a while, then serves the same data.
    let mut d = Ddp::logged_in(&s, "bob", "bob-pw").await;
    let rest = Rest::login(&s, "alice", "alice-pw").await;
    s.restart(Duration::from_millis(300)).unwrap();
    assert!(matches!(d.until_closed().await.1, None | Some(1000)));
    assert_eq!(
        rest.get("me").await.body["username"],
        "alice",
        "tokens survive a restart"
    );
    let mut d = Ddp::connected(&s).await;
    assert!(d
        .call("login", json!([{"resume": rest.token()}]))
        .await
        .get("result")
        .is_some());
}

#[actix_rt::test]
async fn oversize_fragmented_and_malformed_frames_reach_the_client() {
    let s = sim(Settings::default());
    let mut d = Ddp::logged_in(&s, "alice", "alice-pw").await;
    assert_eq!(s.send_frame("alice", RawFrame::Oversize(1 << 20)), 1);
    let big = d.until(|v| v["msg"] == "changed").await;
    assert!(big["fields"]["args"][0]["msg"].as_str().unwrap().len() >= 1 << 20);
    s.send_frame("alice", RawFrame::Text("not json".into()));
    s.send_frame("alice", RawFrame::Fragmented(3));
    // awc surfaces the raw continuation frames; check them directly.
    let mut parts = 0;
    loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut d_framed(&mut d))).await
        {
            Ok(Some(Ok(awc::ws::Frame::Text(t)))) => assert_eq!(&t[..], b"not json"),
            Ok(Some(Ok(awc::ws::Frame::Continuation(item)))) => {
                parts += 1;
                if matches!(item, actix_ws::Item::Last(_)) {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(parts, 3);
}

fn d_framed(
    d: &mut Ddp,
) -> &mut (impl futures_util::Stream<Item = Result<awc::ws::Frame, awc::error::WsProtocolError>> + Unpin)
{
    d.framed_mut()
}

#[actix_rt::test]
async fn delayed_results() {
    let s = sim(Settings::default());
    let mut d = Ddp::logged_in(&s, "alice", "alice-pw").await;
    s.set_delay(Duration::from_millis(300));
    let t = std::time::Instant::now();
    d.call("rooms/get", json!([])).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(d.backlog.iter().any(|v| v["msg"] == "updated"));
}

#[actix_rt::test]
async fn websocket_pings_do_not_keep_a_silent_ddp_client_alive() {
    let s = sim(Settings {
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_timeout: Duration::from_millis(200),
        send_server_id: false,
        ..Settings::default()
    });
    let mut d = Ddp::connected(&s).await;
    use futures_util::SinkExt;
    // Websocket-level pings only: Meteor's heartbeat never sees them.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut saw_ping = false;
    loop {
        d.framed_mut()
            .send(awc::ws::Message::Ping("x".into()))
            .await
            .unwrap();
        match tokio::time::timeout(
            Duration::from_millis(50),
            futures_util::StreamExt::next(d.framed_mut()),
        )
        .await
        {
            Ok(Some(Ok(awc::ws::Frame::Text(t)))) => {
                assert_eq!(&t[..], br#"{"msg":"ping"}"#);
                saw_ping = true;
            }
            Ok(Some(Ok(awc::ws::Frame::Close(c)))) => {
                assert!(saw_ping);
                assert_eq!(c.map(|c| u16::from(c.code)), Some(1000));
                break;
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            other => panic!("{other:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "never closed");
    }
}

#[actix_rt::test]
async fn rest_react() {
    let s = sim(Settings::permissive());
    let m = s.post_message("bob", "GENERAL", "hi").unwrap();
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    let r = alice
        .post(
            "chat.react",
            json!({"messageId": m["_id"], "emoji": "smile"}),
        )
        .await;
    assert_eq!(r.body, json!({"success": true}));
    let hist = alice.get("channels.history?roomId=GENERAL&count=1").await;
    assert_eq!(
        hist.body["messages"][0]["reactions"],
        json!({":smile:": {"usernames": ["alice"]}})
    );
    // A deleted message takes no reactions.
    let bob = Rest::login(&s, "bob", "bob-pw").await;
    bob.post(
        "chat.delete",
        json!({"roomId": "GENERAL", "msgId": m["_id"]}),
    )
    .await;
    let r = alice
        .post(
            "chat.react",
            json!({"messageId": m["_id"], "emoji": "smile"}),
        )
        .await;
    assert_eq!(r.body["errorType"], "error-not-allowed");
}
