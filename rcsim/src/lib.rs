//! # rcsim — a protocol-faithful Rocket.Chat simulator
//!
//! Speaks Rocket.Chat's REST API (`/api/v1/*`) and its DDP realtime API
//! (`/websocket`) the way a 7.x/8.x monolith does, including its hostile
//! defaults for backends (REST rate limiter, failed-login blocking, two-factor
//! on `users.update`, email 2FA), so that imrelay's tests, benchmarks and demo
//! run against something that behaves like the real server. The reference is
//! `docs/protocol/rocketchat.md`.
//!
//! Layout:
//! - [`settings`]: the Rocket.Chat settings imitated, switchable per test.
//! - [`store`]: users, tokens, rooms, subscriptions, messages; every change
//!   yields the stream events Rocket.Chat would emit.
//! - [`hub`]: DDP connections, stream subscriptions, serialise-once fan-out.
//! - [`ddp`]: the DDP server, one task per websocket.
//! - [`rest`]: the REST dispatcher and routes.
//! - [`sim`]: shared state, logins, permissions, faults, counters.
//! - [`control`]: the optional `/_sim/` HTTP control API.
//! - this file: [`Rcsim`], the handle tests hold.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod control;
pub mod ddp;
pub mod ejson;
pub mod error;
mod faults;
pub mod hub;
pub mod ids;
pub mod limits;
pub mod rest;
pub mod settings;
pub mod sim;
pub mod store;
pub mod tokens;

pub use settings::{CreateTokenProfile, Settings};
pub use sim::{CallRecord, LoginPath};
pub use store::RoomType;

use actix_web::{dev::ServerHandle, web, App, HttpServer};
use hub::Out;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use sim::{RouteFault, Sim};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use store::{NewUser, RoomSpec, UserRef};

/// Data to start with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seed {
    /// Users alice, bob, carol (passwords `alice-pw`, …), the public channel
    /// `general` (id `GENERAL`, default) and the private group `engineering`
    /// (alice, bob).
    Demo,
    /// Only the default public channel `general` (id `GENERAL`), created by
    /// the admin: users come from whoever syncs them (imrelay's demo).
    General,
}

/// How to start a simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The admin account (`admin` role), e.g. `("super", "123qwe")`.
    pub admin: Option<(String, String)>,
    /// Initial data.
    pub seed: Option<Seed>,
    /// Behaviour.
    pub settings: Settings,
    /// HTTP worker threads.
    pub workers: usize,
    /// Enables `/_sim/*` with this secret in `X-Sim-Secret`.
    pub control_secret: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            admin: Some(("super".into(), "123qwe".into())),
            seed: None,
            settings: Settings::default(),
            workers: 2,
            control_secret: None,
        }
    }
}

/// A raw frame to push at a user's DDP sockets.
#[derive(Clone, Debug)]
pub enum RawFrame {
    /// One text frame, as given (may be invalid JSON).
    Text(String),
    /// A valid `changed` event padded to at least this many bytes.
    Oversize(usize),
    /// A valid `changed` event split into this many continuation frames.
    Fragmented(usize),
}

enum Next {
    Stop,
    Restart(Duration),
}

struct Control {
    handle: Mutex<Option<ServerHandle>>,
    next: Mutex<Option<Next>>,
    started: Mutex<mpsc::Sender<std::io::Result<()>>>,
}

/// A running simulator. Dropping it stops the server.
pub struct Rcsim {
    sim: Arc<Sim>,
    addr: SocketAddr,
    control: Arc<Control>,
    started: mpsc::Receiver<std::io::Result<()>>,
    thread: Option<JoinHandle<()>>,
}

/// How long [`Rcsim::start_on`] and [`Rcsim::restart`] wait for the server to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

