//! REST behaviour over real HTTP (`docs/protocol/rocketchat.md` §1, §9).

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
async fn users_create_info_update_delete() {
    let s = sim(Settings::permissive());
    let admin = Rest::login(&s, "super", "123qwe").await;
    let created = admin
        .post("users.create", json!({"username": "zoe", "name": "Zoe", "email": "zoe@example.com", "password": "zoe-pw", "verified": false}))
        .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let user = &created.body["user"];
    assert_eq!(user["username"], "zoe");
    assert_eq!(
        user["emails"],
        json!([{"address": "zoe@example.com", "verified": false}])
    );
    assert_eq!(user["roles"], json!(["user"]));
    assert_eq!(user["type"], "user");
    assert!(user["createdAt"].as_str().unwrap().ends_with('Z'));
    let uid = user["_id"].as_str().unwrap().to_string();
    // joinDefaultChannels defaults to true.
    let zoe = Rest::login(&s, "zoe", "zoe-pw").await;
    let subs = zoe.get("subscriptions.get").await.body;
    assert!(subs["update"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["rid"] == "GENERAL"));

    let dup = admin
        .post(
            "users.create",
            json!({"username": "zoe", "name": "Z", "email": "z2@example.com", "password": "x"}),
        )
        .await;
    assert_eq!(dup.status, 400);
    assert_eq!(
        dup.body,
        json!({"success": false, "error": "zoe is already in use :( [error-field-unavailable]", "errorType": "error-field-unavailable",
               "details": {"method": "insertOrUpdateUser", "field": "zoe"}})
    );
    let extra = admin.post("users.create", json!({"username": "y", "name": "Y", "email": "y@x.io", "password": "x", "role": "admin"})).await;
    assert_eq!(extra.body["errorType"], "error-invalid-params");
    let missing = admin.post("users.create", json!({"username": "y"})).await;
    assert_eq!(missing.body["errorType"], "error-invalid-params");

    let info = admin.get(&format!("users.info?userId={uid}")).await;
    assert_eq!(info.body["user"]["name"], "Zoe");
    let by_name = admin.get("users.info?username=zoe").await;
    assert_eq!(by_name.body["user"]["_id"], uid.as_str());
    let none = admin.get("users.info?username=nobody").await;
    assert_eq!(
        none.body,
        json!({"success": false, "error": "User not found."})
    );

    let upd = admin
        .post(
            "users.update",
            json!({"userId": uid, "data": {"name": "Zoe Q"}}),
        )
        .await;
    assert_eq!(upd.body["user"]["name"], "Zoe Q");
    let del = admin.post("users.delete", json!({"userId": uid})).await;
    assert_eq!(del.body, json!({"success": true}));
    assert_eq!(zoe.get("me").await.status, 401);
}

