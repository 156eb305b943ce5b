//! Test clients for rcsim: a raw DDP websocket client and a REST helper,
//! both on awc over real sockets. Every wait has a timeout.
#![allow(dead_code)]

use rcsim::{Rcsim, Seed, Settings, SimConfig};
use serde_json::{json, Value};
use std::time::Duration;
use testkit::JsonSocket;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// A seeded simulator with the given settings.
pub fn sim(settings: Settings) -> Rcsim {
    Rcsim::start(SimConfig {
        seed: Some(Seed::Demo),
        settings,
        ..Default::default()
    })
    .expect("rcsim starts")
}

/// A DDP client: the socket and its method ids.
pub struct Ddp {
    socket: JsonSocket,
    next_id: u64,
}

impl std::ops::Deref for Ddp {
    type Target = JsonSocket;

    fn deref(&self) -> &JsonSocket {
        &self.socket
    }
}

impl std::ops::DerefMut for Ddp {
    fn deref_mut(&mut self) -> &mut JsonSocket {
        &mut self.socket
    }
}

impl Ddp {
    /// Opens the websocket; sends nothing.
    pub async fn open(sim: &Rcsim) -> Ddp {
        let (_, framed) = awc::Client::new()
            .ws(sim.ws_url())
            .max_frame_size(64 << 20)
            .connect()
            .await
            .expect("websocket connects");
        Ddp {
            socket: JsonSocket::new(framed, WAIT),
            next_id: 0,
        }
    }

    /// Opens and completes `connect` (version 1), skipping `server_id`.
    pub async fn connected(sim: &Rcsim) -> Ddp {
        let mut d = Ddp::open(sim).await;
        d.send(json!({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}))
            .await;
        let c = d.until(|v| v["msg"] == "connected").await;
        assert_eq!(c["session"].as_str().map(str::len), Some(17));
        d
    }

    /// Connected and logged in with the user's password digest.
    pub async fn logged_in(sim: &Rcsim, user: &str, password: &str) -> Ddp {
        let mut d = Ddp::connected(sim).await;
        let r = d.login_password(user, password).await;
        assert!(r.get("result").is_some(), "login failed: {r}");
        d
    }

    pub fn id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    /// Calls a method; returns the `result` frame (the `updated` goes to the backlog).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.id();
        self.send(json!({"msg": "method", "method": method, "params": params, "id": id}))
            .await;
        self.until(|v| v["msg"] == "result" && v["id"] == id.as_str())
            .await
    }

    pub async fn login_password(&mut self, user: &str, password: &str) -> Value {
        let digest = rcsim::ids::sha256_hex(password);
        self.call("login", json!([{"user": {"username": user}, "password": {"digest": digest, "algorithm": "sha-256"}}]))
            .await
    }

    /// Subscribes; returns the `ready` or `nosub` frame.
    pub async fn sub(&mut self, name: &str, params: Value) -> Value {
        let id = self.id();
        self.send(json!({"msg": "sub", "id": id, "name": name, "params": params}))
            .await;
        self.until(|v| {
            (v["msg"] == "ready" && v["subs"][0] == id.as_str())
                || (v["msg"] == "nosub" && v["id"] == id.as_str())
        })
        .await
    }

    /// The next `changed` event for `collection`/`event`.
    pub async fn event(&mut self, collection: &str, event: &str) -> Value {
        let (c, e) = (collection.to_string(), event.to_string());
        let v = self
            .until(move |v| {
                v["msg"] == "changed"
                    && v["collection"] == c.as_str()
                    && v["fields"]["eventName"] == e.as_str()
            })
            .await;
        v["fields"]["args"].clone()
    }
}

/// A REST response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: awc::http::header::HeaderMap,
    pub body: Value,
}

/// REST helper.
pub struct Rest {
    pub base: String,
    client: awc::Client,
    pub auth: Option<(String, String)>,
}

impl Rest {
    pub fn new(sim: &Rcsim) -> Rest {
        Rest {
            base: format!("{}/api/v1/", sim.url()),
            client: awc::Client::new(),
            auth: None,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        route: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let url = format!("{}{route}", self.base);
        let mut req = self.client.request(method.parse().expect("method"), url);
        if let Some((u, t)) = &self.auth {
            req = req
                .insert_header(("X-User-Id", u.as_str()))
                .insert_header(("X-Auth-Token", t.as_str()));
        }
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let fut = match body {
            Some(b) => req.send_json(&b),
            None => req.send(),
        };
        let mut resp = tokio::time::timeout(WAIT, fut)
            .await
            .expect("REST timeout")
            .expect("REST call");
        let bytes = resp.body().limit(64 << 20).await.expect("body");
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("JSON body")
            },
        }
    }

    pub async fn get(&self, route: &str) -> Resp {
        self.call("GET", route, None, &[]).await
    }

    pub async fn post(&self, route: &str, body: Value) -> Resp {
        self.call("POST", route, Some(body), &[]).await
    }

    /// Logs in by password; panics unless it succeeds.
    pub async fn login(sim: &Rcsim, user: &str, password: &str) -> Rest {
        let mut r = Rest::new(sim);
        let resp = r
            .post("login", json!({"user": user, "password": password}))
            .await;
        assert_eq!(resp.status, 200, "login {user}: {:?}", resp.body);
        r.auth = Some((
            resp.body["data"]["userId"].as_str().unwrap().to_string(),
            resp.body["data"]["authToken"].as_str().unwrap().to_string(),
        ));
        r
    }

    pub fn token(&self) -> String {
        self.auth.as_ref().expect("logged in").1.clone()
    }

    pub fn uid(&self) -> String {
        self.auth.as_ref().expect("logged in").0.clone()
    }
}
