//! `POST method.call/:method` as Rocket.Chat answers it
//! (`docs/protocol/rocketchat.md` §9.7).

mod common;

use common::{sim, Rest};
use rcsim::{RoomType, Settings};
use serde_json::{json, Value};
use std::time::Duration;

/// Calls `method` over `method.call`: the HTTP status and the DDP answer.
async fn call(rest: &Rest, method: &str, params: Value) -> (u16, Value) {
    let msg = json!({"msg": "method", "id": "1", "method": method, "params": params});
    let r = rest
        .post(
            &format!("method.call/{}", method.replace('/', ":")),
            json!({"message": msg.to_string()}),
        )
        .await;
    let answer = r.body["message"]
        .as_str()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or(Value::Null);
    (r.status, answer)
}

#[actix_rt::test]
async fn dates_must_be_ejson_and_a_room_without_access_is_refused() {
    let s = sim(Settings::permissive());
    let secret = s
        .create_room(RoomType::Group, "secret", "bob", &[])
        .unwrap();
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    let (status, ejson) = call(&alice, "subscriptions/get", json!([{"$date": 0}])).await;
    assert_eq!(status, 200);
    assert!(ejson["result"]["update"].is_array(), "{ejson}");
    // An ISO string is no Date to Rocket.Chat: every record, as an array.
    let (_, iso) = call(
        &alice,
        "subscriptions/get",
        json!(["1970-01-01T00:00:00.000Z"]),
    )
    .await;
    assert!(iso["result"].is_array(), "{iso}");
    let refuse = json!([secret, {"lastUpdate": {"$date": 0}}]);
    let (status, refused) = call(&alice, "messages/get", refuse.clone()).await;
    assert_eq!(status, 200, "before 8.0 an error comes with 200");
    assert_eq!(refused["error"]["error"], "error-not-allowed", "{refused}");
    s.update_settings(|s| s.server_version = "8.0.0".into());
    let (status, refused) = call(&alice, "messages/get", refuse).await;
    assert_eq!(status, 400, "from 8.0 with 400");
    assert_eq!(refused["error"]["error"], "error-not-allowed", "{refused}");
}

#[actix_rt::test]
async fn the_limiter_counts_per_method_and_token_over_its_window() {
    let s = sim(Settings::permissive());
    s.update_settings(|s| {
        s.ddp_rate_limiter = true;
        s.ddp_rate_limit_by_method_interval = Duration::from_millis(1500);
        s.server_version = "8.0.0".into();
    });
    let alice = Rest::login(&s, "alice", "alice-pw").await;
    let params = json!([{"$date": 0}]);
    for i in 0..10 {
        let (status, _) = call(&alice, "rooms/get", params.clone()).await;
        assert_eq!(status, 200, "call {i}");
    }
    let (status, limited) = call(&alice, "rooms/get", params.clone()).await;
    assert_eq!(status, 400);
    assert_eq!(limited["error"]["error"], "too-many-requests");
    let wait = limited["error"]["details"]["timeToReset"].as_i64().unwrap();
    assert!((1..=1500).contains(&wait), "within the window: {wait}");
    let (status, _) = call(&alice, "subscriptions/get", params.clone()).await;
    assert_eq!(status, 200, "another method has its own count");
    tokio::time::sleep(Duration::from_millis(wait as u64 + 50)).await;
    let (status, _) = call(&alice, "rooms/get", params).await;
    assert_eq!(status, 200, "the window is over");
}
