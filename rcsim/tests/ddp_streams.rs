//! DDP subscriptions and what streams over them, over real websockets:
//! fan-out, rooms, reactions, typing, and the sockets a removed token
//! closes (`docs/protocol/rocketchat.md` §3–§4).

mod common;

use common::{sim, Ddp, Rest};
use rcsim::Settings;
use serde_json::json;
use std::time::Duration;

#[actix_rt::test]
async fn subscriptions_accept_all_param_forms_and_check_permissions() {
    let s = sim(Settings::default());
    let uid = s.user_id("alice").unwrap();
    let bob = s.user_id("bob").unwrap();
    let mut d = Ddp::connected(&s).await;
    // Before login a user stream is not allowed.
    let r = d
        .sub(
            "stream-notify-user",
            json!([format!("{uid}/message"), false]),
        )
        .await;
    assert_eq!(
        r["error"],
        json!({"isClientSafe": true, "error": "not-allowed", "message": "[not-allowed]", "errorType": "Meteor.Error"})
    );
    d.login_password("alice", "alice-pw").await;
    assert_eq!(
        d.sub("stream-notify-user", json!([format!("{uid}/message")]))
            .await["msg"],
        "ready"
    );
    assert_eq!(
        d.sub(
            "stream-notify-user",
            json!([format!("{uid}/notification"), false])
        )
        .await["msg"],
        "ready"
    );
    assert_eq!(
        d.sub(
            "stream-notify-user",
            json!([format!("{uid}/rooms-changed"), {"useCollection": false, "args": [null]}])
        )
        .await["msg"],
        "ready"
    );
    // Another user's stream: not allowed.
    assert_eq!(
        d.sub(
            "stream-notify-user",
            json!([format!("{bob}/message"), false])
        )
        .await["error"]["error"],
        "not-allowed"
    );
    // useCollection: the fake document first, then ready.
    let id = d.id();
    d.send(json!({"msg": "sub", "id": id, "name": "stream-room-messages", "params": ["__my_messages__", true]})).await;
    assert_eq!(
        d.json().await,
        json!({"msg": "added", "collection": "stream-room-messages", "id": "id", "fields": {"eventName": "__my_messages__"}})
    );
    assert_eq!(d.json().await, json!({"msg": "ready", "subs": [id]}));
    // Unknown publication, empty event name, null options.
    let r = d.sub("stream-nope", json!(["x"])).await;
    assert_eq!(r["error"]["error"], 404);
    assert_eq!(r["error"]["reason"], "Subscription 'stream-nope' not found");
    assert_eq!(
        d.sub("stream-notify-user", json!([""])).await["error"]["error"],
        "invalid-event-name"
    );
    assert_eq!(
        d.sub("stream-notify-user", json!([format!("{uid}/x"), null]))
            .await["error"]["error"],
        500
    );
    assert_eq!(
        d.sub("meteor.loginServiceConfiguration", json!([])).await["msg"],
        "ready"
    );
    // A room the user is not in (private group of alice and bob, asked by carol).
    let mut c = Ddp::logged_in(&s, "carol", "carol-pw").await;
    let eng = s
        .create_room(rcsim::RoomType::Group, "secret", "alice", &["bob"])
        .unwrap();
    assert_eq!(
        c.sub("stream-room-messages", json!([eng, false])).await["error"]["error"],
        "not-allowed"
    );
    // unsub always answers nosub, known id or not.
    d.send(json!({"msg": "unsub", "id": "999"})).await;
    assert_eq!(
        d.until(|v| v["msg"] == "nosub" && v["id"] == "999").await,
        json!({"msg": "nosub", "id": "999"})
    );
}

