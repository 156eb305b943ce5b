//! The SignalR hub at the wire level (`docs/protocol/signalr.md` §9 checklist).
//! The official JS client is exercised in tests/js/signalr.test.js.

mod common;

use common::hub::{closed, negotiate, open, record, records, send, RS};
use common::{start, WAIT};
use rcsim::Settings;
use serde_json::json;

#[actix_rt::test]
async fn negotiate_versions_errors_and_cors() {
    let env = start(Settings::default(), |c| {
        c.server.allowed_origins =
            imrelay::config::Origins::List(vec!["https://app.example.com".into()])
    })
    .await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    let (s, v1, _) = negotiate(&env, "?negotiateVersion=1", Some(&token), None).await;
    assert_eq!(s, 200);
    assert_eq!(v1["negotiateVersion"], 1);
    assert_eq!(
        v1["connectionId"].as_str().unwrap().len(),
        22,
        "16 random bytes, base64url"
    );
    assert_eq!(v1["connectionToken"].as_str().unwrap().len(), 22);
    assert_ne!(v1["connectionId"], v1["connectionToken"]);
    assert_eq!(
        v1["availableTransports"],
        json!([{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}])
    );
    let (_, v0, _) = negotiate(&env, "", Some(&token), None).await;
    assert_eq!(v0["negotiateVersion"], 0);
    assert!(v0.get("connectionToken").is_none());
    let (_, v9, _) = negotiate(&env, "?negotiateversion=9", Some(&token), None).await;
    assert_eq!(
        v9["negotiateVersion"], 1,
        "clamped to the highest supported"
    );
    let (_, bad, _) = negotiate(&env, "?negotiateVersion=x", Some(&token), None).await;
    assert_eq!(
        bad["error"],
        "The client requested a non-integer protocol version."
    );
    let (s, nope, _) = negotiate(&env, "?negotiateVersion=1", Some("bogus"), None).await;
    assert_eq!(s, 200);
    assert!(
        nope["error"]
            .as_str()
            .unwrap()
            .starts_with("imrelay: unknown or expired client token"),
        "{nope}"
    );
    let (_, none, _) = negotiate(&env, "?negotiateVersion=1", None, None).await;
    assert!(none["error"]
        .as_str()
        .unwrap()
        .contains("missing_client_token"));
    // CORS: the exact origin echoed with credentials; others refused.
    let (_, _, h) = negotiate(
        &env,
        "?negotiateVersion=1",
        Some(&token),
        Some("https://app.example.com"),
    )
    .await;
    assert_eq!(
        h.get("access-control-allow-origin").unwrap(),
        "https://app.example.com"
    );
    assert_eq!(h.get("access-control-allow-credentials").unwrap(), "true");
    let pre = env
        .http
        .request(
            awc::http::Method::OPTIONS,
            format!("{}/signalr/negotiate?negotiateVersion=1", env.url),
        )
        .insert_header(("Origin", "https://app.example.com"))
        .insert_header(("Access-Control-Request-Method", "POST"))
        .insert_header((
            "Access-Control-Request-Headers",
            "authorization,x-requested-with,x-signalr-user-agent",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status().as_u16(), 204);
    assert_eq!(
        pre.headers().get("access-control-allow-headers").unwrap(),
        "authorization,x-requested-with,x-signalr-user-agent"
    );
    assert!(pre
        .headers()
        .get("access-control-allow-methods")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("POST"));
    let (s, _, _) = negotiate(
        &env,
        "?negotiateVersion=1",
        Some(&token),
        Some("https://evil.example.com"),
    )
    .await;
    assert_eq!(s, 403);
}

#[actix_rt::test]
async fn the_hub_speaks_the_json_protocol() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    env.sync("bob").await;
    env.login("bob").await;
    let token = env.login_token("alice").await;
    let (_, n, _) = negotiate(&env, "?negotiateVersion=1", Some(&token), None).await;
    let id = n["connectionToken"].as_str().unwrap().to_string();
    assert_eq!(open(&env, "?id=unknown").await.err(), Some(404));
    let mut ws = open(&env, &format!("?id={id}&access_token={token}"))
        .await
        .unwrap();
    assert_eq!(
        open(&env, &format!("?id={id}")).await.err(),
        Some(409),
        "a connection token is single-use"
    );
    send(
        &mut ws,
        &format!("{{\"protocol\":\"json\",\"version\":1}}{RS}"),
    )
    .await;
    assert_eq!(records(&mut ws).await, vec![json!({})]);
    // Ping, invocations (case-insensitive), fire-and-forget, all in one message.
    send(&mut ws, &format!(
        "{{\"type\":6}}{RS}{{\"target\":\"Register\",\"arguments\":[],\"invocationId\":\"0\",\"type\":1}}{RS}{{\"target\":\"fire\",\"arguments\":[1],\"type\":1}}{RS}{{\"target\":\"nope\",\"arguments\":[],\"invocationId\":\"1\",\"type\":1}}{RS}"
    ))
    .await;
    assert_eq!(
        record(&mut ws, |r| r["type"] == 3).await,
        json!({"type": 3, "invocationId": "0"})
    );
    assert_eq!(
        record(&mut ws, |r| r["type"] == 3).await,
        json!({"type": 3, "invocationId": "1", "error": "Unknown hub method 'nope'"})
    );
    env.subscribed("alice").await;
    env.rc_as(
        "bob",
        "chat.postMessage",
        json!({"channel": "@alice", "text": "hi over signalr"}),
    )
    .await;
    let sub = record(&mut ws, |r| {
        r["target"] == "getRoomSubscriptionChangedNotification"
    })
    .await;
    assert_eq!(sub["type"], 1);
    assert!(
        sub.get("invocationId").is_none(),
        "pushes are not client results"
    );
    assert_eq!(sub["arguments"][0]["method"], "insert");
    let msg = record(&mut ws, |r| r["target"] == "getRoomMessageNotification").await;
    assert_eq!(msg["arguments"][0]["msg"], "hi over signalr");
    assert_eq!(msg["arguments"][0]["u"]["username"], "bob");
    // An operator drain: Close with allowReconnect, then the socket closes.
    assert_eq!(
        env.api("POST", "/users/alice/reconnect", None).await.status,
        204
    );
    let c = record(&mut ws, |r| r["type"] == 7).await;
    assert_eq!(c["allowReconnect"], true);
    assert_eq!(closed(&mut ws).await, Some(1000));
}

