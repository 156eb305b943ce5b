//! The registry actor: for each user, the session actor (started, replaced
//! and ended here), the connected clients, and the per-user sequence. It
//! routes each session event to every client of that user, serialised once.
//! It also sweeps expired logins. What another node may need to see
//! (logins, session ownership, the user's event stream) it keeps through
//! the [`Engine`] seam.
//!
//! It runs as [`Registries`]: one shard per core, each on its own thread,
//! and every user belongs to one shard by a hash of the name, with its
//! session actor and its client sockets on the same thread. An event then
//! goes from Rocket.Chat's socket to the clients' sockets without a thread
//! hop: with the sessions, the registry and the clients on three threads,
//! each event woke two other threads, and the scheduler's queueing between
//! them was the latency tail.

mod clients;
mod sessions;

pub use clients::{ClientConnect, ClientDisconnect, Connected, ReconnectClients, Refused};
use sessions::LoginWaiter;
pub use sessions::{Login, LoginFailed};

use super::backfill::Backfills;
use super::cache::Entry;
use super::engine::{Answer, Engine, EngineError};
use super::session::{SessionAuth, Stop, UserSession};
use super::words::{ClientId, EndReason, Protocol, ToClient};
use crate::config::Config;
use crate::rocketchat::Event;
use actix::prelude::*;
use bytestring::ByteString;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

struct SessionSlot {
    id: u64,
    addr: Addr<UserSession>,
    established: bool,
    waiters: Vec<LoginWaiter>,
}

/// How long after a handover identical events are still recognised.
const DEDUPE_WINDOW: Duration = Duration::from_secs(5);
/// How many recent event fingerprints a handover remembers.
const DEDUPE_DEPTH: usize = 512;

#[derive(Default)]
struct UserState {
    session: Option<SessionSlot>,
    /// The session a newer login replaces: it keeps delivering until the new
    /// one's subscriptions are all ready, so the switch loses nothing.
    retiring: Option<SessionSlot>,
    clients: HashMap<ClientId, (Recipient<ToClient>, Protocol)>,
    seq: u64,
    /// While both sessions may deliver the same event: fingerprints seen.
    recent: VecDeque<u64>,
    dedupe_until: Option<Instant>,
    /// Shortly after a backfill: what it delivered, so that the same
    /// message arriving live as well is dropped.
    backfilled: Option<Box<Backfilled>>,
    /// While a backfill runs: the session's live events, delivered after
    /// what was missed.
    held: Option<Vec<Event>>,
    /// A backfill is running; the loss time of another to run after it.
    backfilling: bool,
    backfill_again: Option<std::time::SystemTime>,
}

/// The messages and subscriptions a backfill delivered, by `_id` and
/// `_updatedAt`, until a deadline.
struct Backfilled {
    seen: std::collections::HashSet<(String, i64)>,
    until: Instant,
}

impl UserState {
    /// Whether an event is a copy of one just delivered (during a handover).
    fn duplicate(&mut self, event: &Event) -> bool {
        if let Some(b) = &self.backfilled {
            if b.until < Instant::now() {
                self.backfilled = None;
            } else if crate::rocketchat::backfill::identity(event)
                .is_some_and(|k| b.seen.contains(&k))
            {
                return true;
            }
        }
        if self.dedupe_until.is_none_or(|t| t < Instant::now()) {
            self.recent.clear();
            self.dedupe_until = None;
            return false;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        event.name.hash(&mut h);
        event.data.hash_into(&mut h);
        let f = h.finish();
        if self.recent.contains(&f) {
            return true;
        }
        if self.recent.len() == DEDUPE_DEPTH {
            self.recent.pop_front();
        }
        self.recent.push_back(f);
        false
    }
}

/// Session and client ids, unique across shards (logs name them).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed) + 1
}

