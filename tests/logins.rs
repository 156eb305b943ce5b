//! Logging users in against a server with a real server's defaults
//! (`docs/protocol/rocketchat.md` §9): REST limiter, 2FA on users.update, email 2FA.

mod common;

use common::{start, Env, WAIT};
use imrelay::config::LoginMethod;
use rcsim::{LoginPath, Settings};
use serde_json::json;
use std::time::Duration;

/// Syncs each user, then logs them all in concurrently; every login must succeed.
async fn sync_and_log_in_at_once(env: &Env, names: &[String]) {
    for n in names {
        env.sync(n).await;
    }
    let paths: Vec<String> = names.iter().map(|n| format!("/users/{n}/login")).collect();
    let results =
        futures_util::future::join_all(paths.iter().map(|p| env.api("POST", p, None))).await;
    for (n, r) in names.iter().zip(&results) {
        assert_eq!(r.status, 200, "{n}: {}", r.body);
    }
}

#[actix_rt::test]
async fn a_hundred_users_log_in_over_ddp_despite_the_rest_limiter() {
    let env = start(Settings::default(), |_| {}).await;
    let names: Vec<String> = (0..100).map(|i| format!("user{i}")).collect();
    // Admin calls bypass the limiter (the admin role has api-bypass-rate-limit).
    sync_and_log_in_at_once(&env, &names).await;
    assert_eq!(env.sim.total_logins(LoginPath::Ddp), 100);
    assert_eq!(
        env.sim.total_logins(LoginPath::Rest),
        1,
        "only the admin used REST /login"
    );
    env.sim
        .wait_for(WAIT, "100 sessions subscribed", |s| {
            names.iter().all(|n| s.ddp_subscriptions(n) == 6)
        })
        .await
        .unwrap();
    let s = env.api("GET", "/sessions", None).await;
    assert_eq!(s.body["sessions"].as_array().unwrap().len(), 100);
}

#[actix_rt::test]
async fn rest_logins_wait_for_the_limiter_reset_instead_of_hammering() {
    let settings = Settings {
        rest_rate_limit_window: Duration::from_secs(2),
        ..Settings::default()
    };
    let env = start(settings, |c| c.rocketchat.login_method = LoginMethod::Rest).await;
    let names: Vec<String> = (0..14).map(|i| format!("r{i}")).collect();
    sync_and_log_in_at_once(&env, &names).await;
    let login_calls: Vec<u16> = env
        .sim
        .calls()
        .iter()
        .filter(|c| c.route == "login")
        .map(|c| c.status)
        .collect();
    let throttled = login_calls.iter().filter(|s| **s == 429).count();
    // 10 per window including the admin's login: 14 users need two windows.
    // Each user waiting for a reset costs at most one 429 per window.
    assert!(throttled >= 1, "the limiter was hit: {login_calls:?}");
    // 9 user logins fit the first window; each of the other 5 may be
    // turned away once, then waits for the reset.
    assert!(throttled <= 5, "no hammering: {login_calls:?}");
    assert_eq!(login_calls.iter().filter(|s| **s == 200).count(), 15);
    env.sim
        .wait_for(WAIT, "sessions resumed over DDP", |s| {
            names.iter().all(|n| s.ddp_subscriptions(n) == 6)
        })
        .await
        .unwrap();
}

#[actix_rt::test]
async fn users_update_passes_the_two_factor_fallback() {
    let env = start(Settings::default(), |_| {}).await;
    assert_eq!(env.sync("alice").await["created"], true);
    let r = env
        .api(
            "PUT",
            "/users/alice",
            Some(json!({"name": "Alice Liddell", "email": "al@example.com"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["created"], false);
    let u = env.api("GET", "/users/alice", None).await;
    assert_eq!(u.body["name"], "Alice Liddell");
    // The update went through users.update, which demanded the code.
    assert!(env
        .sim
        .calls()
        .iter()
        .any(|c| c.route == "users.update" && c.status == 200));
}

#[actix_rt::test]
async fn a_verified_email_user_gets_a_clear_two_factor_error() {
    let env = start(Settings::default(), |_| {}).await;
    let cfg = imrelay::config::Config::for_rocketchat("http://x", ("a", "b"), common::API_KEY);
    let password = imrelay::rocketchat::passwords::password_for(&cfg.users, "vera", None);
    // A user someone else created with a verified email: email 2FA applies.
    env.sim.add_user("vera", &password, true).unwrap();
    let r = env.api("POST", "/users/vera/login", None).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "rc_two_factor_required");
    let m = r.body["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("verified:false")
            && m.contains("Accounts_TwoFactorAuthentication_By_Email_Auto_Opt_In"),
        "{m}"
    );
    // Users imrelay creates are unverified and log in fine.
    env.sync("uma").await;
    env.login("uma").await;
}

#[actix_rt::test]
async fn create_token_method_mints_tokens_as_the_admin() {
    let settings = Settings {
        create_tokens_secret: Some("mint-secret".into()),
        ..Settings::default()
    };
    let env = start(settings, |c| {
        c.rocketchat.login_method = LoginMethod::CreateToken;
        c.rocketchat.create_token_secret = Some(imrelay::config::Secret::new("mint-secret"));
    })
    .await;
    env.sync("alice").await;
    let r = env.login("alice").await;
    assert_eq!(env.sim.logins(LoginPath::CreateToken, "alice"), 1);
    assert_eq!(env.sim.logins(LoginPath::Rest, "alice"), 0);
    env.sim
        .wait_for(WAIT, "the session resumed with the minted token", |s| {
            s.ddp_subscriptions("alice") == 6
        })
        .await
        .unwrap();
    assert_eq!(r["rc_user_id"], env.sim.user_id("alice").unwrap().as_str());
}

#[actix_rt::test]
async fn a_wrong_password_is_a_clear_login_failure() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("alice").await;
    let r = env
        .api(
            "POST",
            "/users/alice/login",
            Some(json!({"password": "not-hers"})),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "rc_login_failed");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Incorrect password"));
    assert_eq!(
        env.sim.ddp_connections("alice"),
        0,
        "the failed session closed its socket"
    );
}
