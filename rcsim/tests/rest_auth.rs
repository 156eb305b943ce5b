//! REST logins and their limits over real HTTP: body forms, failures,
//! the rate limiter, blocked users and IPs, two-factor, tokens
//! (`docs/protocol/rocketchat.md` §1, §9).

mod common;

use common::{sim, Rest};
use rcsim::{CreateTokenProfile, LoginPath, Settings};
use serde_json::json;

#[actix_rt::test]
async fn login_accepts_every_body_form() {
    let s = sim(Settings::permissive());
    let r = Rest::new(&s);
    for body in [
        json!({"user": "alice", "password": "alice-pw"}),
        json!({"username": "alice", "password": "alice-pw"}),
        json!({"user": "alice@example.com", "password": "alice-pw"}),
        json!({"email": "alice@example.com", "password": "alice-pw"}),
        json!({"user": "alice", "password": {"hashed": rcsim::ids::sha256_hex("alice-pw")}}),
    ] {
        let resp = r.post("login", body.clone()).await;
        assert_eq!(resp.status, 200, "{body}: {:?}", resp.body);
        assert_eq!(resp.body["status"], "success");
        assert_eq!(resp.body["success"], true);
        assert_eq!(resp.body["data"]["me"]["username"], "alice");
        assert_eq!(resp.body["data"]["authToken"].as_str().unwrap().len(), 43);
    }
    // An empty body is no login at all.
    let resp = r.call("POST", "login", None, &[]).await;
    assert_eq!(resp.status, 401);
    assert_eq!(
        resp.body["message"],
        "Unrecognized options for login request"
    );
    // Form-encoded.
    let client = awc::Client::new();
    let mut form = client
        .post(format!("{}login", r.base))
        .send_form(&[("user", "bob"), ("password", "bob-pw")])
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 200);
    let body: serde_json::Value = form.json().await.unwrap();
    // Resume returns the same token.
    let token = body["data"]["authToken"].as_str().unwrap();
    let resumed = r.post("login", json!({"resume": token})).await;
    assert_eq!(resumed.body["data"]["authToken"], token);
    assert_eq!(s.logins(LoginPath::Rest, "alice"), 5);
}

#[actix_rt::test]
async fn login_failures_have_the_legacy_bodies() {
    let s = sim(Settings::permissive());
    let r = Rest::new(&s);
    let wrong = r
        .post("login", json!({"user": "alice", "password": "nope"}))
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.body,
        json!({"success": false, "error": 403, "status": "error", "message": "Incorrect password"})
    );
    let unknown = r
        .post("login", json!({"user": "zed", "password": "x"}))
        .await;
    assert_eq!(
        unknown.body,
        json!({"success": false, "error": "Unauthorized", "status": "error", "message": "Unauthorized"})
    );
    let gone = r.post("login", json!({"resume": "abc"})).await;
    assert_eq!(
        gone.body,
        json!({"success": false, "error": 403, "status": "error", "message": "You've been logged out by the server. Please log in again."})
    );
    let no_auth = r.get("me").await;
    assert_eq!(no_auth.status, 401);
    assert_eq!(
        no_auth.body,
        json!({"success": false, "error": "You must be logged in to do this.", "status": "error", "message": "You must be logged in to do this."})
    );
    assert_eq!(no_auth.headers.get("cache-control").unwrap(), "no-store");
    assert_eq!(no_auth.headers.get("pragma").unwrap(), "no-cache");
}

#[actix_rt::test]
async fn me_has_get_user_info_shape() {
    let s = sim(Settings::permissive());
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    let me = alice.get("me").await.body;
    assert_eq!(me["success"], true);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["avatarUrl"], format!("{}/avatar/alice", s.url()));
    assert!(me["_updatedAt"].as_str().unwrap().ends_with('Z'));
    assert!(me.get("email").is_none(), "no verified email, no `email`");
}