/// One shard of the registry.
pub struct Registry {
    cfg: Arc<Config>,
    engine: Arc<dyn Engine>,
    backfills: Arc<Backfills>,
    users: HashMap<String, UserState>,
    sweep_every: Duration,
    shutting_down: bool,
    /// Which shard this is, of how many: the engine is shared by all.
    shard: (usize, usize),
    wires: Wires,
}

/// How a client protocol writes one event (its sequence number and the
/// event): a frame the registry passes on without looking inside. The
/// client adapters provide one per [`Protocol`], in its slot's order.
pub type EventFrame = fn(u64, &Event) -> ByteString;

/// Every protocol's [`EventFrame`], by [`Protocol::slot`].
pub type Wires = [EventFrame; 2];

/// The shard of `username` among `shards`.
fn shard_of(username: &str, shards: usize) -> usize {
    // SipHash with fixed keys: stable for the process's life.
    let mut h = std::hash::DefaultHasher::new();
    username.hash(&mut h);
    (h.finish() % shards as u64) as usize
}

impl Registry {
    /// Shard `shard.0` of `shard.1` over the engine (see [`Registries::start`]).
    fn new(
        cfg: Arc<Config>,
        engine: Arc<dyn Engine>,
        backfills: Arc<Backfills>,
        shard: (usize, usize),
        wires: Wires,
    ) -> Self {
        // Sweep often enough that an expiry is seen within a second or a tenth of the TTL.
        let sweep_every =
            (cfg.session.idle_ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
        Registry {
            cfg,
            engine,
            backfills,
            users: HashMap::new(),
            sweep_every,
            shutting_down: false,
            shard,
            wires,
        }
    }

    /// Runs `then` with the engine's answer: at once when it is known, else
    /// once it is, holding this shard's mailbox meanwhile so that whatever
    /// the shard handles next sees its effect.
    fn then<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        answer: Answer<T>,
        then: impl FnOnce(&mut Self, &mut Context<Self>, Result<T, EngineError>) + 'static,
    ) {
        match answer {
            Answer::Now(v) => then(self, ctx, Ok(v)),
            Answer::Later(f) => {
                ctx.wait(f.into_actor(self).map(move |r, act, ctx| then(act, ctx, r)))
            }
        }
    }

