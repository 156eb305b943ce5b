//! Native recovery (`/ws?since=S&epoch=E`): a client that dropped gets what
//! it missed, then the live events, each exactly once, or is told to reload.
//! The real daemon against rcsim.

mod common;

use common::{start, Client, Env};
use rcsim::Settings;
use serde_json::{json, Value};

const MESSAGE: &str = "getRoomMessageNotification";

/// bob DMs alice `text`.
async fn dm(env: &Env, text: &str) {
    env.dm("bob", "alice", text);
    tokio::task::yield_now().await;
}

/// Reads frames until the message `text` arrives; all of them, in order.
async fn until_message(c: &mut Client, text: &str) -> Vec<Value> {
    let mut frames = vec![];
    loop {
        let v = c.json().await;
        let done = v["event"] == MESSAGE && v["data"]["msg"] == text;
        frames.push(v);
        if done {
            return frames;
        }
    }
}

/// Reads frames until the last event a message `text` causes (the room's
/// change naming it as the last message); all of them, in order.
async fn until_settled(c: &mut Client, text: &str) -> Vec<Value> {
    let mut frames = vec![];
    loop {
        let v = c.json().await;
        let done = v["event"] == "getRoomChangedNotification"
            && v["data"]["room"]["lastMessage"]["msg"] == text;
        frames.push(v);
        if done {
            return frames;
        }
    }
}

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().filter_map(|v| v["seq"].as_u64()).collect()
}

/// `&since=…&epoch=…` for where a client's frames left off.
fn resume(epoch: &Value, since: u64) -> String {
    format!("&since={since}&epoch={}", epoch.as_str().unwrap())
}

/// A client back with `since`, past its welcome (returned too).
async fn back(env: &Env, token: &str, query: &str) -> Client {
    let mut c = env.client_with(token, query).await.expect("connects");
    c.welcome = c.json().await;
    assert_eq!(c.welcome["type"], "welcome", "{}", c.welcome);
    c
}

#[actix_rt::test]
async fn a_client_back_with_since_gets_what_it_missed_then_the_live_events() {
    let env = start(Settings::default(), |_| {}).await;
    let token = env.alice_and_bob().await;
    let mut stays = env.client(&token).await;
    let mut drops = env.client(&token).await;
    let epoch = drops.welcome["epoch"].clone();
    assert!(
        epoch.as_str().is_some_and(|e| !e.is_empty()),
        "{}",
        drops.welcome
    );
    assert_eq!(
        drops.welcome.get("recovered"),
        None,
        "only when since is given"
    );

    dm(&env, "one").await;
    let seen = until_message(&mut drops, "one").await;
    let last = *seqs(&seen).last().unwrap();
    drop(drops);

    dm(&env, "two").await;
    dm(&env, "three").await;
    let mut stayed = until_message(&mut stays, "one").await;
    stayed.extend(until_message(&mut stays, "three").await);
    let mut c = back(&env, &token, &resume(&epoch, last)).await;
    assert_eq!(c.welcome["recovered"], true, "{}", c.welcome);
    assert_eq!(c.welcome["epoch"], epoch);
    let top = c.welcome["seq"].as_u64().unwrap();
    assert!(top > last + 1, "{}", c.welcome);
    let mut replayed = vec![];
    for _ in last..top {
        replayed.push(c.json().await);
    }
    assert_eq!(seqs(&replayed), (last + 1..=top).collect::<Vec<_>>());
    let texts: Vec<&str> = replayed
        .iter()
        .filter(|v| v["event"] == MESSAGE)
        .filter_map(|v| v["data"]["msg"].as_str())
        .collect();
    assert_eq!(texts, ["two", "three"]);

    dm(&env, "four").await;
    let live = until_message(&mut c, "four").await;
    assert_eq!(seqs(&live)[0], top + 1, "live from where the replay ended");
    // The client that stayed saw the same frames, each once.
    while stayed
        .last()
        .is_none_or(|v: &Value| v["seq"].as_u64() < Some(top))
    {
        stayed.push(stays.json().await);
    }
    stayed.retain(|v| v["seq"].as_u64() > Some(last));
    assert_eq!(stayed, replayed);
    assert_eq!(until_message(&mut stays, "four").await, live);
}

