//! Client credentials: JWTs from the backend (HS256) and ABP's enc_auth_token.

mod common;

use common::start;
use imrelay::config::{JwtConfig, Secret};
use rcsim::{LoginPath, Settings};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

const SECRET: &str = "backend-jwt-secret-0123456789";
const ABP_NAME: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn jwt_cfg(claim: &str) -> JwtConfig {
    JwtConfig {
        secret: Secret::new(SECRET),
        issuer: Some("crm".into()),
        audience: Some("chat".into()),
        username_claim: claim.into(),
        leeway: std::time::Duration::ZERO,
    }
}

async fn ws_status(env: &common::Env, query: &str) -> u16 {
    let url = format!("{}/ws{query}", env.url.replacen("http", "ws", 1));
    match awc::Client::new().ws(url).connect().await {
        Ok(_) => 101,
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => s.as_u16(),
        Err(e) => panic!("{e}"),
    }
}

#[actix_rt::test]
async fn a_jwt_logs_the_user_in_and_opens_the_socket() {
    let env = start(Settings::default(), |c| c.client.jwt = Some(jwt_cfg("sub"))).await;
    env.sync("alice").await;
    let token = imrelay::clients::jwt::sign(
        &json!({"sub": "alice", "exp": now() + 300, "iss": "crm", "aud": "chat"}),
        SECRET,
    );
    assert!(env.daemon().live("alice").await.is_none());
    // No login call: the JWT alone starts the session.
    let mut c = env.client(&token).await;
    assert_eq!(c.welcome["username"], "alice");
    assert_eq!(env.sim.logins(LoginPath::Ddp, "alice"), 1);
    env.subscribed("alice").await;
    c.send(json!({"type": "ping"})).await;
    // The SignalR negotiate accepts it too.
    let mut r = env
        .http
        .post(format!("{}/signalr/negotiate?negotiateVersion=1", env.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v.get("connectionToken").is_some(), "{v}");
}

#[actix_rt::test]
async fn bad_jwts_are_refused_with_reasons() {
    let env = start(Settings::default(), |c| c.client.jwt = Some(jwt_cfg("sub"))).await;
    env.sync("alice").await;
    let claims = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = json!({"sub": "alice", "exp": now() + 300, "iss": "crm", "aud": "chat"});
        f(&mut c);
        c
    };
    let expired = imrelay::clients::jwt::sign(&claims(&|c| c["exp"] = json!(now() - 1)), SECRET);
    let forged = imrelay::clients::jwt::sign(&claims(&|_| {}), "not-the-secret");
    let audience = imrelay::clients::jwt::sign(&claims(&|c| c["aud"] = json!("other")), SECRET);
    let no_claim =
        imrelay::clients::jwt::sign(&claims(&|c| c["sub"] = serde_json::Value::Null), SECRET);
    for (t, why) in [
        (expired, "expired"),
        (forged, "signature"),
        (audience, "audience"),
        (no_claim, "claim"),
    ] {
        assert_eq!(ws_status(&env, &format!("?token={t}")).await, 401, "{why}");
        let mut r = env
            .http
            .post(format!("{}/signalr/negotiate?negotiateVersion=1", env.url))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(why), "{why}: {v}");
    }
    assert!(
        env.daemon().live("alice").await.is_none(),
        "no session for a refused token"
    );
}

#[actix_rt::test]
async fn abp_username_claim_and_enc_auth_token() {
    let env = start(Settings::default(), |c| {
        c.client.jwt = Some(jwt_cfg(ABP_NAME));
        c.client.abp_passphrase = Some(Secret::new("gsKxGZ012HLL3MI5"));
    })
    .await;
    env.sync("bob").await;
    let token = imrelay::clients::jwt::sign(
        &json!({"sub": "42", ABP_NAME: "bob", "exp": now() + 300, "iss": "crm", "aud": "chat"}),
        SECRET,
    );
    let enc = imrelay::clients::abp::encrypt(&token, "gsKxGZ012HLL3MI5");
    let q = format!(
        "?enc_auth_token={}",
        percent_encoding::utf8_percent_encode(&enc, percent_encoding::NON_ALPHANUMERIC)
    );
    // ABP's script: no Authorization on negotiate, enc_auth_token in the query.
    let mut r = env
        .http
        .post(format!(
            "{}/signalr/negotiate{q}&negotiateVersion=1",
            env.url
        ))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v.get("connectionToken").is_some(), "{v}");
    assert_eq!(ws_status(&env, &q).await, 101);
    let other = imrelay::clients::abp::encrypt(&token, "another-passphrase");
    let wrong = percent_encoding::utf8_percent_encode(&other, percent_encoding::NON_ALPHANUMERIC);
    assert_eq!(
        ws_status(&env, &format!("?enc_auth_token={wrong}")).await,
        401
    );
}
