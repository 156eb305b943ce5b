//! Upstream backfill: while a session's DDP socket is away (dropped,
//! refused, Rocket.Chat restarting), what Rocket.Chat emits is fetched
//! when it is back and delivered to the clients, each message once, each
//! room in order; past the bounds, clients are told to reload. The real
//! daemon against rcsim.

mod common;

use common::{start, Client, Env};
use rcsim::{RoomType, Settings};
use serde_json::Value;
use std::time::Duration;

const MESSAGE: &str = "getRoomMessageNotification";

/// alice (with a client) and bob, a DM between them and a group of both.
async fn setup(env: &Env) -> (Client, String, String) {
    for u in ["alice", "bob"] {
        env.sync(u).await;
    }
    let token = env.login_token("alice").await;
    env.subscribed("alice").await;
    let client = env.client(&token).await;
    let dm = env.sim.direct_room("bob", "alice").unwrap();
    let group = env
        .sim
        .create_room(RoomType::Group, "team", "bob", &["alice"])
        .unwrap();
    (client, dm, group)
}

/// Reads until every text in `want` has arrived as a message; all the
/// message texts seen, by room, and every frame.
async fn messages_until(c: &mut Client, want: &[&str]) -> (Vec<(String, String)>, Vec<Value>) {
    let mut got: Vec<(String, String)> = vec![];
    let mut frames = vec![];
    while !want.iter().all(|w| got.iter().any(|(_, t)| t == w)) {
        let v = c.json().await;
        if v["event"] == MESSAGE {
            let rid = v["data"]["rid"].as_str().unwrap_or_default().to_string();
            got.push((
                rid,
                v["data"]["msg"].as_str().unwrap_or_default().to_string(),
            ));
        }
        frames.push(v);
    }
    (got, frames)
}

fn texts_in(got: &[(String, String)], rid: &str) -> Vec<String> {
    got.iter()
        .filter(|(r, _)| r == rid)
        .map(|(_, t)| t.clone())
        .collect()
}

/// Waits until the session's DDP socket is gone (rcsim counts none).
async fn until_disconnected(env: &Env) {
    env.sim
        .wait_for(common::WAIT, "alice's DDP socket to go", |s| {
            s.ddp_connections("alice") == 0
        })
        .await
        .unwrap();
}

