//! REST behaviour over real HTTP (`docs/protocol/rocketchat.md` §1, §9).

mod common;

use common::{sim, Rest};
use rcsim::Settings;
use serde_json::json;

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
    assert_eq!(d.until_closed().await.1, Some(1000));
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
    assert_eq!(d.until_closed().await.1, Some(1000), "its tokens are gone");
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