fn build_server(
    listener: TcpListener,
    sim: Arc<Sim>,
    workers: usize,
    secret: Option<String>,
) -> std::io::Result<actix_web::dev::Server> {
    let max_body = 64 << 20;
    // Node's `server.listen()` backlog (std's bind gives 128).
    socket2::SockRef::from(&listener).listen(511)?;
    Ok(HttpServer::new(move || {
        let mut app = App::new()
            .app_data(web::Data::new(Arc::clone(&sim)))
            .app_data(web::PayloadConfig::new(max_body))
            .route("/websocket", web::get().to(ddp::websocket))
            .route("/api/info", web::get().to(rest::info))
            .route("/api/v1/{name:.+}", web::route().to(rest::dispatch));
        if let Some(s) = &secret {
            app = app.service(control::scope(s.clone()));
        }
        app
    })
    .workers(workers.max(1))
    // Rocket.Chat runs on Node's http server, which disables Nagle on every
    // connection (`noDelay` defaults to true since Node 18): DDP frames
    // leave at once instead of waiting for the previous frame's ACK.
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}

impl Rcsim {
    /// Starts on `127.0.0.1:0`.
    pub fn start(config: SimConfig) -> std::io::Result<Rcsim> {
        Rcsim::start_on(TcpListener::bind("127.0.0.1:0")?, config)
    }

    /// Starts on the given listener (its own thread and actix System, so any
    /// runtime, or none, may hold the handle).
    pub fn start_on(listener: TcpListener, config: SimConfig) -> std::io::Result<Rcsim> {
        let addr = listener.local_addr()?;
        let sim = Arc::new(Sim::new(config.settings.clone()));
        *sim.base_url.write() = format!("http://{addr}");
        seed(&sim, &config);
        let (tx, rx) = mpsc::channel();
        let control = Arc::new(Control {
            handle: Mutex::new(None),
            next: Mutex::new(None),
            started: Mutex::new(tx),
        });
        let thread = {
            let (sim, control) = (Arc::clone(&sim), Arc::clone(&control));
            let workers = config.workers;
            let secret = config.control_secret.clone();
            std::thread::Builder::new()
                .name("rcsim".into())
                .spawn(move || {
                    actix_rt::System::new()
                        .block_on(serve(listener, addr, sim, control, workers, secret));
                })?
        };
        let rcsim = Rcsim {
            sim,
            addr,
            control,
            started: rx,
            thread: Some(thread),
        };
        rcsim.await_started()?;
        Ok(rcsim)
    }

    fn await_started(&self) -> std::io::Result<()> {
        match self.started.recv_timeout(START_TIMEOUT) {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::other(
                "rcsim did not start listening in time",
            )),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:<port>/websocket`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/websocket", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    // ---- settings and data -------------------------------------------

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.sim.settings()
    }

    /// Changes settings; takes effect for the next call or connection.
    pub fn update_settings(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut self.sim.settings.write());
    }

    /// Grants a permission to a role (e.g. `api-bypass-rate-limit` to `user`).
    pub fn grant(&self, permission: &str, role: &str) {
        let mut p = self.sim.permissions.write();
        let roles = p.entry(permission.to_string()).or_default();
        if !roles.iter().any(|r| r == role) {
            roles.push(role.to_string());
        }
    }

    /// Forgets the REST rate-limiter counters and failed-login counts.
    pub fn reset_limits(&self) {
        self.sim.limiter.lock().reset();
        self.sim.ddp_limiter.lock().reset();
        self.sim.guard.lock().reset();
    }

    /// Creates a user directly (no REST, no throttles); returns its id.
    pub fn add_user(
        &self,
        username: &str,
        password: &str,
        verified_email: bool,
    ) -> Result<String, String> {
        let mut out = vec![];
        let opt_in = self.sim.settings.read().email_2fa_auto_opt_in;
        let r = self.sim.store.lock().create_user(
            NewUser {
                username: username.into(),
                name: username.into(),
                email: format!("{username}@example.com"),
                password: password.into(),
                verified: verified_email,
                join_default_channels: true,
                email2fa: opt_in,
                ..Default::default()
            },
            &mut out,
        );
        self.sim.emit(out);
        r.map_err(|e| e.message())
    }

    /// The id of a user.
    pub fn user_id(&self, username: &str) -> Option<String> {
        self.sim
            .store
            .lock()
            .find_user(&UserRef::Username(username.into()))
            .map(|u| u.id.clone())
    }

    fn uid(&self, username: &str) -> Result<String, String> {
        self.user_id(username)
            .ok_or_else(|| format!("no user {username}"))
    }

    /// Creates a channel or group; returns its id.
    pub fn create_room(
        &self,
        t: RoomType,
        name: &str,
        creator: &str,
        members: &[&str],
    ) -> Result<String, String> {
        let creator = self.uid(creator)?;
        let members = members
            .iter()
            .map(|m| self.uid(m))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = vec![];
        let r = self
            .sim
            .store
            .lock()
            .create_room(RoomSpec::new(t, name, &creator, &members), &mut out);
        self.sim.emit(out);
        r.map_err(|e| e.message())
    }

    /// The DM room of two users, created if needed; returns its id.
    pub fn direct_room(&self, a: &str, b: &str) -> Result<String, String> {
        let (a, b) = (self.uid(a)?, self.uid(b)?);
        let mut out = vec![];
        let r = self.sim.store.lock().direct_room(&a, &b, &mut out);
        self.sim.emit(out);
        r.map(|(rid, _)| rid).map_err(|e| e.message())
    }

    /// Posts a message as `from` without HTTP (the load generator's fast
    /// path); returns the message as DDP clients see it.
    pub fn post_message(&self, from: &str, rid: &str, text: &str) -> Result<Value, String> {
        let uid = self.uid(from)?;
        self.post_as(&uid, rid, text)
    }

    /// [`Rcsim::post_message`] by user id, skipping the username look-up.
    pub fn post_as(&self, uid: &str, rid: &str, text: &str) -> Result<Value, String> {
        let real_name = self.sim.settings.read().use_real_name;
        let mut out = vec![];
        let r = self
            .sim
            .store
            .lock()
            .post_message(uid, rid, text, Map::new(), real_name, &mut out);
        self.sim.emit(out);
        r.map_err(|e| e.message())
    }

    /// A login token minted directly (no throttles), as `users.createToken` would.
    pub fn mint_token(&self, username: &str) -> Result<String, String> {
        let uid = self.uid(username)?;
        Ok(self.sim.store.lock().add_token(&uid).0)
    }

    /// How many login tokens a user holds.
    pub fn token_count(&self, username: &str) -> usize {
        self.user_id(username)
            .map_or(0, |u| self.sim.store.lock().token_count(&u))
    }

    /// The pending email two-factor code of a user (what the email would say).
    pub fn email_code(&self, username: &str) -> Option<String> {
        let uid = self.user_id(username)?;
        self.sim
            .store
            .lock()
            .user(&uid)?
            .email_code
            .clone()
            .map(|(c, _)| c)
    }

    /// Removes all of a user's tokens (`users.logout`): their DDP sockets
    /// close (1000, no frame), REST answers 401, resume answers 403.
    pub fn remove_tokens(&self, username: &str) -> usize {
        let Some(uid) = self.user_id(username) else {
            return 0;
        };
        let removed = self.sim.store.lock().remove_user_tokens(&uid);
        self.sim.tokens_removed(&removed, None);
        removed.len()
    }

    /// Marks a user's tokens expired: resume fails ("Your session has
    /// expired"), open sockets and REST keep working until [`Rcsim::purge_expired_tokens`].
    pub fn expire_tokens(&self, username: &str) -> usize {
        self.user_id(username)
            .map_or(0, |u| self.sim.store.lock().expire_user_tokens(&u))
    }

    /// Meteor's periodic purge: removes expired tokens and closes their sockets.
    pub fn purge_expired_tokens(&self) -> usize {
        let removed = self.sim.store.lock().purge_expired_tokens();
        self.sim.tokens_removed(&removed, None);
        removed.len()
    }

    /// Emits `<uid>/force_logout` to the user's subscribers (device
    /// management's `sessions/logout`), and removes their tokens like it does.
    pub fn force_logout(&self, username: &str) {
        if let Some(uid) = self.user_id(username) {
            faults::force_logout(&self.sim, &uid);
        }
    }

    // ---- counters ----------------------------------------------------

    /// Open DDP sockets logged in as `username`.
    pub fn ddp_connections(&self, username: &str) -> usize {
        self.user_id(username)
            .map_or(0, |u| self.sim.hub.user_connections(&u))
    }

    /// All open DDP sockets.
    pub fn total_ddp_connections(&self) -> usize {
        self.sim.hub.connections()
    }

    /// Stream subscriptions held by a user's DDP sockets.
    pub fn ddp_subscriptions(&self, username: &str) -> usize {
        self.user_id(username)
            .map_or(0, |u| self.sim.hub.user_subscriptions(&u))
    }

    /// Successful logins of a user by path.
    pub fn logins(&self, path: LoginPath, username: &str) -> u64 {
        self.user_id(username)
            .map_or(0, |u| self.sim.stats.logins(path, &u))
    }

    /// Successful logins of all users by path.
    pub fn total_logins(&self, path: LoginPath) -> u64 {
        self.sim.stats.total_logins(path)
    }

    /// Failed logins.
    pub fn failed_logins(&self) -> u64 {
        self.sim.stats.failed_logins()
    }

    /// REST calls to a route (name after `/api/v1/`).
    pub fn route_calls(&self, route: &str) -> u64 {
        self.sim.stats.route_calls(route)
    }

    /// The last REST calls, oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.sim.stats.calls()
    }

    /// Events handed to DDP sockets so far.
    pub fn delivered_events(&self) -> u64 {
        self.sim.hub.delivered()
    }

    /// Waits until `pred` holds, re-checking whenever the simulator's state
    /// changes (connections, logins, subscriptions, REST calls). Errors
    /// with `what` after `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Rcsim) -> bool,
    ) -> Result<(), String> {
        let mut rx = self.sim.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(self) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return if pred(self) {
                        Ok(())
                    } else {
                        Err(format!("timed out after {timeout:?} waiting for {what}"))
                    };
                }
            }
        }
    }

    // ---- faults ------------------------------------------------------

    /// Drops DDP sockets (all, or one user's): with `abrupt` the TCP
    /// connection ends with no Close frame, otherwise Close 1000 as sockjs does.
    pub fn drop_ddp(&self, username: Option<&str>, abrupt: bool) -> usize {
        let uid = username.map(|u| self.user_id(u).unwrap_or_default());
        self.sim.hub.signal(
            |user, _| uid.as_deref().is_none_or(|u| user == Some(u)),
            || {
                if abrupt {
                    Out::Abort
                } else {
                    Out::Close(1000, "Normal closure".into())
                }
            },
        )
    }

    /// Refuses new DDP connections (HTTP 503 at the upgrade) for a while.
    pub fn refuse_connections(&self, duration: Duration) {
        *self.sim.faults.refuse_until.lock() = Some(Instant::now() + duration);
    }

    /// Stops (or resumes) answering DDP pings.
    pub fn set_deaf(&self, deaf: bool) {
        self.sim.faults.deaf.store(deaf, Ordering::Relaxed);
    }

    /// Delays every REST response and DDP method result.
    pub fn set_delay(&self, delay: Duration) {
        *self.sim.faults.delay.lock() = delay;
    }

    /// Makes a REST route answer `status` (429 with the real body and
    /// headers, 5xx) for `count` calls, or until cleared with `count = Some(0)`.
    pub fn fail_route(&self, route: &str, status: u16, count: Option<u32>) {
        let mut routes = self.sim.faults.routes.lock();
        if count == Some(0) {
            routes.remove(route);
        } else {
            routes.insert(
                route.to_string(),
                RouteFault {
                    status,
                    remaining: count,
                },
            );
        }
    }

    /// Pushes a raw frame at a user's DDP sockets; returns how many got it.
    pub fn send_frame(&self, username: &str, frame: RawFrame) -> usize {
        self.user_id(username)
            .map_or(0, |uid| faults::push_frame(&self.sim, &uid, frame))
    }

    /// A Rocket.Chat restart: every socket dropped, the port closed for
    /// `down`, then the same port listens again with the same data.
    pub fn restart(&self, down: Duration) -> std::io::Result<()> {
        *self.control.next.lock() = Some(Next::Restart(down));
        self.drop_ddp(None, true);
        if let Some(h) = self.control.handle.lock().take() {
            drop(h.stop(false));
        }
        self.await_started()
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        *self.control.next.lock() = Some(Next::Stop);
        self.drop_ddp(None, true);
        if let Some(h) = self.control.handle.lock().take() {
            drop(h.stop(false));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Rcsim {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    sim: Arc<Sim>,
    control: Arc<Control>,
    workers: usize,
    secret: Option<String>,
) {
    let mut first = Some(listener);
    loop {
        let listener = match first.take() {
            Some(l) => Ok(l),
            None => TcpListener::bind(addr),
        };
        let server =
            listener.and_then(|l| build_server(l, Arc::clone(&sim), workers, secret.clone()));
        let server = match server {
            Ok(s) => s,
            Err(e) => {
                log::error!("rcsim: cannot listen on {addr}: {e}");
                let _ = control.started.lock().send(Err(e));
                return;
            }
        };
        *control.handle.lock() = Some(server.handle());
        let _ = control.started.lock().send(Ok(()));
        let _ = server.await;
        let next = control.next.lock().take();
        match next {
            Some(Next::Restart(down)) => {
                log::info!("rcsim: restarting on {addr} after {down:?}");
                actix_rt::time::sleep(down).await;
            }
            _ => return,
        }
    }
}

fn seed(sim: &Sim, config: &SimConfig) {
    let mut store = sim.store.lock();
    let mut out = vec![];
    let year_ms = 365 * 86_400_000;
    let admin = config.admin.as_ref().and_then(|(name, pw)| {
        store
            .create_user(
                NewUser {
                    username: name.clone(),
                    name: "Administrator".into(),
                    email: format!("{name}@example.com"),
                    password: pw.clone(),
                    roles: vec!["admin".into(), "user".into()],
                    verified: true,
                    age_ms: year_ms,
                    ..Default::default()
                },
                &mut out,
            )
            .ok()
    });
    if config.seed == Some(Seed::General) {
        if let Some(admin) = &admin {
            let general = RoomSpec {
                id: Some("GENERAL".into()),
                default: true,
                ..RoomSpec::new(RoomType::Channel, "general", admin, &[])
            };
            let _ = store.create_room(general, &mut out);
        }
    }
    if config.seed == Some(Seed::Demo) {
        let creator = match admin {
            Some(a) => a,
            None => store
                .create_user(
                    NewUser {
                        username: "rocket.cat".into(),
                        password: "rocket.cat".into(),
                        roles: vec!["bot".into()],
                        ..Default::default()
                    },
                    &mut out,
                )
                .unwrap_or_default(),
        };
        let general = RoomSpec {
            id: Some("GENERAL".into()),
            default: true,
            ..RoomSpec::new(RoomType::Channel, "general", &creator, &[])
        };
        let _ = store.create_room(general, &mut out);
        let mut ids = vec![];
        for (name, display) in [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")] {
            if let Ok(id) = store.create_user(
                NewUser {
                    username: name.into(),
                    name: display.into(),
                    email: format!("{name}@example.com"),
                    password: format!("{name}-pw"),
                    join_default_channels: true,
                    email2fa: config.settings.email_2fa_auto_opt_in,
                    age_ms: year_ms,
                    ..Default::default()
                },
                &mut out,
            ) {
                ids.push(id);
            }
        }
        if ids.len() >= 2 {
            let _ = store.create_room(
                RoomSpec::new(RoomType::Group, "engineering", &ids[0], &ids[1..2]),
                &mut out,
            );
        }
    }
}
