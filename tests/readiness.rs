//! `/readyz` says whether imrelay can serve (Rocket.Chat's REST and DDP
//! answer, the admin is logged in) and why not; a login does not pass a
//! cached token off as success while Rocket.Chat is down; and a login can
//! re-create a user Rocket.Chat lost.

mod common;

use common::{start, WAIT};
use imrelay::config::LoginMethod;
use rcsim::Settings;
use serde_json::{json, Value};
use std::time::Duration;

async fn readyz(env: &common::Env) -> (u16, Value) {
    let r = env.call("GET", "/readyz", None, None).await;
    (r.status, r.body)
}

fn fast_probe(c: &mut imrelay::config::Config) {
    c.rocketchat.health_interval = Duration::from_millis(100);
    c.rocketchat.request_timeout = Duration::from_millis(500);
}

#[actix_rt::test]
async fn readyz_follows_rocket_chat_rest_and_ddp_and_says_why() {
    let env = start(Settings::default(), fast_probe).await;
    assert_eq!(readyz(&env).await.0, 200);

    env.sim.refuse_connections(Duration::from_secs(3600));
    env.until(WAIT, "not ready while DDP refuses", async || {
        readyz(&env).await.0 == 503
    })
    .await;
    let (_, body) = readyz(&env).await;
    assert!(body["reason"].as_str().unwrap().contains("DDP"), "{body}");
    env.sim.refuse_connections(Duration::ZERO);
    env.until(WAIT, "ready again", async || readyz(&env).await.0 == 200)
        .await;

    env.sim.set_deaf(true);
    env.until(WAIT, "not ready while DDP is deaf", async || {
        readyz(&env).await.0 == 503
    })
    .await;
    env.sim.set_deaf(false);
    env.until(WAIT, "ready again", async || readyz(&env).await.0 == 200)
        .await;

    env.sim.fail_route("me", 500, None);
    env.until(WAIT, "not ready while REST fails", async || {
        readyz(&env).await.0 == 503
    })
    .await;
    let (_, body) = readyz(&env).await;
    assert!(body["reason"].as_str().unwrap().contains("REST"), "{body}");
    env.sim.fail_route("me", 500, Some(0));
    env.until(WAIT, "ready again", async || readyz(&env).await.0 == 200)
        .await;
}

#[actix_rt::test]
async fn with_rocket_chat_gone_readyz_and_a_cached_login_say_so() {
    let mut env = start(Settings::default(), fast_probe).await;
    env.sync("alice").await;
    env.login("alice").await;
    let sim = std::mem::replace(
        &mut env.sim,
        rcsim::Rcsim::start(rcsim::SimConfig::default()).unwrap(),
    );
    sim.stop();
    env.until(WAIT, "not ready", async || readyz(&env).await.0 == 503)
        .await;
    let (_, body) = readyz(&env).await;
    assert!(body["reason"].as_str().unwrap().contains("REST"), "{body}");
    let r = env.api("POST", "/users/alice/login", None).await;
    assert_eq!(r.error(), (503, Some("not_ready")), "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reconnects"),
        "{}",
        r.body
    );
}

/// Rocket.Chat's admin credentials on rcsim, through its REST API.
async fn rc_admin(env: &common::Env) -> (String, String) {
    let mut r = env
        .http
        .post(format!("{}/api/v1/login", env.sim.url()))
        .send_json(&json!({"user": "super", "password": "123qwe"}))
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    (
        v["data"]["userId"].as_str().unwrap().to_string(),
        v["data"]["authToken"].as_str().unwrap().to_string(),
    )
}

#[actix_rt::test]
async fn a_login_re_creates_a_user_rocket_chat_lost() {
    for method in [LoginMethod::Ddp, LoginMethod::Rest] {
        re_create_after_loss(method).await;
    }
}

/// Rocket.Chat answers an unknown user differently by login method (DDP
/// "User not found", REST a failed login): both are recognised.
async fn re_create_after_loss(method: LoginMethod) {
    let env = start(Settings::default(), |c| c.rocketchat.login_method = method).await;
    let first = env.sync("alice").await;
    let mut c = env.client(&env.login_token("alice").await).await;
    // Rocket.Chat loses alice (restored without its data): her session ends.
    let (uid, token) = rc_admin(&env).await;
    let mut r = env
        .http
        .post(format!("{}/api/v1/users.delete", env.sim.url()))
        .insert_header(("X-User-Id", uid))
        .insert_header(("X-Auth-Token", token))
        .send_json(&json!({"userId": first["rc_user_id"]}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.body().await);
    let (frames, _) = c.until_closed().await;
    assert!(
        frames.iter().any(|f| f["type"] == "sessionEnded"),
        "{frames:?}"
    );

    let r = env.api("POST", "/users/alice/login", None).await;
    assert_eq!(r.error(), (404, Some("user_not_found")), "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("email"),
        "{}",
        r.body
    );
    let r = env
        .api(
            "POST",
            "/users/alice/login",
            Some(json!({"email": "alice@example.com", "name": "Alice"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(
        r.body["rc_user_id"], first["rc_user_id"],
        "a new Rocket.Chat user"
    );
    assert_eq!(
        env.sim.user_id("alice").as_deref(),
        r.body["rc_user_id"].as_str()
    );
}