#[actix_rt::test]
async fn a_dm_fans_out_exactly_as_rocket_chat_does() {
    let s = sim(Settings::default());
    let alice = s.user_id("alice").unwrap();
    let bob = s.user_id("bob").unwrap();
    let rid = s.direct_room("alice", "bob").unwrap();
    let mut a = Ddp::logged_in(&s, "alice", "alice-pw").await;
    for ev in ["subscriptions-changed", "rooms-changed", "notification"] {
        assert_eq!(
            a.sub(
                "stream-notify-user",
                json!([format!("{alice}/{ev}"), false])
            )
            .await["msg"],
            "ready"
        );
    }
    assert_eq!(
        a.sub("stream-room-messages", json!(["__my_messages__", false]))
            .await["msg"],
        "ready"
    );
    assert_eq!(
        a.sub("stream-room-messages", json!([rid, false])).await["msg"],
        "ready"
    );
    // bob posts over REST.
    let rest = Rest::login(&s, "bob", "bob-pw").await;
    let resp = rest
        .post(
            "chat.postMessage",
            json!({"roomId": rid, "text": "hi alice"}),
        )
        .await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert!(resp.body["ts"].is_i64());
    assert!(
        resp.body["message"]["ts"].is_string(),
        "REST dates are ISO strings"
    );

    let msg = &a.event("stream-room-messages", &rid).await[0];
    assert_eq!(msg["msg"], "hi alice");
    assert_eq!(msg["u"]["username"], "bob");
    assert!(msg["ts"]["$date"].is_i64(), "DDP dates are EJSON");
    let mine = a.event("stream-room-messages", "__my_messages__").await;
    assert_eq!(mine[0]["_id"], msg["_id"]);
    assert_eq!(mine[1], json!({"roomParticipant": true, "roomType": "d"}));
    let sub = a
        .event(
            "stream-notify-user",
            &format!("{alice}/subscriptions-changed"),
        )
        .await;
    assert_eq!(sub[0], "updated");
    assert_eq!(sub[1]["unread"], 1);
    assert_eq!(sub[1]["alert"], true);
    assert_eq!(sub[1]["name"], "bob");
    let room = a
        .event("stream-notify-user", &format!("{alice}/rooms-changed"))
        .await;
    assert_eq!(room[0], "updated");
    assert_eq!(room[1]["lastMessage"]["msg"], "hi alice");
    let n = a
        .event("stream-notify-user", &format!("{alice}/notification"))
        .await;
    assert_eq!(n[0]["title"], "bob");
    assert_eq!(n[0]["payload"]["sender"]["_id"], bob.as_str());
    assert_eq!(n[0]["payload"]["type"], "d");
    // Exactly once each: nothing else is pending.
    assert!(
        a.backlog.iter().all(|v| v["msg"] != "changed"),
        "{:?}",
        a.backlog
    );
    assert_eq!(a.quiet_for(Duration::from_millis(200)).await, None);
}

#[actix_rt::test]
async fn public_rooms_stream_to_non_members_as_non_participants() {
    let s = sim(Settings::default());
    let rid = s
        .create_room(rcsim::RoomType::Channel, "lobby", "alice", &[])
        .unwrap();
    let mut c = Ddp::logged_in(&s, "carol", "carol-pw").await;
    c.sub("stream-room-messages", json!(["__my_messages__", false]))
        .await;
    s.post_message("alice", &rid, "anyone there?").unwrap();
    let args = c.event("stream-room-messages", "__my_messages__").await;
    assert_eq!(
        args[1],
        json!({"roomParticipant": false, "roomType": "c", "roomName": "lobby"})
    );
}