    /// Lets an engine call whose answer nothing waits for finish; a failure
    /// is logged.
    fn detach<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        what: &'static str,
        answer: Answer<T>,
    ) {
        if let Answer::Later(f) = answer {
            ctx.spawn(f.into_actor(self).map(move |r, _, _| {
                if let Err(e) = r {
                    log::warn!("{what}: {e}");
                }
            }));
        }
    }

    fn start_session(
        &mut self,
        username: &str,
        auth: SessionAuth,
        ctx: &mut Context<Self>,
    ) -> &mut SessionSlot {
        let id = next_id();
        // On this shard's thread, beside the user's clients.
        let addr = UserSession::new(
            id,
            username.to_string(),
            auth,
            Arc::clone(&self.cfg),
            ctx.address().recipient(),
        )
        .start();
        let claim = self.engine.claim(username, id);
        self.detach(ctx, "recording the session's owner", claim);
        let state = self.users.entry(username.to_string()).or_default();
        if let Some(old) = state.session.take() {
            // A newer login replaces the session; clients stay. A working
            // session delivers until the new one is ready.
            if old.established {
                if let Some(older) = state.retiring.replace(old) {
                    older.addr.do_send(Stop(EndReason::Replaced));
                }
                state.dedupe_until = Some(Instant::now() + Duration::from_secs(3600));
            } else {
                // Unreached: a Login waits for a session still logging in.
                old.addr.do_send(Stop(EndReason::Replaced));
            }
        }
        state.session.insert(SessionSlot {
            id,
            addr,
            established: false,
            waiters: vec![],
        })
    }

    /// Ends a user: stops the session, tells and closes the clients, and
    /// ends the user in the engine; `done` gets the login it had.
    fn end_user(
        &mut self,
        ctx: &mut Context<Self>,
        username: &str,
        reason: EndReason,
        done: impl FnOnce(Result<Option<Entry>, EngineError>) + 'static,
    ) {
        let end = self.engine.end(username);
        self.then(ctx, end, |_, _, entry| done(entry));
        if let Some(state) = self.users.remove(username) {
            if let Some(s) = state.session {
                s.addr.do_send(Stop(reason));
                for w in s.waiters {
                    let _ = w.send(Err(LoginFailed::Interrupted));
                }
            }
            if let Some(s) = state.retiring {
                s.addr.do_send(Stop(reason));
            }
            for (c, _) in state.clients.values() {
                c.do_send(ToClient::End(reason));
            }
            log::info!("user={username} session ended: {}", reason.as_str());
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        // Only entries near their deadline are looked at: touching every user
        // with clients each second stalled this thread and showed as a
        // latency tail at 9000 users. Those with clients are extended before
        // they lapse (a lapsed entry hides a live session from GET /sessions
        // and makes a login start a new one); the rest end once expired.
        let expiring = self.engine.expiring(self.sweep_every * 2);
        self.then(ctx, expiring, |act, ctx, expiring| {
            let expiring = match expiring {
                Ok(e) => e,
                Err(e) => return log::warn!("sweep skipped: {e}"),
            };
            let (me, of) = act.shard;
            let now = tokio::time::Instant::now();
            for (username, deadline) in expiring {
                if shard_of(&username, of) != me {
                    continue;
                }
                let has_clients = act
                    .users
                    .get(&username)
                    .is_some_and(|s| !s.clients.is_empty());
                if act.cfg.session.clients_keep_alive && has_clients {
                    let extend = act.engine.extend(&username);
                    act.detach(ctx, "extending a login with clients", extend);
                } else if deadline <= now {
                    act.end_user(ctx, &username, EndReason::Expired, |_| {});
                }
            }
        });
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        // The shard's thread ends with it.
        Arbiter::current().stop();
    }

    fn started(&mut self, ctx: &mut Self::Context) {
        // Sessions report with do_send; allow bursts without blocking them.
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(self.sweep_every, |act, ctx| act.sweep(ctx));
    }
}

/// The registry's shards, one per core: a user's shard holds its session
/// and its clients, all on the shard's thread.
#[derive(Clone)]
pub struct Registries {
    shards: Arc<[Shard]>,
}

/// A shard: its actor and the thread it runs on.
pub struct Shard {
    /// The shard's registry actor.
    pub addr: Addr<Registry>,
    /// Its thread, where the user's client sockets run too.
    pub arbiter: ArbiterHandle,
}

impl Registries {
    /// Starts one shard per core, each on a thread of its own, over the
    /// engine, writing events to clients with `wires`.
    pub(crate) fn start(
        cfg: Arc<Config>,
        engine: Arc<dyn Engine>,
        backfills: Arc<Backfills>,
        wires: Wires,
    ) -> Self {
        let threads = crate::cores();
        let shards = (0..threads)
            .map(|i| {
                let arbiter = Arbiter::new().handle();
                let (cfg, engine) = (Arc::clone(&cfg), Arc::clone(&engine));
                let backfills = Arc::clone(&backfills);
                let addr = Registry::start_in_arbiter(&arbiter, move |_| {
                    Registry::new(cfg, engine, backfills, (i, threads), wires)
                });
                Shard { addr, arbiter }
            })
            .collect();
        Registries { shards }
    }

    /// The shard `username` belongs to (always the same one).
    pub fn shard(&self, username: &str) -> &Shard {
        &self.shards[shard_of(username, self.shards.len())]
    }

    /// The registry actor of `username`'s shard.
    pub fn for_user(&self, username: &str) -> &Addr<Registry> {
        &self.shard(username).addr
    }