#[actix_rt::test]
async fn handshake_errors_skip_negotiation_and_session_end() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    // skipNegotiation: the websocket without id, token in access_token.
    let mut ws = open(&env, &format!("?access_token={token}")).await.unwrap();
    send(
        &mut ws,
        &format!("{{\"protocol\":\"messagepack\",\"version\":1}}{RS}"),
    )
    .await;
    assert_eq!(
        records(&mut ws).await,
        vec![json!({"error": "The protocol 'messagepack' is not supported."})]
    );
    closed(&mut ws).await;
    assert_eq!(
        open(&env, "").await.err(),
        Some(401),
        "no token, no websocket"
    );
    let mut ws = open(&env, &format!("?access_token={token}")).await.unwrap();
    send(
        &mut ws,
        &format!("{{\"protocol\":\"json\",\"version\":1}}{RS}"),
    )
    .await;
    assert_eq!(records(&mut ws).await, vec![json!({})]);
    // A session that ends for good: Close without allowReconnect.
    assert_eq!(
        env.api("POST", "/users/alice/logout", None).await.status,
        204
    );
    let c = record(&mut ws, |r| r["type"] == 7).await;
    assert_eq!(c, json!({"type": 7, "error": "Session ended: logged_out"}));
}

#[actix_rt::test]
async fn shutdown_sends_close_with_allow_reconnect() {
    let mut env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    let mut ws = open(&env, &format!("?access_token={token}")).await.unwrap();
    send(
        &mut ws,
        &format!("{{\"protocol\":\"json\",\"version\":1}}{RS}"),
    )
    .await;
    records(&mut ws).await;
    env.shutdown().await;
    let c = record(&mut ws, |r| r["type"] == 7).await;
    assert_eq!(
        c,
        json!({"type": 7, "error": "Server is shutting down.", "allowReconnect": true})
    );
}

#[actix_rt::test]
async fn by_default_only_pages_from_imrelay_itself_may_connect() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    let token = env.login_token("alice").await;
    let same = env.url.clone();
    let (s, _, h) = negotiate(&env, "?negotiateVersion=1", Some(&token), Some(&same)).await;
    assert_eq!(s, 200);
    assert_eq!(h.get("access-control-allow-origin").unwrap(), same.as_str());
    let (s, _, h) = negotiate(
        &env,
        "?negotiateVersion=1",
        Some(&token),
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(
        s, 403,
        "no origins configured: cross-origin pages are refused"
    );
    assert!(h.get("access-control-allow-origin").is_none());
    let ws = |origin: &'static str| {
        let url = format!("{}/ws?token={token}", env.url.replacen("http", "ws", 1));
        async move {
            match awc::Client::new().ws(url).origin(origin).connect().await {
                Ok(_) => 101,
                Err(awc::error::WsClientError::InvalidResponseStatus(s)) => s.as_u16(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(ws("https://evil.example").await, 403);

    // "*" is the explicit way to allow any origin.
    let any = start(Settings::default(), |c| {
        c.server.allowed_origins = imrelay::config::Origins::Any
    })
    .await;
    any.sync("alice").await;
    let token = any.login_token("alice").await;
    let (s, _, h) = negotiate(
        &any,
        "?negotiateVersion=1",
        Some(&token),
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        h.get("access-control-allow-origin").unwrap(),
        "https://evil.example"
    );
}

#[actix_rt::test]
async fn a_connection_negotiated_before_a_session_ends_does_not_upgrade_after_it() {
    let env = start(Settings::default(), |_| {}).await;
    // Logout and delete say why; a session Rocket.Chat ended (force_logout) too.
    for (name, end, reason) in [
        ("alice", "logout", "logged_out"),
        ("bob", "delete", "deleted"),
        ("carol", "force_logout", "session_ended"),
    ] {
        env.sync(name).await;
        let token = env.login_token(name).await;
        let (_, v1, _) = negotiate(&env, "?negotiateVersion=1", Some(&token), None).await;
        let id = v1["connectionToken"].as_str().unwrap().to_string();
        match end {
            "logout" => {
                let r = env
                    .api("POST", &format!("/users/{name}/logout"), None)
                    .await;
                assert_eq!(r.status, 204);
                // Logged in again at once: the old id still does not upgrade.
                env.login(name).await;
            }
            "delete" => {
                let r = env.api("DELETE", &format!("/users/{name}"), None).await;
                assert_eq!(r.status, 204);
            }
            _ => {
                env.sim.force_logout(name);
                env.until(WAIT, "the session to end", async || {
                    env.daemon().live(name).await.is_none()
                })
                .await;
            }
        }
        let (status, body) = common::raw::http(
            &env.url,
            &format!("GET /signalr?id={id} HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"),
            b"",
        )
        .await;
        assert_eq!(status, 401, "{end}: {body}");
        assert!(body.contains(&format!("\"{reason}\"")), "{end}: {body}");
    }
}
