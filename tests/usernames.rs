//! One username rule everywhere: Rocket.Chat's case-insensitive match, kept
//! in lower case; odd names and the admin or bot accounts are refused.

mod common;

use common::raw::http;
use common::start;
use imrelay::config::{JwtConfig, Secret};
use rcsim::{LoginPath, Settings};
use serde_json::json;

#[actix_rt::test]
async fn usernames_differing_only_in_case_are_one_user() {
    let env = start(Settings::default(), |_| {}).await;
    let created = env
        .api(
            "PUT",
            "/users/Dave",
            Some(json!({"email": "dave@example.com"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["username"], "dave", "kept in lower case");
    let again = env
        .api("PUT", "/users/dave", Some(json!({"name": "Dave D."})))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["rc_user_id"], created.body["rc_user_id"]);
    // Any spelling logs in, to one session, with no failed login counted.
    let a = env.api("POST", "/users/DAVE/login", None).await;
    let b = env.api("POST", "/users/dave/login", None).await;
    assert_eq!((a.status, b.status), (200, 200), "{} {}", a.body, b.body);
    assert_eq!(a.body["username"], "dave");
    assert_eq!(
        a.body["client_token"], b.body["client_token"],
        "one session"
    );
    assert_eq!(env.sim.failed_logins(), 0);
    assert_eq!(env.sim.logins(LoginPath::Ddp, "dave"), 1);
    let sessions = env.api("GET", "/sessions", None).await;
    assert_eq!(sessions.body["sessions"].as_array().unwrap().len(), 1);
}

#[actix_rt::test]
async fn odd_and_reserved_usernames_are_refused_before_rocket_chat_hears_of_them() {
    let env = start(Settings::default(), |c| {
        c.users.reserved.push("gpt.bot".into());
    })
    .await;
    let auth = format!("Authorization: Bearer {}", common::API_KEY);
    // Written raw: HTTP clients would normalise /users/.. away.
    for name in [".", "..", "-", ".hidden", "-x", "a%20b"] {
        let (status, body) = http(
            &env.url,
            &format!("POST /api/v1/users/{name}/login HTTP/1.1\r\n{auth}\r\nContent-Length: 0"),
            b"",
        )
        .await;
        assert!(
            status == 400 && body.contains("bad_username"),
            "{name}: {status} {body}"
        );
    }
    let calls = env.sim.calls().len();
    // The admin (super in these tests), rocket.cat and configured bots.
    for name in ["super", "SUPER", "rocket.cat", "GPT.bot"] {
        let r = env.api("POST", &format!("/users/{name}/login"), None).await;
        assert_eq!(
            r.error(),
            (403, Some("reserved_username")),
            "{name}: {}",
            r.body
        );
    }
    assert_eq!(env.sim.calls().len(), calls, "Rocket.Chat was never asked");
    assert_eq!(env.sim.failed_logins(), 0);
}

#[actix_rt::test]
async fn a_jwt_naming_the_admin_is_refused_without_a_login_attempt() {
    let secret = "backend-jwt-secret-0123456789";
    let env = start(Settings::default(), |c| {
        c.client.jwt = Some(JwtConfig {
            secret: Secret::new(secret),
            issuer: None,
            audience: None,
            username_claim: "sub".into(),
            leeway: std::time::Duration::ZERO,
        })
    })
    .await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    for sub in ["super", "Super"] {
        let token = imrelay::clients::jwt::sign(&json!({"sub": sub, "exp": exp}), secret);
        let (status, body) = http(
            &env.url,
            &format!("POST /signalr/negotiate?negotiateVersion=1 HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Length: 0"),
            b"",
        )
        .await;
        assert_eq!(status, 200, "negotiate answers errors in its body");
        assert!(body.contains("reserved_username"), "{sub}: {body}");
        let url = format!("{}/ws?token={token}", env.url.replacen("http", "ws", 1));
        match awc::Client::new().ws(url).connect().await {
            Err(awc::error::WsClientError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), 403),
            other => panic!("{sub}: {:?}", other.map(|_| "connected")),
        }
    }
    assert_eq!(
        env.sim.failed_logins(),
        0,
        "the admin's lockout count is untouched"
    );
}