    /// Every shard's users.
    pub async fn snapshot(&self) -> Result<HashMap<String, UserInfo>, MailboxError> {
        let mut all = HashMap::new();
        for s in self.shards.iter() {
            all.extend(s.addr.send(Snapshot).await?);
        }
        Ok(all)
    }

    /// [`Shutdown`] on every shard: how many clients were told.
    pub async fn shutdown(&self) -> usize {
        let mut n = 0;
        for s in self.shards.iter() {
            n += s.addr.send(Shutdown).await.unwrap_or(0);
        }
        n
    }
}

/// End a user's session (logout, deletion); returns the login it had.
#[derive(Message)]
#[rtype(result = "Result<Option<Entry>, EngineError>")]
pub struct EndUser {
    pub username: String,
    pub reason: EndReason,
}

impl Handler<EndUser> for Registry {
    type Result = ResponseFuture<Result<Option<Entry>, EngineError>>;

    fn handle(&mut self, msg: EndUser, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.end_user(ctx, &msg.username, msg.reason, |entry| {
            let _ = tx.send(entry);
        });
        Box::pin(async { rx.await.unwrap_or(Ok(None)) })
    }
}

/// One user's state, for the operator API.
#[derive(Clone, Debug)]
pub struct UserInfo {
    /// Connected clients.
    pub clients: usize,
    /// Whether a session actor runs and has logged in.
    pub session: bool,
    /// Last sequence number.
    pub seq: u64,
}

/// Per-user state for `GET /sessions` and `GET /users/{u}`.
#[derive(Message)]
#[rtype(result = "HashMap<String, UserInfo>")]
pub struct Snapshot;

impl Handler<Snapshot> for Registry {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.users
                .iter()
                .map(|(u, s)| {
                    (
                        u.clone(),
                        UserInfo {
                            clients: s.clients.len(),
                            session: s.session.as_ref().is_some_and(|s| s.established),
                            seq: s.seq,
                        },
                    )
                })
                .collect(),
        )
    }
}

/// Graceful stop: clients get 1001, sessions close their DDP sockets.
/// Returns how many clients were told.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Shutdown;

