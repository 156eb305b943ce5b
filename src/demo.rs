//! `imrelay demo`: an embedded Rocket.Chat simulator (with a real server's
//! defaults), the daemon against it, demo users synced through imrelay's own
//! API, a chat page at `/` (static files embedded in the binary) and a bot
//! that posts every few seconds while "simulate" is on.
//!
//! The page's endpoints exist only here, never in a configured daemon:
//! `POST /demo/login/{user}` hands out a client token for a demo user,
//! `ANY /demo/rc/{path}` runs chat actions with that client token, and
//! `GET|POST /demo/simulate` reads or flips the bot.

use crate::api::errors::ApiError;
use crate::clients::credentials as client_auth;
use crate::config::Config;
use crate::core::relay::Relay;
use crate::rocketchat::rest::RestClient;
use crate::{Daemon, ExtraRoutes};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use rand::Rng;
use rcsim::{Rcsim, Seed, SimConfig};
use serde_json::json;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The demo's users (username, display name).
pub const USERS: [(&str, &str); 3] = [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")];
/// The bot that posts while simulating.
const BOT: &str = "demo.bot";

/// The page's files, embedded at build time: (path, content type, bytes).
const FILES: [(&str, &str, &[u8]); 4] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/style.css"),
    ),
    (
        "signalr.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/vendor/signalr.min.js"),
    ),
];

struct DemoState {
    simulate: Arc<AtomicBool>,
}

/// A page file: from `IMRELAY_WEB_DIR` when set (editing the page without a
/// rebuild), else the embedded copy.
async fn file(name: web::Path<String>) -> HttpResponse {
    let name = name.into_inner();
    let Some((_, ct, bytes)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return HttpResponse::NotFound().finish();
    };
    let body = match std::env::var("IMRELAY_WEB_DIR") {
        Ok(dir) => {
            let path = if name == "signalr.min.js" {
                format!("{dir}/vendor/{name}")
            } else {
                format!("{dir}/{name}")
            };
            std::fs::read(path).unwrap_or_else(|_| bytes.to_vec())
        }
        Err(_) => bytes.to_vec(),
    };
    HttpResponse::Ok()
        .content_type(*ct)
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}

async fn index() -> HttpResponse {
    file(web::Path::from("index.html".to_string())).await
}

/// `POST /demo/login/{username}`: a client token for a demo user.
async fn login(
    path: web::Path<String>,
    relay: web::Data<Relay>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    let username = path.into_inner();
    if !USERS.iter().any(|(u, _)| *u == username) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "user_not_found",
            "the demo has alice, bob and carol",
        ));
    }
    let entry = relay.login(&rest, &username, None, false).await?;
    let name = USERS.iter().find(|(u, _)| *u == username).map(|(_, n)| *n);
    Ok(HttpResponse::Ok().json(json!({"username": username, "name": name, "rc_user_id": entry.rc_user_id, "client_token": entry.client_token})))
}

/// `ANY /demo/rc/{path}`: a chat action as the user the client token belongs to.
async fn rc(
    req: HttpRequest,
    payload: web::Payload,
    relay: web::Data<Relay>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    let Some(token) = client_auth::credential(&req, &relay)? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_client_token",
            "send Authorization: Bearer <client_token>",
        ));
    };
    let username = client_auth::authenticate_token(&token, &relay, &rest).await?;
    let path = crate::api::proxy::route_path(&req)?;
    crate::api::proxy::as_user(&req, &username, &path, payload, &relay, &rest).await
}

/// `GET|POST /demo/simulate` (`{"on": bool}`).
async fn simulate_switch(body: web::Bytes, demo: web::Data<DemoState>) -> HttpResponse {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
        if let Some(on) = v.get("on").and_then(|v| v.as_bool()) {
            demo.simulate.store(on, Ordering::Relaxed);
        }
    }
    HttpResponse::Ok().json(json!({"on": demo.simulate.load(Ordering::Relaxed)}))
}

fn routes(simulate: Arc<AtomicBool>) -> ExtraRoutes {
    let demo = web::Data::new(DemoState { simulate });
    Arc::new(move |c: &mut web::ServiceConfig| {
        c.app_data(demo.clone())
            .route("/", web::get().to(index))
            .route("/static/{name}", web::get().to(file))
            .route("/demo/login/{username}", web::post().to(login))
            .route("/demo/rc/{path:.+}", web::route().to(rc))
            .route("/demo/simulate", web::get().to(simulate_switch))
            .route("/demo/simulate", web::post().to(simulate_switch));
    })
}

/// Runs until Ctrl-C.
pub fn run(listen: &str, simulate_on: bool) -> Result<(), String> {
    let sim = Rcsim::start(SimConfig {
        seed: Some(Seed::General),
        ..Default::default()
    })
    .map_err(|e| format!("cannot start the simulator: {e}"))?;
    // What `imrelay doctor` advises for a real server: every chat action
    // reaches Rocket.Chat from imrelay's one IP, and the default limiter
    // allows 10 calls a minute per route for all users together.
    sim.grant("api-bypass-rate-limit", "user");
    let api_key: String = (0..32)
        .map(|_| char::from(b"abcdefghijkmnpqrstuvwxyz23456789"[rand::rng().random_range(0..32)]))
        .collect();
    let mut cfg = Config::for_rocketchat(&sim.url(), ("super", "123qwe"), &api_key);
    cfg.server.listen = listen
        .parse()
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    let listener = TcpListener::bind(cfg.server.listen)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let simulate = Arc::new(AtomicBool::new(simulate_on));
    actix_rt::System::new().block_on(async move {
        let daemon = Daemon::start_with(cfg, listener, Some(routes(Arc::clone(&simulate))))
            .map_err(|e| e.to_string())?;
        let url = daemon.url();
        let started = Instant::now();
        while !daemon.is_ready() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err("the admin agent did not log in to the simulator".to_string());
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        let http = awc::Client::new();
        for (name, display) in USERS.iter().chain([(BOT, "Demo Bot")].iter()) {
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
            for n in 1u64.. {
                actix_rt::time::sleep(Duration::from_secs(4)).await;
                if !simulate.load(Ordering::Relaxed) {
                    continue;
                }
                // Round-robin DMs (they raise unread badges), and #general now and then.
                let (user, _) = USERS[(n as usize) % USERS.len()];
                let _ = match sim.direct_room(BOT, user) {
                    Ok(rid) => {
                        sim.post_message(BOT, &rid, &format!("Simulated message {n} for {user}"))
                    }
                    Err(e) => Err(e),
                };
                if n % 3 == 0 {
                    let _ =
                        sim.post_message(BOT, "GENERAL", &format!("Simulated announcement {n}"));
                }
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
  users synced     alice, bob, carol (and demo.bot, which posts every 4 s while simulating)

Open the chat page in two windows and sign in as alice and bob:
  {url}/

Or from a terminal: log alice in and take her client token,
  curl -s -X POST -H 'Authorization: Bearer {key}' {url}/api/v1/users/alice/login
then watch her events (websocat, or any websocket client):
  websocat '{}/ws?token=<client_token>'

Other calls:
  curl -s -H 'Authorization: Bearer {key}' {url}/api/v1/sessions
  curl -s -X POST -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \
       -d '{{"channel":"@alice","text":"hi"}}' {url}/api/v1/users/bob/rc/chat.postMessage
  curl -s -X POST -d '{{"on":false}}' {url}/demo/simulate        (stop the bot)

Ctrl-C stops everything.
"#,
        sim.url(),
        url.replacen("http", "ws", 1)
    );
}
