//! Bad input and a misbehaving Rocket.Chat: clear errors, never a panic or a lost session.

mod common;

use common::{start, API_KEY, WAIT};
use rcsim::{RawFrame, Settings};
use serde_json::json;
use testkit::Seen;

#[actix_rt::test]
async fn backend_api_rejects_bad_requests_clearly() {
    let env = start(Settings::default(), |c| c.server.max_body_bytes = 2048).await;
    let no_key = env.call("GET", "/api/v1/sessions", None, None).await;
    assert_eq!(no_key.status, 401);
    assert_eq!(no_key.body["error"]["code"], "bad_api_key");
    let wrong = env
        .call("GET", "/api/v1/sessions", None, Some("not-the-key-at-all"))
        .await;
    assert_eq!(wrong.status, 401);
    let prefix = env
        .call("GET", "/api/v1/sessions", None, Some(&API_KEY[..10]))
        .await;
    assert_eq!(prefix.status, 401, "a prefix of the key is not the key");
    // The key is checked before the body is read: no key, bad JSON, still 401.
    let unkeyed = env
        .http
        .put(format!("{}/api/v1/users/alice", env.url))
        .content_type("application/json")
        .send_body("{nope")
        .await
        .unwrap();
    assert_eq!(unkeyed.status().as_u16(), 401);

    let r = env
        .api(
            "PUT",
            "/users/bad%20name",
            Some(json!({"email": "x@example.com"})),
        )
        .await;
    assert_eq!(r.error(), (400, Some("bad_username")));
    let r = env
        .api("PUT", "/users/newbie", Some(json!({"name": "No Email"})))
        .await;
    assert_eq!(r.error(), (400, Some("missing_email")));
    let r = env
        .api(
            "PUT",
            "/users/newbie",
            Some(json!({"email": "n@example.com", "role": "admin"})),
        )
        .await;
    assert_eq!(r.error(), (400, Some("bad_json")), "{}", r.body);
    let raw = env
        .http
        .put(format!("{}/api/v1/users/newbie", env.url))
        .bearer_auth(API_KEY)
        .content_type("application/json")
        .send_body("{not json")
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let big = json!({"email": "n@example.com", "name": "x".repeat(4096)});
    let r = env.api("PUT", "/users/newbie", Some(big)).await;
    assert_eq!(r.error(), (413, Some("body_too_large")));
    let r = env
        .api("POST", "/users/alice/login", Some(json!({"pasword": "x"})))
        .await;
    assert_eq!(r.error(), (400, Some("bad_json")));
    // Every oversize body gets the JSON envelope, login's too.
    let big = json!({"password": "x".repeat(4096)});
    let r = env.api("POST", "/users/alice/login", Some(big)).await;
    assert_eq!(r.error(), (413, Some("body_too_large")), "{}", r.body);

    let r = env.api("GET", "/users/nobody", None).await;
    assert_eq!(r.error(), (404, Some("user_not_found")));
    assert_eq!(env.api("DELETE", "/users/nobody", None).await.status, 404);
    let r = env.api("POST", "/users/nobody/login", None).await;
    assert_eq!(r.error(), (404, Some("user_not_found")), "{}", r.body);
    // The demo's page and endpoints never exist in a configured daemon.
    assert_eq!(
        env.call("POST", "/demo/login/alice", None, None)
            .await
            .status,
        404
    );
    assert_eq!(env.call("GET", "/", None, None).await.status, 404);
    let r = env.api("GET", "/nope", None).await;
    assert_eq!(r.error(), (404, Some("not_found")));
}

