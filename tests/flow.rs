//! The original flow, end to end: the real daemon against rcsim.

mod common;

use common::start;
use rcsim::Settings;
use serde_json::json;
use std::time::Duration;
use testkit::Seen;

#[actix_rt::test]
async fn a_dm_reaches_every_client_of_the_recipient_exactly_once() {
    let env = start(Settings::default(), |_| {}).await;
    let a = env.sync("alice").await;
    assert_eq!(a["created"], true);
    env.sync("bob").await;
    let alice = env.login("alice").await;
    let bob = env.login("bob").await;
    assert_eq!(bob["username"], "bob");
    let token = alice["client_token"].as_str().unwrap();
    assert_eq!(token.len(), 43);
    let mut c1 = env.client(token).await;
    let mut c2 = env.client(token).await;
    assert_eq!(c1.welcome["username"], "alice");
    // The session's subscriptions are in place once rcsim counts them.
    env.sim
        .wait_for(common::WAIT, "alice's 6 subscriptions", |s| {
            s.ddp_subscriptions("alice") == 6
        })
        .await
        .unwrap();
    assert_eq!(env.sim.ddp_connections("alice"), 1);

    // bob DMs alice through Rocket.Chat's REST API, with his own token.
    env.rc_as(
        "bob",
        "chat.postMessage",
        json!({"channel": "@alice", "text": "hi alice"}),
    )
    .await;

    for c in [&mut c1, &mut c2] {
        // Read in arrival order until the message notification.
        let mut frames = vec![];
        loop {
            let v = c.json().await;
            let done = v["event"] == "getRoomMessageNotification";
            frames.push(v);
            if done {
                break;
            }
        }
        let sub = frames
            .iter()
            .find(|v| v["event"] == "getRoomSubscriptionChangedNotification")
            .expect("the new DM's subscription");
        assert_eq!(sub["data"]["method"], "insert");
        assert_eq!(sub["data"]["msg"]["name"], "bob");
        let msg = frames.last().unwrap();
        assert_eq!(msg["data"]["msg"], "hi alice");
        assert_eq!(msg["data"]["u"]["username"], "bob");
        assert!(
            msg["data"]["ts"]["$date"].is_i64(),
            "dates pass through as EJSON"
        );
        assert_eq!(
            frames
                .iter()
                .filter(|v| v["event"] == "getRoomMessageNotification")
                .count(),
            1
        );
        // Sequence numbers count the user's events, on from the welcome's:
        // none skipped or reordered when one read carries several.
        let seqs: Vec<u64> = frames.iter().filter_map(|v| v["seq"].as_u64()).collect();
        assert_eq!(seqs.len(), frames.len(), "every event has a seq");
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        assert_eq!(seqs[0], c.welcome["seq"].as_u64().unwrap() + 1);
    }
    // No duplicate arrives later.
    loop {
        match c1.quiet_for(Duration::from_millis(300)).await {
            None => break,
            Some(f) => assert!(
                !f.contains("getRoomMessageNotification"),
                "a duplicate: {f}"
            ),
        }
    }
    // A client ping is answered.
    c2.send(json!({"type": "ping"})).await;
    loop {
        match c2.next().await {
            Seen::Json(v) if v["type"] == "pong" => break,
            Seen::Json(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[actix_rt::test]
async fn login_is_idempotent_and_sessions_are_listed() {
    let env = start(Settings::default(), |_| {}).await;
    env.sync("carol").await;
    let first = env.login("carol").await;
    let second = env.login("carol").await;
    assert_eq!(first["client_token"], second["client_token"]);
    assert_eq!(first["rc_user_id"], second["rc_user_id"]);
    assert_eq!(
        env.sim.logins(rcsim::LoginPath::Ddp, "carol"),
        1,
        "a live token is reused, not re-minted"
    );
    assert_eq!(env.sim.token_count("carol"), 1);
    let s = env.api("GET", "/sessions", None).await;
    let list = s.body["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["username"], "carol");
    assert_eq!(list[0]["connected"], true);
    let u = env.api("GET", "/users/carol", None).await;
    assert_eq!(u.body["username"], "carol");
    assert_eq!(u.body["name"], "CAROL");
    assert!(u.body["session"]["expires_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(u.body["session"]["clients"], 0);
}