impl Handler<Shutdown> for Registry {
    type Result = usize;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> usize {
        self.shutting_down = true;
        let mut n = 0;
        for (_, state) in self.users.drain() {
            for (c, _) in state.clients.values() {
                c.do_send(ToClient::GoingAway);
                n += 1;
            }
            if let Some(s) = state.session {
                s.addr.do_send(Stop(EndReason::Shutdown));
                for w in s.waiters {
                    let _ = w.send(Err(LoginFailed::ShuttingDown));
                }
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::deferred::Deferred;
    use crate::core::engine::memory::MemoryEngine;
    use crate::rocketchat::Credentials;

    /// A client that keeps what the registry tells it.
    struct Collector(Arc<parking_lot::Mutex<Vec<String>>>);

    impl Actor for Collector {
        type Context = Context<Self>;
    }

    impl Handler<ToClient> for Collector {
        type Result = ();

        fn handle(&mut self, msg: ToClient, _: &mut Self::Context) {
            let what = match msg {
                ToClient::Push { frames, .. } => format!("push {}", frames.len()),
                ToClient::End(r) => format!("end {}", r.as_str()),
                _ => "other".into(),
            };
            self.0.lock().push(what);
        }
    }

    fn backfills() -> Arc<Backfills> {
        Backfills::start(&crate::config::SessionConfig::default())
    }

    fn no_history() -> crate::core::engine::history::Bounds {
        crate::core::engine::history::Bounds {
            size: 0,
            ttl: Duration::ZERO,
        }
    }

    fn frame(seq: u64, _: &Event) -> ByteString {
        seq.to_string().into()
    }

    #[actix::test]
    async fn with_answers_after_a_round_trip_what_follows_sees_what_came_before() {
        let inner = Arc::new(MemoryEngine::new(Duration::from_secs(60), no_history()));
        let creds = Credentials {
            user_id: "u1".into(),
            token: "t1".into(),
        };
        inner.install("alice", &creds).get().await.unwrap();
        let cfg = Arc::new(Config::for_rocketchat(
            "http://127.0.0.1:9",
            ("admin", "pw"),
            "a-key-of-sixteen-chars",
        ));
        let engine: Arc<dyn Engine> = Arc::new(Deferred::new(Arc::clone(&inner)));
        let shard = Registry::new(cfg, engine, backfills(), (0, 1), [frame, frame]).start();
        let told = Arc::new(parking_lot::Mutex::new(vec![]));
        let client = Collector(Arc::clone(&told)).start();
        let connect = || ClientConnect {
            username: "alice".into(),
            client: client.clone().recipient(),
            protocol: Protocol::Native,
            since: None,
        };
        let connected = shard.send(connect()).await.unwrap().unwrap();
        assert_eq!(connected.stream.last, 0);
        // Sent together: the connect is handled only after the end's round trip.
        let end = shard.send(EndUser {
            username: "alice".into(),
            reason: EndReason::LoggedOut,
        });
        let again = shard.send(connect());
        let ended = end.await.unwrap().unwrap();
        assert_eq!(ended.map(|e| e.rc_token).as_deref(), Some("t1"));
        assert!(matches!(
            again.await.unwrap(),
            Err(Refused::Ended(EndReason::Expired))
        ));
        assert!(inner.live("alice").get().await.unwrap().is_none());
        tokio::time::timeout(Duration::from_secs(5), async {
            while told.lock().is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the client is told");
        assert_eq!(*told.lock(), vec!["end logged_out".to_string()]);
    }

    /// An idle login ends at the first sweep past its TTL, unless a
    /// connected client keeps it (with `clients_keep_alive`): on the
    /// paused clock, hours of idling take no time.
    #[actix::test]
    async fn the_sweep_ends_idle_logins_and_keeps_those_with_clients() {
        tokio::time::pause();
        // (clients_keep_alive, a client stays connected, the login ends)
        let cases = [
            (true, true, false),
            (false, true, true),
            (true, false, true),
        ];
        for (keep_alive, stays, ends) in cases {
            let ttl = Duration::from_secs(600);
            let inner = Arc::new(MemoryEngine::new(ttl, no_history()));
            let creds = Credentials {
                user_id: "u1".into(),
                token: "t1".into(),
            };
            inner.install("alice", &creds).get().await.unwrap();
            let mut cfg = Config::for_rocketchat(
                "http://127.0.0.1:9",
                ("admin", "pw"),
                "a-key-of-sixteen-chars",
            );
            cfg.session.idle_ttl = ttl;
            cfg.session.clients_keep_alive = keep_alive;
            let engine: Arc<dyn Engine> = Arc::clone(&inner) as _;
            let shard =
                Registry::new(Arc::new(cfg), engine, backfills(), (0, 1), [frame, frame]).start();
            let told = Arc::new(parking_lot::Mutex::new(vec![]));
            let client = Collector(Arc::clone(&told)).start();
            let connect = ClientConnect {
                username: "alice".into(),
                client: client.recipient(),
                protocol: Protocol::Native,
                since: None,
            };
            let id = shard.send(connect).await.unwrap().unwrap().id;
            if !stays {
                shard
                    .send(ClientDisconnect {
                        username: "alice".into(),
                        id,
                    })
                    .await
                    .unwrap();
            }
            tokio::time::sleep(ttl * 3).await;
            let known = shard.send(Snapshot).await.unwrap().contains_key("alice");
            let live = inner.live("alice").get().await.unwrap().is_some();
            let case = format!("keep_alive={keep_alive} client={stays}");
            assert_eq!(!known && !live, ends, "{case}");
            let expected: Vec<String> = if ends && stays {
                vec!["end expired".into()]
            } else {
                vec![]
            };
            assert_eq!(*told.lock(), expected, "{case}");
        }
    }
}
