//! `imrelay demo`: an embedded Rocket.Chat simulator (with a real server's
//! defaults), the daemon against it, demo users synced through imrelay's own
//! API, and a bot posting to alice every few seconds, so a newcomer can log
//! in, connect a websocket and watch events arrive.

use crate::config::Config;
use crate::Daemon;
use rand::Rng;
use rcsim::{Rcsim, Seed, SimConfig};
use serde_json::json;
use std::net::TcpListener;
use std::time::{Duration, Instant};

const USERS: [(&str, &str); 3] = [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")];

/// Runs until Ctrl-C.
pub fn run(listen: &str) -> Result<(), String> {
    let sim = Rcsim::start(SimConfig {
        seed: Some(Seed::General),
        ..Default::default()
    })
    .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let api_key: String = (0..32)
        .map(|_| char::from(b"abcdefghijkmnpqrstuvwxyz23456789"[rand::rng().random_range(0..32)]))
        .collect();
    let mut cfg = Config::for_rocketchat(&sim.url(), ("super", "123qwe"), &api_key);
    cfg.server.listen = listen
        .parse()
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    let listener = TcpListener::bind(cfg.server.listen)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    actix_rt::System::new().block_on(async move {
        let daemon = Daemon::start(cfg, listener).map_err(|e| e.to_string())?;
        let url = daemon.url();
        let started = Instant::now();
        while !daemon.is_ready() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err("the admin agent did not log in to the simulator".to_string());
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        let http = awc::Client::new();
        for (name, display) in USERS {
            let mut r = http
                .put(format!("{url}/api/v1/users/{name}"))
                .bearer_auth(&api_key)
                .send_json(&json!({"name": display, "email": format!("{name}@example.com")}))
                .await
                .map_err(|e| format!("syncing {name}: {e}"))?;
            if !r.status().is_success() {
                return Err(format!(
                    "syncing {name}: {} {:?}",
                    r.status(),
                    r.body().await
                ));
            }
        }
        print_banner(&url, &sim, &api_key);
        let bot = actix_rt::spawn(async move {
            let Ok(rid) = sim.direct_room("bob", "alice") else {
                return;
            };
            for n in 1u64.. {
                actix_rt::time::sleep(Duration::from_secs(5)).await;
                let _ = sim.post_message(
                    "bob",
                    &rid,
                    &format!("hello alice, this is message {n} from bob"),
                );
            }
        });
        let _ = tokio::signal::ctrl_c().await;
        bot.abort();
        daemon.shutdown().await;
        Ok(())
    })
}

fn print_banner(url: &str, sim: &Rcsim, key: &str) {
    println!(
        r#"
imrelay demo
  imrelay          {url}   (API key: {key})
  Rocket.Chat sim  {}   (admin super / 123qwe)
  users synced     alice, bob, carol (bob DMs alice every 5 s)

Log alice in and take her client token:
  curl -s -X POST -H 'Authorization: Bearer {key}' {url}/api/v1/users/alice/login

Watch her events (websocat, or any websocket client):
  websocat '{}/ws?token=<client_token>'

Other calls:
  curl -s -H 'Authorization: Bearer {key}' {url}/api/v1/sessions
  curl -s -H 'Authorization: Bearer {key}' {url}/api/v1/users/alice
  curl -s -X POST -H 'Authorization: Bearer {key}' {url}/api/v1/users/alice/logout

Ctrl-C stops everything.
"#,
        sim.url(),
        url.replacen("http", "ws", 1)
    );
}