#[actix_rt::test]
async fn admin_routes_answer_403_to_users() {
    let s = sim(Settings::permissive());
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    let bob = s.user_id("bob").unwrap();
    let forbidden = json!({"success": false, "error": "User does not have the permissions required for this action [error-unauthorized]"});
    for (route, body) in [
        (
            "users.create",
            json!({"username": "x", "name": "x", "email": "x@x.io", "password": "x"}),
        ),
        ("users.delete", json!({"userId": bob})),
        (
            "users.setActiveStatus",
            json!({"userId": bob, "activeStatus": false}),
        ),
        (
            "users.update",
            json!({"userId": bob, "data": {"name": "B"}}),
        ),
        ("users.logout", json!({"userId": bob})),
    ] {
        let r = alice.post(route, body).await;
        assert_eq!(r.status, 403, "{route}");
        assert_eq!(r.body, forbidden, "{route}");
    }
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
async fn messaging_history_and_sync() {
    let s = sim(Settings::permissive());
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    let bob = Rest::login(&s, "bob", "bob-pw").await;
    let dm = alice.post("im.create", json!({"username": "bob"})).await;
    assert_eq!(dm.status, 200, "{:?}", dm.body);
    let rid = dm.body["room"]["rid"].as_str().unwrap().to_string();
    assert_eq!(dm.body["room"]["_id"], rid.as_str());
    assert_eq!(dm.body["room"]["t"], "d");
    let p = alice
        .post(
            "chat.postMessage",
            json!({"channel": "@bob", "text": "one"}),
        )
        .await;
    assert_eq!(
        p.body["message"]["rid"],
        rid.as_str(),
        "@username posts into the DM"
    );
    assert_eq!(p.body["channel"], "@bob");
    let sent = bob
        .post(
            "chat.sendMessage",
            json!({"message": {"rid": rid, "msg": "two", "_id": "client-id-1"}}),
        )
        .await;
    assert_eq!(sent.body["message"]["_id"], "client-id-1");
    let g = alice
        .post(
            "chat.postMessage",
            json!({"channel": "#general", "text": "hello all"}),
        )
        .await;
    assert_eq!(g.body["message"]["rid"], "GENERAL");
    let hist = alice.get(&format!("im.history?roomId={rid}")).await;
    let msgs = hist.body["messages"].as_array().unwrap();
    assert_eq!(
        msgs.iter()
            .map(|m| m["msg"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["two", "one"]
    );
    assert_eq!(
        alice
            .get("channels.history?roomName=general&count=1")
            .await
            .body["messages"][0]["msg"],
        "hello all"
    );
    // Edit and delete show up in syncMessages.
    let edited = alice
        .post(
            "chat.update",
            json!({"roomId": rid, "msgId": p.body["message"]["_id"], "text": "one!"}),
        )
        .await;
    assert!(edited.body["message"]["editedAt"].is_string());
    let deleted = bob
        .post(
            "chat.delete",
            json!({"roomId": rid, "msgId": "client-id-1"}),
        )
        .await;
    assert_eq!(deleted.body["_id"], "client-id-1");
    let sync = alice
        .get(&format!(
            "chat.syncMessages?roomId={rid}&lastUpdate=2000-01-01T00:00:00.000Z"
        ))
        .await;
    assert_eq!(sync.body["result"]["updated"][0]["msg"], "one!");
    assert_eq!(sync.body["result"]["deleted"][0]["_id"], "client-id-1");
    // Unread counts: DM messages count, and subscriptions.read clears them.
    let subs = bob.get("subscriptions.get").await.body;
    let sub = subs["update"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["rid"] == rid.as_str())
        .unwrap()
        .clone();
    assert_eq!(sub["unread"], 1);
    assert_eq!(sub["name"], "alice");
    assert_eq!(
        bob.post("subscriptions.read", json!({"rid": rid}))
            .await
            .body,
        json!({"success": true})
    );
    let subs = bob
        .get("subscriptions.get?updatedSince=2000-01-01T00:00:00.000Z")
        .await
        .body;
    assert_eq!(
        subs["update"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["rid"] == rid.as_str())
            .unwrap()["unread"],
        0
    );
    // Not a member: no posting.
    let carol = Rest::login(&s, "carol", "carol-pw").await;
    let no = carol
        .post("chat.postMessage", json!({"roomId": rid, "text": "sneak"}))
        .await;
    assert_eq!(no.status, 400);
    assert_eq!(
        no.body,
        json!({"success": false, "error": "Not allowed [error-not-allowed]"})
    );
}

#[actix_rt::test]
async fn channels_and_groups_membership() {
    let s = sim(Settings::permissive());
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    let carol = s.user_id("carol").unwrap();
    let c = alice
        .post("channels.create", json!({"name": "town-square"}))
        .await;
    let rid = c.body["channel"]["_id"].as_str().unwrap().to_string();
    assert_eq!(c.body["channel"]["t"], "c");
    let dup = alice
        .post("channels.create", json!({"name": "town-square"}))
        .await;
    assert_eq!(dup.body["errorType"], "error-duplicate-channel-name");
    let inv = alice
        .post("channels.invite", json!({"roomId": rid, "userId": carol}))
        .await;
    assert_eq!(inv.body["channel"]["usersCount"], 2);
    let carol_rest = Rest::login(&s, "carol", "carol-pw").await;
    let rooms = carol_rest.get("rooms.get").await.body;
    assert!(rooms["update"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["_id"] == rid.as_str()));
    let left = carol_rest
        .post("channels.leave", json!({"roomId": rid}))
        .await;
    assert_eq!(left.status, 200, "{:?}", left.body);
    let hist = alice
        .get(&format!("channels.history?roomId={rid}"))
        .await
        .body;
    let kinds: Vec<&str> = hist["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["t"].as_str())
        .collect();
    assert_eq!(kinds, ["ul", "au"], "system messages for added and left");
}

#[actix_rt::test]
async fn injected_route_failures() {
    let s = sim(Settings::permissive());
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    s.fail_route("me", 500, Some(1));
    let r = alice.get("me").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.body,
        json!({"success": false, "error": "Internal server error"})
    );
    assert_eq!(
        alice.get("me").await.status,
        200,
        "only one failure was armed"
    );
    s.fail_route("me", 429, None);
    let r = alice.get("me").await;
    assert_eq!(r.status, 429);
    assert!(r.headers.get("x-ratelimit-reset").is_some());
    s.fail_route("me", 0, Some(0));
    assert_eq!(alice.get("me").await.status, 200);
    let unknown = alice.get("nope.nope").await;
    assert_eq!(unknown.status, 404);
    let bad_json = alice
        .call(
            "POST",
            "chat.postMessage",
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(bad_json.status, 400);
    assert!(s
        .calls()
        .iter()
        .any(|c| c.route == "me" && c.user_id.as_deref() == Some(alice.uid().as_str())));
    assert_eq!(s.route_calls("me"), 4);
}

#[actix_rt::test]
async fn api_info_reports_the_version() {
    let s = sim(Settings::default());
    let mut r = awc::Client::new()
        .get(format!("{}/api/info", s.url()))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, json!({"version": "7.10.0", "success": true}));
}

#[actix_rt::test]
async fn control_api_needs_the_secret_and_drives_faults() {
    let s = rcsim::Rcsim::start(rcsim::SimConfig {
        seed: Some(rcsim::Seed::Demo),
        control_secret: Some("sekrit".into()),
        ..Default::default()
    })
    .unwrap();
    let client = awc::Client::new();
    let url = |op: &str| format!("{}/_sim/{op}", s.url());
    let no = client
        .post(url("stats"))
        .send_json(&json!({}))
        .await
        .unwrap();
    assert_eq!(no.status().as_u16(), 401);
    let call = |op: &'static str, body: serde_json::Value| {
        let req = client
            .post(url(op))
            .insert_header(("x-sim-secret", "sekrit"));
        async move {
            let mut r = req.send_json(&body).await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().limit(1 << 20).await.unwrap(),
            )
        }
    };
    let (st, posted) = call(
        "post",
        json!({"from": "alice", "rid": "GENERAL", "text": "via control"}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(posted["message"]["msg"], "via control");
    let (_, made) = call("bulk-users", json!({"prefix": "load", "count": 3})).await;
    assert_eq!(made["users"].as_array().unwrap().len(), 3);
    let token = made["users"][0]["token"].as_str().unwrap().to_string();
    let mut d = common::Ddp::connected(&s).await;
    assert!(d
        .call("login", json!([{"resume": token}]))
        .await
        .get("result")
        .is_some());
    let (_, stats) = call("stats", json!({})).await;
    assert_eq!(stats["users"]["load0"]["ddp_connections"], 1);
    let (_, dropped) = call("drop", json!({"username": "load0"})).await;
    assert_eq!(dropped["dropped"], 1);
    assert_eq!(d.until_closed().await.0, Some(1000));
    call("fail", json!({"route": "me", "status": 503, "count": 1})).await;
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    assert_eq!(
        alice.get("me").await.body,
        json!({"success": false, "error": "Service Unavailable"})
    );
    // Raw frames and a forced logout, as the README lists them.
    let mut d = common::Ddp::connected(&s).await;
    let token = made["users"][1]["token"].as_str().unwrap().to_string();
    d.call("login", json!([{"resume": token}])).await;
    let (st, pushed) = call(
        "frame",
        json!({"username": "load1", "text": "{\"msg\":\"custom\"}"}),
    )
    .await;
    assert_eq!((st, &pushed["sockets"]), (200, &json!(1)));
    d.until(|v| v["msg"] == "custom").await;
    let (_, pushed) = call("frame", json!({"username": "load1", "oversize": 2048})).await;
    assert_eq!(pushed["sockets"], 1);
    let big = d.until(|v| v["msg"] == "changed").await;
    assert!(big.to_string().len() >= 2048);
    let (st, _) = call("frame", json!({"username": "load1"})).await;
    assert_eq!(st, 400, "what to push is required");
    let (st, _) = call("logout", json!({"username": "load1"})).await;
    assert_eq!(st, 200);
    assert_eq!(d.until_closed().await.0, Some(1000), "its tokens are gone");
    let (st, _) = call("nope", json!({})).await;
    assert_eq!(st, 404);
}

#[actix_rt::test]
async fn im_create_emits_inserted_and_mentions_notify() {
    let s = sim(Settings::permissive());
    let bob = s.user_id("bob").unwrap();
    let mut b = common::Ddp::logged_in(&s, "bob", "bob-pw").await;
    for ev in ["subscriptions-changed", "notification"] {
        b.sub("stream-notify-user", json!([format!("{bob}/{ev}"), false]))
            .await;
    }
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    let dm = alice.post("im.create", json!({"username": "bob"})).await;
    let ins = b
        .event(
            "stream-notify-user",
            &format!("{bob}/subscriptions-changed"),
        )
        .await;
    assert_eq!(ins[0], "inserted");
    assert_eq!(ins[1]["rid"], dm.body["room"]["rid"]);
    assert_eq!(ins[1]["t"], "d");
    // A mention in a channel notifies and counts as unread; a plain message does not count.
    alice
        .post(
            "chat.postMessage",
            json!({"roomId": "GENERAL", "text": "plain"}),
        )
        .await;
    let plain = b
        .event(
            "stream-notify-user",
            &format!("{bob}/subscriptions-changed"),
        )
        .await;
    assert_eq!(
        (plain[1]["unread"].clone(), plain[1]["alert"].clone()),
        (json!(0), json!(true))
    );
    alice
        .post(
            "chat.postMessage",
            json!({"roomId": "GENERAL", "text": "hey @bob"}),
        )
        .await;
    let n = b
        .event("stream-notify-user", &format!("{bob}/notification"))
        .await;
    assert_eq!(n[0]["title"], "general");
    assert_eq!(n[0]["text"], "alice: hey @bob");
    let counted = b
        .event(
            "stream-notify-user",
            &format!("{bob}/subscriptions-changed"),
        )
        .await;
    assert_eq!(counted[1]["unread"], 1);
    assert_eq!(counted[1]["userMentions"], 1);
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

#[actix_rt::test]
async fn settings_and_permissions_for_operators() {
    let s = sim(Settings::default());
    let admin = Rest::login(&s, "super", "123qwe").await;
    let r = admin.get("settings/API_Enable_Rate_Limiter").await;
    assert_eq!(
        r.body,
        json!({"_id": "API_Enable_Rate_Limiter", "value": true, "success": true})
    );
    assert_eq!(
        admin
            .get("settings/API_Enable_Rate_Limiter_Limit_Calls_Default")
            .await
            .body["value"],
        10
    );
    let p = admin.get("permissions.listAll").await;
    let bypass = p.body["update"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["_id"] == "api-bypass-rate-limit")
        .unwrap()
        .clone();
    assert_eq!(bypass["roles"], json!(["admin", "bot", "app"]));
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    assert_eq!(
        alice.get("settings/API_Enable_Rate_Limiter").await.status,
        403
    );
}

#[actix_rt::test]
async fn rooms_upload_posts_a_file_message() {
    let s = sim(Settings::permissive());
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\nContent-Type: text/plain\r\n\r\nhello file\r\n--XyZ\r\nContent-Disposition: form-data; name=\"msg\"\r\n\r\nsee attached\r\n--XyZ--\r\n";
    let mut r = awc::Client::new()
        .post(format!("{}rooms.upload/GENERAL", alice.base))
        .insert_header(("X-User-Id", alice.uid()))
        .insert_header(("X-Auth-Token", alice.token()))
        .content_type("multipart/form-data; boundary=XyZ")
        .send_body(body)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["message"]["msg"], "see attached");
    assert_eq!(v["message"]["file"]["name"], "notes.txt");
    assert_eq!(v["message"]["file"]["size"], 10);
    assert_eq!(v["message"]["attachments"][0]["title"], "notes.txt");
}
