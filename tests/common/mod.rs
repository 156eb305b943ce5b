//! The real daemon against rcsim, both on port 0, with HTTP and websocket
//! clients. Every wait has a timeout.
#![allow(dead_code)]

use imrelay::config::Config;
use imrelay::Daemon;
use rcsim::{Rcsim, Seed, Settings, SimConfig};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::time::{Duration, Instant};

pub mod hub;
pub mod raw;

use testkit::JsonSocket;

/// Longest any single wait may take.
pub const WAIT: Duration = Duration::from_secs(10);
pub const API_KEY: &str = "test-api-key-0123456789";

pub struct Env {
    pub sim: Rcsim,
    pub daemon: Option<Daemon>,
    pub http: awc::Client,
    pub url: String,
}

/// rcsim (with `settings`) + the daemon (with `tweak` applied to its config), ready.
pub async fn start(settings: Settings, tweak: impl FnOnce(&mut Config)) -> Env {
    let _ = env_logger::builder().is_test(true).try_init();
    let sim = Rcsim::start(SimConfig {
        seed: Some(Seed::General),
        settings,
        ..Default::default()
    })
    .expect("rcsim");
    let mut cfg = Config::for_rocketchat(&sim.url(), ("super", "123qwe"), API_KEY);
    tweak(&mut cfg);
    let daemon = Daemon::start(cfg, TcpListener::bind("127.0.0.1:0").unwrap()).expect("daemon");
    let url = daemon.url();
    let env = Env {
        sim,
        daemon: Some(daemon),
        http: awc::Client::new(),
        url,
    };
    env.until(WAIT, "the daemon is ready", async || {
        env.get_raw("/readyz").await.0 == 200
    })
    .await;
    env
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: awc::http::header::HeaderMap,
}

impl Resp {
    /// The status and imrelay's `error.code`, to assert both at once.
    pub fn error(&self) -> (u16, Option<&str>) {
        (self.status, self.body["error"]["code"].as_str())
    }
}