#[actix_rt::test]
async fn a_replay_meets_events_arriving_meanwhile_with_no_gap_or_duplicate() {
    let env = start(Settings::default(), |c| c.client.history_size = 1000).await;
    let token = env.alice_and_bob().await;
    let mut watch = env.client(&token).await;
    let first = env.client(&token).await;
    let (epoch, since) = (
        first.welcome["epoch"].clone(),
        first.welcome["seq"].as_u64().unwrap(),
    );
    drop(first);
    let n = 40;
    let post = async {
        for i in 0..n {
            dm(&env, &format!("m{i}")).await;
        }
    };
    let reconnect = async {
        // Back once a quarter has gone by, while the rest is posted.
        until_message(&mut watch, &format!("m{}", n / 4)).await;
        let mut c = back(&env, &token, &resume(&epoch, since)).await;
        assert_eq!(c.welcome["recovered"], true, "{}", c.welcome);
        let joined = c.welcome["seq"].as_u64().unwrap();
        (joined, until_message(&mut c, &format!("m{}", n - 1)).await)
    };
    let ((), (joined, frames)) = tokio::join!(post, reconnect);
    let got = seqs(&frames);
    let want: Vec<u64> = (since + 1..since + 1 + got.len() as u64).collect();
    assert_eq!(got, want, "every number once, in order");
    assert!(
        joined > since && joined < *got.last().unwrap(),
        "some events replayed ({since}..{joined}], some live after"
    );
    let texts: Vec<&str> = frames
        .iter()
        .filter(|v| v["event"] == MESSAGE)
        .filter_map(|v| v["data"]["msg"].as_str())
        .collect();
    let posted: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, posted);
}

#[actix_rt::test]
async fn recovery_fails_plainly_for_another_epoch_an_old_since_or_a_bad_query() {
    let env = start(Settings::default(), |c| c.client.history_size = 4).await;
    let token = env.alice_and_bob().await;
    let mut c = env.client(&token).await;
    let epoch = c.welcome["epoch"].clone();
    dm(&env, "one").await;
    let last = *seqs(&until_message(&mut c, "one").await).last().unwrap();
    drop(c);
    for i in 0..5 {
        dm(&env, &format!("away{i}")).await;
    }
    let mut watch = env.client(&token).await;
    dm(&env, "marker").await;
    until_settled(&mut watch, "marker").await;
    let top = watch.welcome["seq"].as_u64().unwrap();

    // (what the client sends back, why it cannot be recovered)
    let cases = [
        (resume(&epoch, last), "older than the history"),
        (resume(&json!("another-epoch"), top), "another epoch"),
        (resume(&epoch, top + 100), "a seq never given out"),
    ];
    for (query, why) in cases {
        let mut c = back(&env, &token, &query).await;
        assert_eq!(c.welcome["recovered"], false, "{why}: {}", c.welcome);
        assert_eq!(c.welcome["epoch"], epoch, "{why}");
        dm(&env, why).await;
        let next = until_settled(&mut c, why).await;
        assert_eq!(
            seqs(&next)[0],
            c.welcome["seq"].as_u64().unwrap() + 1,
            "{why}: live only"
        );
    }
    let now = env.client(&token).await.welcome["seq"].as_u64().unwrap();
    let mut caught_up = back(&env, &token, &resume(&epoch, now)).await;
    assert_eq!(
        caught_up.welcome["recovered"], true,
        "nothing missed is recovered"
    );
    dm(&env, "last").await;
    let next = until_message(&mut caught_up, "last").await;
    assert_eq!(seqs(&next)[0], now + 1, "and nothing is replayed");

    for query in [
        "&since=3",
        "&epoch=e",
        "&since=x&epoch=e",
        "&since=-1&epoch=e",
    ] {
        let (status, body) = common::raw::http(
            &env.url,
            &format!("GET /ws?token={token}{query} HTTP/1.1"),
            b"",
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains("bad_resume"), "{query}: {body}");
    }
}

#[actix_rt::test]
async fn a_new_process_or_a_new_login_starts_a_new_epoch() {
    let mut env = start(Settings::default(), |_| {}).await;
    let token = env.alice_and_bob().await;
    let mut c = env.client(&token).await;
    let epoch = c.welcome["epoch"].clone();
    dm(&env, "before").await;
    let last = *seqs(&until_message(&mut c, "before").await).last().unwrap();
    drop(c);

    let r = env.api("POST", "/users/alice/logout", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let token = env.login_token("alice").await;
    let c = back(&env, &token, &resume(&epoch, last)).await;
    assert_eq!(
        c.welcome["recovered"], false,
        "after a logout: {}",
        c.welcome
    );
    assert_ne!(c.welcome["epoch"], epoch);
    let epoch = c.welcome["epoch"].clone();
    drop(c);

    env.restart_daemon(|_| {}).await;
    env.login("bob").await;
    let token = env.login_token("alice").await;
    let c = back(&env, &token, &resume(&epoch, 0)).await;
    assert_eq!(
        c.welcome["recovered"], false,
        "after a restart: {}",
        c.welcome
    );
    assert_ne!(c.welcome["epoch"], epoch);
}