#[actix_rt::test]
async fn client_upgrades_are_authenticated_before_the_upgrade() {
    let env = start(Settings::default(), |c| {
        c.server.allowed_origins =
            imrelay::config::Origins::List(vec!["https://app.example.com".into()])
    })
    .await;
    for path in ["/ws", "/ws?token=bogus"] {
        let mut r = env
            .http
            .get(format!("{}{path}", env.url))
            .insert_header(("Upgrade", "websocket"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(
            v["error"]["code"]
                .as_str()
                .unwrap()
                .ends_with("client_token"),
            "{v}"
        );
    }
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    let url = format!("{}/ws?token={token}", env.url.replacen("http", "ws", 1));
    let bad_origin = awc::Client::new()
        .ws(url.as_str())
        .origin("https://evil.example.com")
        .connect()
        .await;
    assert!(bad_origin.is_err(), "a foreign origin is refused");
    let (_, _ok) = awc::Client::new()
        .ws(url.as_str())
        .origin("https://app.example.com")
        .connect()
        .await
        .expect("allowed origin");
    // Garbage from a client gets an error frame; the socket stays.
    let mut c = env.client(&token).await;
    c.send_text("{nope").await;
    assert_eq!(c.json().await["type"], "error");
    c.send(json!({"type": "subscribe"})).await;
    assert_eq!(c.json().await["type"], "error");
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.json().await["type"], "pong");
}

#[actix_rt::test]
async fn malformed_oversize_and_fragmented_ddp_frames_never_break_a_session() {
    let env = start(Settings::default(), |c| {
        c.rocketchat.max_frame_bytes = 64 << 10
    })
    .await;
    env.sync("alice").await;
    let mut c = env.client(&env.login_token("alice").await).await;
    env.subscribed("alice").await;
    // Not JSON: logged and ignored.
    assert_eq!(
        env.sim
            .send_frame("alice", RawFrame::Text("this is not json".into())),
        1
    );
    // Fragmented: reassembled into a whole event (an ephemeral message).
    env.sim.send_frame("alice", RawFrame::Fragmented(4));
    let (e, _) = c.event("getEphemeralMessage").await;
    assert_eq!(e["data"]["_id"], "padding");
    // Oversize (1 MiB > 64 KiB): the connection is dropped and re-made.
    let logins = env.sim.logins(rcsim::LoginPath::Ddp, "alice");
    env.sim.send_frame("alice", RawFrame::Oversize(1 << 20));
    env.sim
        .wait_for(WAIT, "a fresh connection", |s| {
            s.logins(rcsim::LoginPath::Ddp, "alice") > logins && s.ddp_subscriptions("alice") == 6
        })
        .await
        .unwrap();
    env.sim.send_frame("alice", RawFrame::Fragmented(2));
    assert_eq!(
        c.event("getEphemeralMessage").await.0["data"]["_id"],
        "padding"
    );
    match c.quiet_for(std::time::Duration::from_millis(100)).await {
        None => {}
        Some(f) => assert!(!f.contains("sessionEnded"), "{f}"),
    }
}

#[actix_rt::test]
async fn rocket_chat_failures_map_to_clear_statuses() {
    let env = start(Settings::default(), |_| {}).await;
    env.sim.fail_route("users.info", 500, Some(1));
    let r = env
        .api(
            "PUT",
            "/users/alice",
            Some(json!({"email": "a@example.com"})),
        )
        .await;
    assert_eq!(r.error(), (502, Some("rc_error")), "{}", r.body);
    env.sim.fail_route("users.info", 429, Some(1));
    let r = env
        .api(
            "PUT",
            "/users/alice",
            Some(json!({"email": "a@example.com"})),
        )
        .await;
    assert_eq!(r.error(), (429, Some("rate_limited")));
    let retry: u64 = r
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (50..=60).contains(&retry),
        "Retry-After from X-RateLimit-Reset: {retry}"
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("api-bypass-rate-limit"),
        "the log-worthy fix is in the message"
    );
    // The admin token dies: one re-login, then success.
    assert_eq!(env.sim.remove_tokens("super"), 1);
    let r = env
        .api(
            "PUT",
            "/users/alice",
            Some(json!({"email": "a@example.com"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(env.sim.logins(rcsim::LoginPath::Rest, "super"), 2);
}

#[actix_rt::test]
async fn rocket_chat_gone_is_503() {
    let mut env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    let mut c = env.client(&env.login_token("alice").await).await;
    let sim = std::mem::replace(
        &mut env.sim,
        rcsim::Rcsim::start(rcsim::SimConfig::default()).unwrap(),
    );
    sim.stop();
    let r = env
        .api("PUT", "/users/bob", Some(json!({"email": "b@example.com"})))
        .await;
    assert_eq!(r.error(), (503, Some("rc_unreachable")), "{}", r.body);
    // Clients stay connected while the session retries.
    c.send(json!({"type": "ping"})).await;
    loop {
        match c.next().await {
            Seen::Json(v) if v["type"] == "pong" => break,
            Seen::Json(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// A body trickled a byte at a time is cut off at `server.body_timeout`
/// with a 408, on the backend API and on the proxy.
#[actix_rt::test]
async fn a_trickled_body_is_cut_off_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = start(Settings::default(), |c| {
        c.server.body_timeout = std::time::Duration::from_millis(500)
    })
    .await;
    env.sync("alice").await;
    for path in [
        "/api/v1/users/alice",
        "/api/v1/users/alice/rc/chat.postMessage",
    ] {
        let method = if path.ends_with("alice") {
            "PUT"
        } else {
            "POST"
        };
        let s = common::raw::connect(&env.url, None).await;
        let (mut rd, mut wr) = s.into_split();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        wr.write_all(head.as_bytes()).await.unwrap();
        // The slow peer: a byte every 50 ms, for at most 10 s.
        let trickle = tokio::spawn(async move {
            for _ in 0..200 {
                if wr.write_all(b"1\r\n{\r\n").await.is_err() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        });
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(WAIT, rd.read(&mut answer))
            .await
            .expect("the server answers before the trickle ends")
            .unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        assert!(text.contains("body_timeout"), "{path}: {text}");
        trickle.abort();
    }
}