impl Env {
    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("running")
    }

    /// Polls an async condition until it holds (for states with no event to await).
    pub async fn until(&self, timeout: Duration, what: &str, cond: impl AsyncFn() -> bool) {
        let start = Instant::now();
        while !cond().await {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}"
            );
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the user's session has subscribed to all its streams
    /// (events posted before that may not reach it).
    pub async fn subscribed(&self, username: &str) {
        self.sim
            .wait_for(WAIT, "subscriptions", |s| {
                s.ddp_subscriptions(username) == 6
            })
            .await
            .unwrap();
    }

    pub async fn get_raw(&self, path: &str) -> (u16, Value) {
        let r = self.call("GET", path, None, Some(API_KEY)).await;
        (r.status, r.body)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Resp {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let fut = match body {
            Some(b) => req.send_json(&b),
            None => req.send(),
        };
        let mut resp = tokio::time::timeout(WAIT, fut)
            .await
            .expect("API timeout")
            .expect("API call");
        let bytes = resp.body().limit(16 << 20).await.expect("body");
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}))
            },
        }
    }

    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.call(method, &format!("/api/v1{path}"), body, Some(API_KEY))
            .await
    }

    /// Creates the user through imrelay.
    pub async fn sync(&self, username: &str) -> Value {
        let r = self.api("PUT", &format!("/users/{username}"), Some(json!({"name": username.to_uppercase(), "email": format!("{username}@example.com")}))).await;
        assert!(
            r.status == 201 || r.status == 200,
            "sync {username}: {} {}",
            r.status,
            r.body
        );
        r.body
    }

    /// Logs the user in through imrelay; returns the body.
    pub async fn login(&self, username: &str) -> Value {
        let r = self
            .api("POST", &format!("/users/{username}/login"), None)
            .await;
        assert_eq!(r.status, 200, "login {username}: {}", r.body);
        r.body
    }

    /// Logs the user in through imrelay; returns the client token.
    pub async fn login_token(&self, username: &str) -> String {
        self.login(username).await["client_token"]
            .as_str()
            .expect("login returns a client_token")
            .to_string()
    }

    /// A native client for a client token, past the welcome frame.
    pub async fn client(&self, token: &str) -> Client {
        let mut c = self.raw_client(token).await.expect("client connects");
        let w = c.json().await;
        assert_eq!(w["type"], "welcome", "{w}");
        c.welcome = w;
        c
    }

    pub async fn raw_client(&self, token: &str) -> Result<Client, awc::error::WsClientError> {
        self.client_with(token, "").await
    }

    /// A native client whose query carries `extra` after the token
    /// (`&since=…&epoch=…`), before the welcome.
    pub async fn client_with(
        &self,
        token: &str,
        extra: &str,
    ) -> Result<Client, awc::error::WsClientError> {
        let url = format!(
            "{}/ws?token={token}{extra}",
            self.url.replacen("http", "ws", 1)
        );
        let (_, framed) = awc::Client::new()
            .ws(url)
            .max_frame_size(16 << 20)
            .connect()
            .await?;
        Ok(Client {
            socket: JsonSocket::new(framed, WAIT),
            welcome: Value::Null,
        })
    }

    /// The user's Rocket.Chat credentials as imrelay caches them.
    pub async fn rc_auth(&self, username: &str) -> (String, String) {
        let e = self.daemon().live(username).await.expect("a live session");
        (e.rc_user_id, e.rc_token)
    }

    /// Calls rcsim's REST API as a user, with the token imrelay holds.
    pub async fn rc_as(&self, username: &str, route: &str, body: Value) -> Value {
        let (uid, token) = self.rc_auth(username).await;
        let mut r = self
            .http
            .post(format!("{}/api/v1/{route}", self.sim.url()))
            .insert_header(("X-User-Id", uid))
            .insert_header(("X-Auth-Token", token))
            .send_json(&body)
            .await
            .expect("rcsim REST");
        let v: Value = r.json().limit(16 << 20).await.expect("JSON");
        assert_eq!(v["success"], true, "{route}: {v}");
        v
    }

    pub async fn shutdown(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.shutdown().await;
        }
    }

    /// `from` DMs `to` `text` in rcsim itself (REST's rate limiter is not
    /// what the tests using it are about).
    pub fn dm(&self, from: &str, to: &str, text: &str) {
        let rid = self.sim.direct_room(from, to).expect("a DM room");
        self.sim.post_message(from, &rid, text).expect("posted");
    }

    /// alice and bob exist and are logged in, alice's session subscribed;
    /// her client token.
    pub async fn alice_and_bob(&self) -> String {
        self.sync("alice").await;
        self.sync("bob").await;
        self.login("bob").await;
        let token = self.login_token("alice").await;
        self.subscribed("alice").await;
        token
    }

    /// Stops the daemon and starts a new one (a new process, as far as its
    /// state goes) against the same rcsim, with `tweak` applied.
    pub async fn restart_daemon(&mut self, tweak: impl FnOnce(&mut Config)) {
        self.shutdown().await;
        let mut cfg = Config::for_rocketchat(&self.sim.url(), ("super", "123qwe"), API_KEY);
        tweak(&mut cfg);
        let daemon = Daemon::start(cfg, TcpListener::bind("127.0.0.1:0").unwrap()).expect("daemon");
        self.url = daemon.url();
        self.daemon = Some(daemon);
        self.until(WAIT, "the daemon is ready", async || {
            self.get_raw("/readyz").await.0 == 200
        })
        .await;
    }
}

/// A native `/ws` client: the socket and the welcome it got.
pub struct Client {
    socket: JsonSocket,
    pub welcome: Value,
}

impl std::ops::Deref for Client {
    type Target = JsonSocket;

    fn deref(&self) -> &JsonSocket {
        &self.socket
    }
}

impl std::ops::DerefMut for Client {
    fn deref_mut(&mut self) -> &mut JsonSocket {
        &mut self.socket
    }
}

impl Client {
    /// The next `event` frame named `name` (others are skipped and returned).
    pub async fn event(&mut self, name: &str) -> (Value, Vec<Value>) {
        let mut skipped = vec![];
        loop {
            let v = self.json().await;
            if v["type"] == "event" && v["event"] == name {
                return (v, skipped);
            }
            skipped.push(v);
        }
    }
}