#[actix_rt::test]
async fn rate_limiter_throttles_logins_per_ip_with_real_headers() {
    let s = sim(Settings::default());
    let r = Rest::new(&s);
    let mut last = None;
    for i in 1..=10 {
        let resp = r
            .post("login", json!({"user": "alice", "password": "alice-pw"}))
            .await;
        assert_eq!(resp.status, 200, "call {i}");
        assert_eq!(resp.headers.get("x-ratelimit-limit").unwrap(), "10");
        assert_eq!(
            resp.headers
                .get("x-ratelimit-remaining")
                .unwrap()
                .to_str()
                .unwrap(),
            (10 - i).to_string()
        );
        last = Some(resp);
    }
    let reset: i64 = last
        .unwrap()
        .headers
        .get("x-ratelimit-reset")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        reset > rcsim::ejson::now_ms() + 50_000,
        "reset is epoch ms, a minute out"
    );
    let blocked = r
        .post("login", json!({"user": "alice", "password": "alice-pw"}))
        .await;
    assert_eq!(blocked.status, 429);
    let msg = blocked.body["error"].as_str().unwrap();
    assert!(
        msg.starts_with("Error, too many requests. Please slow down. You must wait "),
        "{msg}"
    );
    assert!(msg.ends_with(" seconds before trying this endpoint again. [error-too-many-requests]"));
    assert_eq!(blocked.body["success"], false);
    // The admin is exempt on authenticated routes, never on /login.
    let admin = r
        .post("login", json!({"user": "super", "password": "123qwe"}))
        .await;
    assert_eq!(admin.status, 429, "login is never exempt");
    // Another IP (X-Real-IP wins over the socket address) has its own budget.
    let other = r
        .call(
            "POST",
            "login",
            Some(json!({"user": "super", "password": "123qwe"})),
            &[("X-Real-IP", "10.0.0.9")],
        )
        .await;
    assert_eq!(other.status, 200);
    let mut admin = Rest::new(&s);
    admin.auth = Some((
        other.body["data"]["userId"].as_str().unwrap().into(),
        other.body["data"]["authToken"].as_str().unwrap().into(),
    ));
    for _ in 0..15 {
        let me = admin.get("me").await;
        assert_eq!(me.status, 200);
        assert!(
            me.headers.get("x-ratelimit-limit").is_none(),
            "bypassed routes carry no limiter headers"
        );
    }
}

#[actix_rt::test]
async fn users_authenticated_calls_share_the_ip_budget_until_granted_bypass() {
    let s = sim(Settings::default());
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    for _ in 0..10 {
        assert_eq!(alice.get("me").await.status, 200);
    }
    assert_eq!(alice.get("me").await.status, 429);
    s.grant("api-bypass-rate-limit", "user");
    assert_eq!(alice.get("me").await.status, 200);
}

#[actix_rt::test]
async fn failed_logins_block_the_user_after_ten() {
    let s = sim(Settings {
        rest_rate_limiter: false,
        ..Settings::default()
    });
    let r = Rest::new(&s);
    for _ in 0..10 {
        assert_eq!(
            r.post("login", json!({"user": "bob", "password": "bad"}))
                .await
                .body["message"],
            "Incorrect password"
        );
    }
    let blocked = r
        .post("login", json!({"user": "bob", "password": "bob-pw"}))
        .await;
    assert_eq!(blocked.status, 401);
    assert_eq!(
        blocked.body,
        json!({"success": false, "error": "error-login-blocked-for-user", "status": "error",
               "details": {"function": "Accounts.validateLoginAttempt"}, "message": "Login has been temporarily blocked For User"})
    );
    // Others from the same IP still log in (the IP threshold is 50).
    assert_eq!(
        r.post("login", json!({"user": "alice", "password": "alice-pw"}))
            .await
            .status,
        200
    );
}

#[actix_rt::test]
async fn users_update_demands_the_two_factor_password_fallback() {
    let s = sim(Settings::default());
    let admin = Rest::login(&s, "super", "123qwe").await;
    let bob = s.user_id("bob").unwrap();
    let body = json!({"userId": bob, "data": {"name": "Robert"}});
    let r = admin.post("users.update", body.clone()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        json!({"success": false, "error": "TOTP Required [totp-required]", "errorType": "totp-required",
               "details": {"method": "password", "codeGenerated": false, "availableMethods": []}})
    );
    let wrong = admin
        .call(
            "POST",
            "users.update",
            Some(body.clone()),
            &[("x-2fa-code", "00")],
        )
        .await;
    assert_eq!(wrong.body["errorType"], "totp-invalid");
    let code = rcsim::ids::sha256_hex("123qwe");
    let ok = admin
        .call(
            "POST",
            "users.update",
            Some(body.clone()),
            &[("x-2fa-code", code.as_str()), ("x-2fa-method", "password")],
        )
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["user"]["name"], "Robert");
    // Remembered on that token for a while.
    assert_eq!(admin.post("users.update", body).await.status, 200);
}