#[actix_rt::test]
async fn messages_posted_while_reconnects_are_refused_arrive_once_each_room_in_order() {
    let env = start(Settings::default(), |c| c.session.backfill_rate = 0).await;
    let (mut c, dm, group) = setup(&env).await;
    env.sim.post_message("bob", &dm, "before").unwrap();
    messages_until(&mut c, &["before"]).await;

    env.sim.refuse_connections(Duration::from_secs(2));
    env.sim.drop_ddp(Some("alice"), true);
    until_disconnected(&env).await;
    let away = [
        (&dm, "dm 1"),
        (&group, "team 1"),
        (&dm, "dm 2"),
        (&group, "team 2"),
        (&dm, "dm 3"),
    ];
    for (rid, text) in away {
        env.sim.post_message("bob", rid, text).unwrap();
    }
    let (got, frames) = messages_until(&mut c, &["dm 3", "team 2"]).await;
    assert_eq!(texts_in(&got, &dm), ["dm 1", "dm 2", "dm 3"], "{got:?}");
    assert_eq!(texts_in(&got, &group), ["team 1", "team 2"], "{got:?}");
    // Numbered on from the live ones, with the subscriptions' changes too.
    let seqs: Vec<u64> = frames.iter().filter_map(|v| v["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(
        frames
            .iter()
            .any(|v| v["event"] == "getRoomSubscriptionChangedNotification"
                && v["data"]["msg"]["rid"] == group.as_str()),
        "the group's subscription change is backfilled too"
    );
    let date = &frames.iter().find(|v| v["event"] == MESSAGE).unwrap()["data"]["ts"];
    assert!(date["$date"].is_i64(), "dates as DDP has them: {date}");

    // Live again, and nothing comes twice.
    env.sim.post_message("bob", &dm, "after").unwrap();
    let (later, _) = messages_until(&mut c, &["after"]).await;
    assert_eq!(
        later,
        [(dm.clone(), "after".to_string())],
        "no duplicate before it"
    );
}

#[actix_rt::test]
async fn a_restart_or_a_dropped_socket_loses_nothing_and_doubles_nothing() {
    let env = start(Settings::default(), |c| c.session.backfill_rate = 0).await;
    let (mut c, dm, group) = setup(&env).await;
    // A restart, its port refused a while after.
    env.sim.refuse_connections(Duration::from_secs(1));
    env.sim.restart(Duration::ZERO).unwrap();
    env.sim.post_message("bob", &dm, "during restart").unwrap();
    let (got, _) = messages_until(&mut c, &["during restart"]).await;
    assert_eq!(texts_in(&got, &dm), ["during restart"]);
    env.subscribed("alice").await;

    // A drop with reconnection at once: what comes around it arrives live
    // or backfilled, once.
    env.sim.drop_ddp(Some("alice"), true);
    for i in 0..5 {
        env.sim
            .post_message("bob", &group, &format!("burst {i}"))
            .unwrap();
    }
    let (got, _) = messages_until(&mut c, &["burst 4"]).await;
    env.sim.post_message("bob", &group, "done").unwrap();
    let (tail, _) = messages_until(&mut c, &["done"]).await;
    let all: Vec<String> = got.into_iter().chain(tail).map(|(_, t)| t).collect();
    let want: Vec<String> = (0..5)
        .map(|i| format!("burst {i}"))
        .chain(["done".into()])
        .collect();
    assert_eq!(all, want);
}

#[actix_rt::test]
async fn past_the_bounds_clients_are_told_to_reload() {
    let env = start(Settings::default(), |c| {
        c.session.backfill_rate = 0;
        c.session.backfill_max_messages = 2;
    })
    .await;
    let (mut c, dm, _) = setup(&env).await;
    env.sim.refuse_connections(Duration::from_secs(1));
    env.sim.drop_ddp(Some("alice"), true);
    until_disconnected(&env).await;
    for i in 0..3 {
        env.sim
            .post_message("bob", &dm, &format!("away {i}"))
            .unwrap();
    }
    let reload = loop {
        let v = c.json().await;
        assert_ne!(v["event"], MESSAGE, "nothing but the reload: {v}");
        if v["event"] == "reloadRequired" {
            break v;
        }
    };
    assert_eq!(reload["data"]["reason"], "too_many", "{reload}");
    assert!(reload["data"]["since"]["$date"].is_i64(), "{reload}");
}

/// The REST routes a backfill falls back on, each limited per IP.
const REST_ROUTES: [&str; 3] = ["subscriptions.get", "rooms.get", "chat.syncMessages"];

#[actix_rt::test]
async fn with_rocket_chats_limiter_on_every_user_is_backfilled_at_once_over_the_ddp_methods() {
    // Paced as for the REST routes (10 calls a minute), which would take
    // over a minute for 12 users: the DDP methods are limited per user.
    let env = start(Settings::permissive(), |c| c.session.backfill_rate = 10).await;
    env.sync("bob").await;
    let mut users = vec![];
    for i in 0..12 {
        let name = format!("user{i}");
        env.sync(&name).await;
        let token = env.login_token(&name).await;
        env.subscribed(&name).await;
        let dm = env.sim.direct_room("bob", &name).unwrap();
        users.push((name, env.client(&token).await, dm));
    }
    env.sim.update_settings(|s| {
        s.rest_rate_limiter = true;
        s.ddp_rate_limiter = true;
    });
    env.sim.refuse_connections(Duration::from_secs(2));
    env.sim.drop_ddp(None, true);
    for (name, _, dm) in &users {
        env.sim
            .wait_for(common::WAIT, "the DDP socket to go", |s| {
                s.ddp_connections(name) == 0
            })
            .await
            .unwrap();
        env.sim
            .post_message("bob", dm, &format!("to {name}"))
            .unwrap();
    }
    for (name, c, dm) in &mut users {
        let text = format!("to {name}");
        let (got, _) = messages_until(c, &[&text]).await;
        assert_eq!(texts_in(&got, dm), [text]);
    }
    let calls = env.sim.calls();
    assert!(
        calls
            .iter()
            .all(|c| !REST_ROUTES.contains(&c.route.as_str())),
        "no per-IP route used"
    );
    assert!(calls.iter().all(|c| c.status != 429), "no 429 met");
    assert!(calls.iter().any(|c| c.route == "method.call"));
}

#[actix_rt::test]
async fn a_server_without_the_ddp_methods_is_backfilled_over_rest_and_asked_once() {
    let env = start(Settings::default(), |c| c.session.backfill_rate = 0).await;
    env.sim.update_settings(|s| {
        s.removed_methods = ["subscriptions/get", "rooms/get", "messages/get"]
            .map(String::from)
            .to_vec();
    });
    let (mut c, dm, group) = setup(&env).await;
    for round in 0..2 {
        env.sim.refuse_connections(Duration::from_secs(1));
        env.sim.drop_ddp(Some("alice"), true);
        until_disconnected(&env).await;
        let (a, b) = (format!("dm {round}"), format!("team {round}"));
        env.sim.post_message("bob", &dm, &a).unwrap();
        env.sim.post_message("bob", &group, &b).unwrap();
        let (got, _) = messages_until(&mut c, &[&a, &b]).await;
        assert_eq!(texts_in(&got, &dm), [a]);
        assert_eq!(texts_in(&got, &group), [b]);
        env.subscribed("alice").await;
    }
    let calls = env.sim.calls();
    let count = |route: &str| calls.iter().filter(|c| c.route == route).count();
    assert_eq!(
        count("method.call"),
        3,
        "each method asked once, then known gone"
    );
    assert_eq!(count("subscriptions.get"), 2, "one per backfill");
    assert!(count("chat.syncMessages") >= 4, "each room, each backfill");
}

#[actix_rt::test]
async fn a_user_in_more_rooms_than_the_ddp_limiter_allows_at_once_waits_and_misses_nothing() {
    // 10 calls of one method per window per token: the 11th room's waits
    // (a window of 2 s, not the default 10, to stay under a frame's wait).
    let env = start(Settings::permissive(), |c| c.session.backfill_rate = 0).await;
    let (mut c, _, _) = setup(&env).await;
    let rooms: Vec<String> = (0..11)
        .map(|i| {
            env.sim
                .create_room(RoomType::Group, &format!("room{i}"), "bob", &["alice"])
                .unwrap()
        })
        .collect();
    env.sim.update_settings(|s| {
        s.ddp_rate_limiter = true;
        s.ddp_rate_limit_by_method_interval = Duration::from_secs(2);
        // Errors with 400, as from 8.0 (the other tests: 200, as before).
        s.server_version = "8.0.0".into();
    });
    env.sim.refuse_connections(Duration::from_secs(1));
    env.sim.drop_ddp(Some("alice"), true);
    until_disconnected(&env).await;
    for (i, rid) in rooms.iter().enumerate() {
        env.sim
            .post_message("bob", rid, &format!("in {i}"))
            .unwrap();
    }
    let want: Vec<String> = (0..11).map(|i| format!("in {i}")).collect();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    let (got, frames) = messages_until(&mut c, &want).await;
    assert_eq!(got.len(), 11, "each once: {got:?}");
    assert!(frames.iter().all(|v| v["event"] != "reloadRequired"));
    let limited = env
        .sim
        .calls()
        .iter()
        .filter(|c| c.route == "method.call" && c.status == 400)
        .count();
    assert!(limited >= 1, "the limiter was met and waited out");
}

#[actix_rt::test]
async fn a_server_with_some_of_the_methods_is_asked_them_and_the_rest_over_rest() {
    // A Rocket.Chat 9 that keeps subscriptions/get and drops the orphans.
    let env = start(Settings::default(), |c| c.session.backfill_rate = 0).await;
    env.sim.update_settings(|s| {
        s.removed_methods = ["rooms/get", "messages/get"].map(String::from).to_vec();
    });
    let (mut c, dm, group) = setup(&env).await;
    env.sim.refuse_connections(Duration::from_secs(1));
    env.sim.drop_ddp(Some("alice"), true);
    until_disconnected(&env).await;
    env.sim.post_message("bob", &dm, "dm").unwrap();
    env.sim.post_message("bob", &group, "team").unwrap();
    let (got, frames) = messages_until(&mut c, &["dm", "team"]).await;
    assert_eq!(texts_in(&got, &dm), ["dm"]);
    assert_eq!(texts_in(&got, &group), ["team"]);
    assert!(frames.iter().all(|v| v["event"] != "reloadRequired"));
    let calls = env.sim.calls();
    let count = |route: &str| calls.iter().filter(|c| c.route == route).count();
    assert_eq!(count("subscriptions.get"), 0, "its method answered");
    assert_eq!(count("rooms.get"), 1);
    assert!(count("chat.syncMessages") >= 2, "each room over REST");
}
