//! Chat actions as the user (and as the admin), and the front-end auth mode.

mod common;

use common::{start, WAIT};
use rcsim::{LoginPath, Settings};
use serde_json::{json, Value};

#[actix_rt::test]
async fn chat_actions_run_as_the_user() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    env.sync("bob").await;
    let mut b = env.client(&env.login_token("bob").await).await;
    env.subscribed("bob").await;
    // alice has no session yet: the call logs her in first.
    let r = env
        .api(
            "POST",
            "/users/alice/rc/chat.postMessage",
            Some(json!({"channel": "@bob", "text": "via the proxy"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["success"], true, "Rocket.Chat's body, unchanged");
    assert_eq!(r.body["message"]["msg"], "via the proxy");
    let (m, _) = b.event("getRoomMessageNotification").await;
    assert_eq!(m["data"]["u"]["username"], "alice");
    // Rocket.Chat saw alice's token, never the admin's.
    let alice = env.sim.user_id("alice").unwrap();
    let calls: Vec<_> = env
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.route == "chat.postMessage")
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].user_id.as_deref(), Some(alice.as_str()));
    // GET with a query passes through; Rocket.Chat's errors come back as they are.
    let h = env
        .api(
            "GET",
            "/users/alice/rc/subscriptions.get?updatedSince=2000-01-01T00:00:00.000Z",
            None,
        )
        .await;
    assert_eq!(h.status, 200);
    assert!(h.body["update"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "bob"));
    let e = env
        .api(
            "POST",
            "/users/alice/rc/chat.postMessage",
            Some(json!({"text": "nowhere"})),
        )
        .await;
    assert_eq!(e.status, 400);
    assert_eq!(
        e.body,
        json!({"success": false, "error": "Body param \"channel\" or \"roomId\" is required"})
    );
    let unknown = env.api("GET", "/users/alice/rc/nope.nope", None).await;
    assert_eq!(unknown.status, 404);
}

#[actix_rt::test]
async fn a_revoked_token_is_renewed_once_transparently() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    env.login("alice").await;
    let before = env.sim.logins(LoginPath::Ddp, "alice");
    // The token dies in Rocket.Chat behind imrelay's back.
    env.sim.remove_tokens("alice");
    let r = env.api("GET", "/users/alice/rc/me", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["username"], "alice");
    assert!(
        env.sim.logins(LoginPath::Ddp, "alice") > before,
        "a fresh login"
    );
    let statuses: Vec<u16> = env
        .sim
        .calls()
        .iter()
        .filter(|c| c.route == "me")
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, vec![401, 200], "exactly one retry");
}

#[actix_rt::test]
async fn uploads_429s_caps_and_the_admin_route() {
    let env = start(Settings::default(), |c| {
        c.server.max_proxy_body_bytes = 4096
    })
    .await;
    env.sync("alice").await;
    let body = "--b0\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nfile body\r\n--b0--\r\n";
    let mut r = env
        .http
        .post(format!(
            "{}/api/v1/users/alice/rc/rooms.upload/GENERAL",
            env.url
        ))
        .bearer_auth(common::API_KEY)
        .content_type("multipart/form-data; boundary=b0")
        .send_body(body)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"]["file"]["name"], "a.txt");
    let big = "x".repeat(8192);
    let r = env
        .http
        .post(format!(
            "{}/api/v1/users/alice/rc/chat.postMessage",
            env.url
        ))
        .bearer_auth(common::API_KEY)
        .send_body(big)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    env.sim.fail_route("chat.postMessage", 429, Some(1));
    let r = env
        .api(
            "POST",
            "/users/alice/rc/chat.postMessage",
            Some(json!({"roomId": "GENERAL", "text": "x"})),
        )
        .await;
    assert_eq!(r.status, 429);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("too many requests"),
        "Rocket.Chat's body: {}",
        r.body
    );
    assert!(r.headers.get("retry-after").is_some());
    assert!(r.headers.get("x-ratelimit-reset").is_some());
    let a = env
        .api("GET", "/admin/rc/users.info?username=alice", None)
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["user"]["username"], "alice");
    let admin = env.sim.user_id("super").unwrap();
    assert!(env
        .sim
        .calls()
        .iter()
        .any(|c| c.route == "users.info" && c.user_id.as_deref() == Some(admin.as_str())));
}

#[actix_rt::test]
async fn front_end_auth_mode_returns_a_working_rocket_chat_token() {
    let env = start(Settings::default(), |c| c.rocketchat.expose_rc_token = true).await;
    env.sync("alice").await;
    let login = env.login("alice").await;
    let ws = login["rc_ws_url"].as_str().unwrap().to_string();
    assert_eq!(ws, env.sim.ws_url());
    let token = login["rc_token"].as_str().unwrap().to_string();
    // A DDP client logs in to Rocket.Chat with it.
    let (_, mut d) = awc::Client::new().ws(ws).connect().await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    d.send(awc::ws::Message::Text(
        json!({"msg": "connect", "version": "1", "support": ["1"]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    d.send(awc::ws::Message::Text(
        json!({"msg": "method", "method": "login", "id": "1", "params": [{"resume": token}]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        let f = tokio::time::timeout(WAIT, d.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let awc::ws::Frame::Text(t) = f {
            let v: Value = serde_json::from_slice(&t).unwrap();
            if v["msg"] == "result" {
                assert_eq!(v["result"]["id"], login["rc_user_id"]);
                assert_eq!(v["result"]["type"], "resume");
                break;
            }
        }
    }
    // Off by default.
    let env2 = start(Settings::default(), |_| {}).await;
    env2.sync("bob").await;
    assert!(env2.login("bob").await.get("rc_token").is_none());
}

#[actix_rt::test]
async fn hostile_paths_and_caller_headers_stay_on_our_side() {
    use common::raw::http;
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    env.login("alice").await;
    let auth = format!("Authorization: Bearer {}", common::API_KEY);
    for path in [
        "..%2f..%2finfo",
        "%2F%2Fevil.example/x",
        "me%3Fx=1&y=2",
        "x%00y",
        "a%5c..%5cinfo",
    ] {
        for prefix in ["/api/v1/users/alice/rc/", "/api/v1/admin/rc/"] {
            let (status, body) = http(
                &env.url,
                &format!("GET {prefix}{path} HTTP/1.1\r\n{auth}"),
                b"",
            )
            .await;
            assert_eq!(status, 400, "{prefix}{path}: {body}");
            assert!(body.contains("\"bad_path\""), "{prefix}{path}: {body}");
        }
    }
    let before = env.sim.calls().len();
    // A caller cannot pick the address Rocket.Chat's limiter and login
    // blocking count, and Expect: 100-continue is answered here.
    let body = br#"{"channel":"@alice","text":"hi"}"#;
    let (status, answer) = http(
        &env.url,
        &format!(
            "POST /api/v1/users/alice/rc/chat.postMessage HTTP/1.1\r\n{auth}\r\nX-Real-IP: 203.0.113.9\r\nX-Forwarded-For: 203.0.113.9\r\nForwarded: for=203.0.113.9\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        ),
        body,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let calls = env.sim.calls();
    assert_eq!(
        calls.len(),
        before + 1,
        "only the valid call reached Rocket.Chat"
    );
    let post = calls.last().unwrap();
    assert_eq!(post.route, "chat.postMessage");
    assert_eq!(
        post.ip, "127.0.0.1",
        "imrelay's own address, not the caller's pick"
    );
}
