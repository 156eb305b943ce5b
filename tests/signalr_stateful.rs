//! SignalR stateful reconnect at the wire level (`docs/protocol/signalr.md`
//! §5.3): only when negotiated, Sequence first on a new transport, what was
//! not acknowledged and what came meanwhile, the client's replays dropped,
//! and a plain refusal when the history cannot cover the gap. The official
//! client runs the same through a cut transport in tests/js/signalr.test.js.

mod common;

use common::hub::{negotiate, open, records, send, Ws, RS};
use common::{start, Env};
use rcsim::Settings;
use serde_json::{json, Value};

/// A stateful connection's token, negotiated.
async fn stateful(env: &Env, token: &str) -> String {
    let q = "?negotiateVersion=1&useStatefulReconnect=true";
    let (status, n, _) = negotiate(env, q, Some(token), None).await;
    assert_eq!(status, 200, "{n}");
    assert_eq!(n["useStatefulReconnect"], true, "{n}");
    n["connectionToken"].as_str().unwrap().to_string()
}

async fn transport(env: &Env, id: &str, token: &str) -> Ws {
    open(env, &format!("?id={id}&access_token={token}"))
        .await
        .expect("the websocket opens")
}

/// A stateful connection's first transport, past its handshake (version 2).
async fn handshaken(env: &Env, id: &str, token: &str) -> Ws {
    let mut ws = transport(env, id, token).await;
    send(
        &mut ws,
        &format!("{{\"protocol\":\"json\",\"version\":2}}{RS}"),
    )
    .await;
    assert_eq!(records(&mut ws).await, vec![json!({})]);
    ws
}

/// Records until the message `text` arrives, pings and acks left out.
async fn until_message(ws: &mut Ws, text: &str) -> Vec<Value> {
    let mut seen = vec![];
    loop {
        for r in records(ws).await {
            let done =
                r["target"] == "getRoomMessageNotification" && r["arguments"][0]["msg"] == text;
            if r["type"] != 6 && r["type"] != 8 {
                seen.push(r);
            }
            if done {
                return seen;
            }
        }
    }
}

#[actix_rt::test]
async fn only_a_negotiated_connection_is_stateful() {
    let env = start(Settings::default(), |_| {}).await;
    let token = env.alice_and_bob().await;
    let (_, plain, _) = negotiate(&env, "?negotiateVersion=1", Some(&token), None).await;
    assert_eq!(
        plain.get("useStatefulReconnect"),
        None,
        "not asked, not given"
    );
    let id = plain["connectionToken"].as_str().unwrap();
    let mut ws = transport(&env, id, &token).await;
    send(
        &mut ws,
        &format!("{{\"protocol\":\"json\",\"version\":2}}{RS}"),
    )
    .await;
    let refused = records(&mut ws).await;
    assert_eq!(
        refused[0]["error"],
        "The server does not support version 2 of the 'json' protocol."
    );
}

#[actix_rt::test]
async fn a_new_transport_gets_the_unacked_and_the_missed_and_its_replays_are_dropped() {
    let env = start(Settings::default(), |_| {}).await;
    let token = env.alice_and_bob().await;
    let id = stateful(&env, &token).await;
    let mut ws = handshaken(&env, &id, &token).await;
    // Client id 1: answered with our id 1.
    send(
        &mut ws,
        &format!(
            "{{\"type\":1,\"invocationId\":\"r1\",\"target\":\"register\",\"arguments\":[]}}{RS}"
        ),
    )
    .await;
    env.dm("bob", "alice", "one");
    let first = until_message(&mut ws, "one").await;
    assert_eq!(first[0], json!({"type": 3, "invocationId": "r1"}));
    let sent = first.len() as u64;
    // Everything but the last two acknowledged, then the transport is lost
    // (no close handshake).
    send(
        &mut ws,
        &format!("{{\"type\":8,\"sequenceId\":{}}}{RS}", sent - 2),
    )
    .await;
    drop(ws);
    env.dm("bob", "alice", "two");

    let mut ws = transport(&env, &id, &token).await;
    // No handshake on a new transport: the client's Sequence, then its
    // un-acked invocations again (r1, done already) and a new one.
    send(&mut ws, &format!("{{\"type\":9,\"sequenceId\":1}}{RS}")).await;
    send(
        &mut ws,
        &format!(
            "{{\"type\":1,\"invocationId\":\"r1\",\"target\":\"register\",\"arguments\":[]}}{RS}"
        ),
    )
    .await;
    send(
        &mut ws,
        &format!(
            "{{\"type\":1,\"invocationId\":\"r2\",\"target\":\"register\",\"arguments\":[]}}{RS}"
        ),
    )
    .await;
    let again = until_message(&mut ws, "two").await;
    assert_eq!(
        again[0],
        json!({"type": 9, "sequenceId": sent - 1}),
        "Sequence first"
    );
    assert_eq!(
        &again[1..3],
        &first[first.len() - 2..],
        "the un-acked, again"
    );
    // The first answer on the new transport is r2's: r1 was done already.
    let answer = match again.iter().find(|r| r["type"] == 3) {
        Some(a) => a.clone(),
        None => common::hub::record(&mut ws, |r| r["type"] == 3).await,
    };
    assert_eq!(answer, json!({"type": 3, "invocationId": "r2"}));
    assert!(
        again.iter().any(|r| r["arguments"][0]["msg"] == "two"),
        "what came while no transport was there"
    );
}

#[actix_rt::test]
async fn a_gap_the_history_cannot_cover_closes_the_connection_plainly() {
    let env = start(Settings::default(), |c| c.client.history_size = 0).await;
    let token = env.alice_and_bob().await;
    let id = stateful(&env, &token).await;
    let mut ws = handshaken(&env, &id, &token).await;
    env.dm("bob", "alice", "one");
    until_message(&mut ws, "one").await;
    drop(ws);
    env.dm("bob", "alice", "two");
    let mut ws = transport(&env, &id, &token).await;
    send(&mut ws, &format!("{{\"type\":9,\"sequenceId\":1}}{RS}")).await;
    let close = loop {
        if let Some(c) = records(&mut ws).await.into_iter().find(|r| r["type"] == 7) {
            break c;
        }
    };
    assert_eq!(close["allowReconnect"], true, "{close}");
    assert!(
        close["error"]
            .as_str()
            .unwrap()
            .starts_with("Stateful reconnect failed"),
        "{close}"
    );
    // The connection is over: its token does not open another transport.
    assert!(open(&env, &format!("?id={id}&access_token={token}"))
        .await
        .is_err());
}