#[actix_rt::test]
async fn verified_email_means_email_two_factor_on_rest_login() {
    let s = sim(Settings::default());
    let admin = Rest::login(&s, "super", "123qwe").await;
    let r = admin
        .post("users.create", json!({"username": "vera", "name": "Vera", "email": "vera@example.com", "password": "vera-pw", "verified": true}))
        .await;
    assert_eq!(r.status, 200);
    let login = Rest::new(&s)
        .post("login", json!({"user": "vera", "password": "vera-pw"}))
        .await;
    assert_eq!(login.status, 401);
    assert_eq!(
        login.body,
        json!({"success": false, "error": "totp-required", "status": "error",
               "details": {"method": "email", "codeGenerated": true, "emailOrUsername": "vera", "availableMethods": ["email"]},
               "message": "TOTP Required"})
    );
    let code = s.email_code("vera").unwrap();
    let ok = Rest::new(&s)
        .post(
            "login",
            json!({"user": "vera", "password": "vera-pw", "code": code}),
        )
        .await;
    assert_eq!(ok.status, 200);
    // An unverified user is not affected.
    let r = admin
        .post("users.create", json!({"username": "uma", "name": "Uma", "email": "uma@example.com", "password": "uma-pw", "verified": false}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        Rest::new(&s)
            .post("login", json!({"user": "uma", "password": "uma-pw"}))
            .await
            .status,
        200
    );
}

#[actix_rt::test]
async fn create_token_follows_the_7x_and_8x_profiles() {
    let s = sim(Settings::permissive());
    let admin = Rest::login(&s, "super", "123qwe").await;
    let bob = s.user_id("bob").unwrap();
    let not_authorized = json!({"success": false, "error": "Not authorized [error-not-authorized]", "errorType": "error-not-authorized"});
    // 8.x with no secret configured: every call fails.
    assert_eq!(
        admin
            .post("users.createToken", json!({"userId": bob, "secret": "s"}))
            .await
            .body,
        not_authorized
    );
    s.update_settings(|st| st.create_tokens_secret = Some("s3cret".into()));
    assert_eq!(
        admin
            .post("users.createToken", json!({"userId": bob, "secret": "bad"}))
            .await
            .body,
        not_authorized
    );
    assert_eq!(
        admin
            .post(
                "users.createToken",
                json!({"username": "bob", "secret": "s3cret"})
            )
            .await
            .body["errorType"],
        "error-invalid-params"
    );
    let ok = admin
        .post(
            "users.createToken",
            json!({"userId": bob, "secret": "s3cret"}),
        )
        .await;
    assert_eq!(ok.body["data"]["userId"], bob.as_str());
    let mut as_bob = Rest::new(&s);
    as_bob.auth = Some((
        bob.clone(),
        ok.body["data"]["authToken"].as_str().unwrap().into(),
    ));
    assert_eq!(as_bob.get("me").await.body["username"], "bob");
    // A user minting for someone else needs user-generate-access-token.
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    assert_eq!(
        alice
            .post(
                "users.createToken",
                json!({"userId": bob, "secret": "s3cret"})
            )
            .await
            .body,
        not_authorized
    );
    // 7.x: {username} allowed when CREATE_TOKENS_FOR_USERS is set.
    s.update_settings(|st| st.create_token_profile = CreateTokenProfile::V7);
    assert_eq!(
        admin
            .post("users.createToken", json!({"username": "bob"}))
            .await
            .body,
        not_authorized
    );
    s.update_settings(|st| st.create_tokens_for_users = true);
    let ok = admin
        .post("users.createToken", json!({"username": "bob"}))
        .await;
    assert_eq!(ok.body["success"], true);
}

#[actix_rt::test]
async fn failed_logins_block_the_ip_after_fifty() {
    let s = sim(Settings {
        rest_rate_limiter: false,
        ..Settings::default()
    });
    let r = Rest::new(&s);
    for i in 0..50 {
        // Unknown users count against the IP, not against any user.
        let resp = r
            .post(
                "login",
                json!({"user": format!("ghost{i}"), "password": "x"}),
            )
            .await;
        assert_eq!(resp.body["message"], "Unauthorized");
    }
    let blocked = r
        .post("login", json!({"user": "alice", "password": "alice-pw"}))
        .await;
    assert_eq!(blocked.body["error"], "error-login-blocked-for-ip");
    assert_eq!(
        blocked.body["message"],
        "Login has been temporarily blocked For IP"
    );
    let elsewhere = r
        .call(
            "POST",
            "login",
            Some(json!({"user": "alice", "password": "alice-pw"})),
            &[("X-Real-IP", "10.1.1.1")],
        )
        .await;
    assert_eq!(elsewhere.status, 200);
}