#[actix_rt::test]
async fn joining_and_leaving_emit_inserted_and_removed() {
    let s = sim(Settings::default());
    let carol = s.user_id("carol").unwrap();
    let mut c = Ddp::logged_in(&s, "carol", "carol-pw").await;
    c.sub(
        "stream-notify-user",
        json!([format!("{carol}/subscriptions-changed"), false]),
    )
    .await;
    c.sub(
        "stream-notify-user",
        json!([format!("{carol}/rooms-changed"), false]),
    )
    .await;
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    let r = alice
        .post(
            "groups.create",
            json!({"name": "plans", "members": ["carol"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rid = r.body["group"]["_id"].as_str().unwrap().to_string();
    let ins = c
        .event(
            "stream-notify-user",
            &format!("{carol}/subscriptions-changed"),
        )
        .await;
    assert_eq!(ins[0], "inserted");
    assert_eq!(ins[1]["rid"], rid.as_str());
    let room = c
        .event("stream-notify-user", &format!("{carol}/rooms-changed"))
        .await;
    assert_eq!(room[0], "inserted");
    let r = alice
        .post("groups.kick", json!({"roomId": rid, "userId": carol}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rem = c
        .event(
            "stream-notify-user",
            &format!("{carol}/subscriptions-changed"),
        )
        .await;
    assert_eq!(rem[0], "removed");
    assert_eq!(rem[1]["rid"], rid.as_str());
}

#[actix_rt::test]
async fn methods_rooms_get_and_send_message() {
    let s = sim(Settings::default());
    let mut d = Ddp::logged_in(&s, "alice", "alice-pw").await;
    let rooms = d.call("rooms/get", json!([])).await;
    let list = rooms["result"].as_array().unwrap();
    assert!(list.iter().any(|r| r["_id"] == "GENERAL" && r["t"] == "c"));
    let since = d.call("rooms/get", json!([{"$date": 0}])).await;
    assert!(since["result"]["update"].is_array());
    let sent = d
        .call(
            "sendMessage",
            json!([{"_id": "abcdef123456", "rid": "GENERAL", "msg": "from ddp"}]),
        )
        .await;
    assert_eq!(sent["result"]["_id"], "abcdef123456");
    assert_eq!(sent["result"]["msg"], "from ddp");
    let mut anon = Ddp::connected(&s).await;
    let r = anon
        .call("sendMessage", json!([{"rid": "GENERAL", "msg": "x"}]))
        .await;
    assert_eq!(r["error"]["error"], "error-invalid-user");
}

#[actix_rt::test]
async fn removing_a_token_closes_its_sockets_without_a_frame() {
    let s = sim(Settings::default());
    let rest = Rest::login(&s, "alice", "alice-pw").await;
    let token = rest.token();
    let mut d = Ddp::connected(&s).await;
    assert!(d
        .call("login", json!([{"resume": token}]))
        .await
        .get("result")
        .is_some());
    let admin = Rest::login(&s, "super", "123qwe").await;
    let r = admin
        .post("users.logout", json!({"userId": rest.uid()}))
        .await;
    assert_eq!(
        r.body["message"],
        format!("User {} has been logged out!", rest.uid())
    );
    let (frames, code) = d.until_closed().await;
    assert!(
        frames.is_empty(),
        "no DDP frame before the close: {frames:?}"
    );
    assert_eq!(code, Some(1000));
    // Afterwards: resume 403, REST 401.
    let mut d = Ddp::connected(&s).await;
    let r = d.call("login", json!([{"resume": token}])).await;
    assert_eq!(
        r["error"]["reason"],
        "You've been logged out by the server. Please log in again."
    );
    assert_eq!(rest.get("me").await.status, 401);
}

#[actix_rt::test]
async fn rest_logout_deactivation_deletion_and_purge_close_sockets() {
    let s = sim(Settings::default());
    // REST logout of that token.
    let rest = Rest::login(&s, "alice", "alice-pw").await;
    let mut d = Ddp::connected(&s).await;
    d.call("login", json!([{"resume": rest.token()}])).await;
    let r = rest.post("logout", json!({})).await;
    assert_eq!(
        r.body,
        json!({"status": "success", "data": {"message": "You've been logged out!"}})
    );
    assert_eq!(d.until_closed().await.1, Some(1000));
    // Deactivation.
    let admin = Rest::login(&s, "super", "123qwe").await;
    let mut d = Ddp::logged_in(&s, "bob", "bob-pw").await;
    let bob = s.user_id("bob").unwrap();
    let r = admin
        .post(
            "users.setActiveStatus",
            json!({"userId": bob, "activeStatus": false}),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"user": {"_id": bob, "active": false}, "success": true})
    );
    assert_eq!(d.until_closed().await.1, Some(1000));
    let mut d2 = Ddp::connected(&s).await;
    assert_eq!(
        d2.login_password("bob", "bob-pw").await["error"]["error"],
        "error-user-is-not-activated"
    );
    // Deletion.
    let mut d = Ddp::logged_in(&s, "carol", "carol-pw").await;
    let r = admin
        .post("users.delete", json!({"username": "carol"}))
        .await;
    assert_eq!(r.body, json!({"success": true}));
    assert_eq!(d.until_closed().await.1, Some(1000));
    // Expiry: resume fails at once, the open socket lives until the purge.
    s.add_user("erin", "erin-pw", false).unwrap();
    let mut d = Ddp::logged_in(&s, "erin", "erin-pw").await;
    let token = s.mint_token("erin").unwrap();
    s.expire_tokens("erin");
    let mut d3 = Ddp::connected(&s).await;
    assert_eq!(
        d3.call("login", json!([{"resume": token}])).await["error"]["reason"],
        "Your session has expired. Please log in again."
    );
    d.send(json!({"msg": "ping", "id": "still"})).await;
    assert_eq!(d.json().await["id"], "still");
    assert_eq!(s.purge_expired_tokens(), 2);
    assert_eq!(d.until_closed().await.1, Some(1000));
}

#[actix_rt::test]
async fn ddp_logout_removes_the_token_and_stops_user_streams() {
    let s = sim(Settings::default());
    let uid = s.user_id("alice").unwrap();
    let mut d = Ddp::logged_in(&s, "alice", "alice-pw").await;
    let sub = d
        .sub(
            "stream-notify-user",
            json!([format!("{uid}/message"), false]),
        )
        .await;
    let sub_id = sub["subs"][0].clone();
    let r = d.call("logout", json!([])).await;
    assert!(r.get("result").is_none() && r.get("error").is_none(), "{r}");
    let nosub = d.until(|v| v["msg"] == "nosub").await;
    assert_eq!(nosub["id"], sub_id);
    assert_eq!(nosub["error"]["error"], "not-allowed");
    assert_eq!(s.token_count("alice"), 0);
}

#[actix_rt::test]
async fn reactions_restream_the_whole_message() {
    let s = sim(Settings::default());
    let mut a = Ddp::logged_in(&s, "alice", "alice-pw").await;
    a.sub("stream-room-messages", json!(["GENERAL", false]))
        .await;
    let m = s.post_message("bob", "GENERAL", "react to me").unwrap();
    a.event("stream-room-messages", "GENERAL").await;
    let r = a.call("setReaction", json!([":+1:", m["_id"]])).await;
    assert!(r.get("error").is_none() && r.get("result").is_none(), "{r}");
    let again = &a.event("stream-room-messages", "GENERAL").await[0];
    assert_eq!(again["_id"], m["_id"]);
    assert_eq!(
        again["reactions"],
        json!({":+1:": {"usernames": ["alice"]}})
    );
    a.call("setReaction", json!([":+1:", m["_id"]])).await;
    assert!(
        a.event("stream-room-messages", "GENERAL").await[0]
            .get("reactions")
            .is_none(),
        "toggled off"
    );
}

#[actix_rt::test]
async fn typing_goes_to_the_other_subscribers_only() {
    let s = sim(Settings::default());
    let mut a = Ddp::logged_in(&s, "alice", "alice-pw").await;
    let mut b = Ddp::logged_in(&s, "bob", "bob-pw").await;
    for d in [&mut a, &mut b] {
        assert_eq!(
            d.sub(
                "stream-notify-room",
                json!(["GENERAL/user-activity", false])
            )
            .await["msg"],
            "ready"
        );
        assert_eq!(
            d.sub("stream-notify-room", json!(["GENERAL/typing", false]))
                .await["msg"],
            "ready"
        );
    }
    let r = a
        .call(
            "stream-notify-room",
            json!(["GENERAL/user-activity", "alice", ["user-typing"], {}]),
        )
        .await;
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(
        b.event("stream-notify-room", "GENERAL/user-activity").await,
        json!(["alice", ["user-typing"], {}])
    );
    assert_eq!(
        b.event("stream-notify-room", "GENERAL/typing").await,
        json!(["alice", true])
    );
    assert!(
        a.backlog.iter().all(|v| v["msg"] != "changed"),
        "not echoed to the sender: {:?}",
        a.backlog
    );
    // Writing as someone else, or another event, is not allowed.
    let r = a
        .call(
            "stream-notify-room",
            json!(["GENERAL/user-activity", "bob", ["user-typing"], {}]),
        )
        .await;
    assert_eq!(r["error"]["error"], "not-allowed");
    let r = a
        .call(
            "stream-notify-room",
            json!(["GENERAL/deleteMessage", "alice"]),
        )
        .await;
    assert_eq!(r["error"]["error"], "not-allowed");
}
