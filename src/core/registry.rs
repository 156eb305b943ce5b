//! The registry actor: for each user, the session actor (started, replaced
//! and ended here), the connected clients, and the per-user sequence. It
//! routes each session event to every client of that user, serialised once.
//! It also sweeps expired cache entries.
//!
//! It runs as [`Registries`]: one shard per core, each on its own thread,
//! and every user belongs to one shard by a hash of the name, with its
//! session actor and its client sockets on the same thread. An event then
//! goes from Rocket.Chat's socket to the clients' sockets without a thread
//! hop: with the sessions, the registry and the clients on three threads,
//! each event woke two other threads, and the scheduler's queueing between
//! them was the latency tail.

use super::cache::{Entry, TokenCache};
use super::report::{Deliver, Established, SessionGone, SessionReport, SubscriptionsReady};
use super::session::{SessionAuth, Stop, UserSession};
use super::words::{ClientId, EndReason, Protocol, ToClient};
use crate::config::Config;
use crate::rocketchat::{Event, RcError};
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
    waiters: Vec<oneshot::Sender<Result<Entry, LoginFailed>>>,
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
}

impl UserState {
    /// Whether an event is a copy of one just delivered (during a handover).
    fn duplicate(&mut self, event: &Event) -> bool {
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
    cache: Arc<TokenCache>,
    users: HashMap<String, UserState>,
    sweep_every: Duration,
    shutting_down: bool,
    /// Which shard this is, of how many: the cache is shared by all.
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
    /// Shard `shard.0` of `shard.1` over the cache (see [`Registries::start`]).
    fn new(cfg: Arc<Config>, cache: Arc<TokenCache>, shard: (usize, usize), wires: Wires) -> Self {
        // Sweep often enough that an expiry is seen within a second or a tenth of the TTL.
        let sweep_every =
            (cfg.session.idle_ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
        Registry {
            cfg,
            cache,
            users: HashMap::new(),
            sweep_every,
            shutting_down: false,
            shard,
            wires,
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

    /// Ends a user: stops the session, removes the cache entry, tells and
    /// closes the clients. Returns the removed entry.
    fn end_user(&mut self, username: &str, reason: EndReason) -> Option<Entry> {
        let entry = self.cache.remove(username);
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
        entry
    }

    fn sweep(&mut self) {
        // Only entries near their deadline are looked at: touching every user
        // with clients each second stalled this thread and showed as a
        // latency tail at 9000 users. Those with clients are extended before
        // they lapse (a lapsed entry hides a live session from GET /sessions
        // and makes a login start a new one); the rest end once expired.
        let (me, of) = self.shard;
        for username in self.cache.expiring(self.sweep_every * 2) {
            if shard_of(&username, of) != me {
                continue;
            }
            let has_clients = self
                .users
                .get(&username)
                .is_some_and(|s| !s.clients.is_empty());
            if self.cfg.session.clients_keep_alive && has_clients {
                self.cache.extend(&username);
            } else if self.cache.live(&username).is_none() {
                self.end_user(&username, EndReason::Expired);
            }
        }
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
        ctx.run_interval(self.sweep_every, |act, _| act.sweep());
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
    /// Starts one shard per core, each on a thread of its own, writing
    /// events to clients with `wires`.
    pub fn start(cfg: Arc<Config>, cache: Arc<TokenCache>, wires: Wires) -> Self {
        let threads = crate::cores();
        let shards = (0..threads)
            .map(|i| {
                let arbiter = Arbiter::new().handle();
                let (cfg, cache) = (Arc::clone(&cfg), Arc::clone(&cache));
                let addr = Registry::start_in_arbiter(&arbiter, move |_| {
                    Registry::new(cfg, cache, (i, threads), wires)
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

/// Why a [`Login`] got no entry.
#[derive(Debug)]
pub enum LoginFailed {
    /// Rocket.Chat refused or failed.
    Rc(RcError),
    /// imrelay is stopping.
    ShuttingDown,
    /// The session stopped before it logged in (a logout or delete meanwhile).
    Interrupted,
}

impl From<RcError> for LoginFailed {
    fn from(e: RcError) -> Self {
        LoginFailed::Rc(e)
    }
}

/// The answer of a login waiter: dropped unanswered means interrupted.
async fn answer(rx: oneshot::Receiver<Result<Entry, LoginFailed>>) -> Result<Entry, LoginFailed> {
    rx.await.unwrap_or(Err(LoginFailed::Interrupted))
}

/// Log a user in (or reuse the live login): resolves when the session's
/// Rocket.Chat login succeeded or failed.
#[derive(Message)]
#[rtype(result = "Result<Entry, LoginFailed>")]
pub struct Login {
    pub username: String,
    /// How the session logs in.
    pub auth: SessionAuth,
    /// Make a new Rocket.Chat login even if a live one exists (a new generation).
    pub renew: bool,
}

impl Handler<Login> for Registry {
    type Result = ResponseFuture<Result<Entry, LoginFailed>>;

    fn handle(&mut self, msg: Login, ctx: &mut Self::Context) -> Self::Result {
        if self.shutting_down {
            return Box::pin(async { Err(LoginFailed::ShuttingDown) });
        }
        let username = msg.username;
        let live = self.cache.live(&username);
        let state = self.users.entry(username.clone()).or_default();
        match (&mut state.session, live) {
            // A live login with its session: reuse it (logins are idempotent).
            (Some(slot), Some(_)) if slot.established && !msg.renew => {
                let entry = self.cache.touch(&username);
                return Box::pin(async move { Ok(entry.ok_or(RcError::Unauthorized)?) });
            }
            // A login in progress: wait for it.
            (Some(slot), _) if !slot.established => {
                let (tx, rx) = oneshot::channel();
                slot.waiters.push(tx);
                return Box::pin(answer(rx));
            }
            _ => {}
        }
        // A live token but no session (it ended with the token still valid): resume with it.
        let auth = match (self.cache.live(&username), msg.auth) {
            (Some(e), SessionAuth::Password { .. }) if !msg.renew => {
                SessionAuth::Resume(e.credentials())
            }
            (_, auth) => auth,
        };
        let (tx, rx) = oneshot::channel();
        self.start_session(&username, auth, ctx).waiters.push(tx);
        Box::pin(answer(rx))
    }
}

impl Registry {
    fn established(&mut self, msg: Established) {
        let Some(slot) = self
            .users
            .get_mut(&msg.username)
            .and_then(|s| s.session.as_mut())
            .filter(|s| s.id == msg.session)
        else {
            return;
        };
        let entry = match self.cache.live(&msg.username) {
            // Resumed with the cached token: same generation.
            Some(e) if e.rc_token == msg.creds.token => {
                self.cache.touch(&msg.username).unwrap_or(e)
            }
            _ => self
                .cache
                .install(&msg.username, &msg.creds.user_id, &msg.creds.token),
        };
        slot.established = true;
        for w in slot.waiters.drain(..) {
            let _ = w.send(Ok(entry.clone()));
        }
        log::info!(
            "user={} session={} logged in to Rocket.Chat (generation {})",
            msg.username,
            msg.session,
            entry.generation
        );
    }
}

impl Registry {
    fn session_gone(&mut self, msg: SessionGone) {
        let Some(state) = self.users.get_mut(&msg.username) else {
            return;
        };
        if state.retiring.as_ref().is_some_and(|s| s.id == msg.session) {
            // The replaced session died first: the new one carries on.
            state.retiring = None;
            return;
        }
        let Some(slot) = state.session.take_if(|s| s.id == msg.session) else {
            return;
        };
        if let Some(err) = msg.error {
            for w in slot.waiters {
                let _ = w.send(Err(LoginFailed::Rc(err.clone())));
            }
            if !slot.established {
                if state.clients.is_empty() {
                    self.users.remove(&msg.username);
                }
                return;
            }
        }
        if msg.reason.is_final() {
            self.end_user(&msg.username, msg.reason);
        }
    }
}

impl Registry {
    fn deliver(&mut self, msg: Deliver) {
        let Some(state) = self.users.get_mut(&*msg.username) else {
            return;
        };
        let current = state.session.as_ref().is_some_and(|s| s.id == msg.session);
        let retiring = state.retiring.as_ref().is_some_and(|s| s.id == msg.session);
        if !(current || retiring) {
            return;
        }
        // Each frame is built once, and only for a protocol some client speaks;
        // the last client of a protocol gets the batch itself, the others a copy.
        let mut left = [0usize; 2];
        for (_, p) in state.clients.values() {
            left[p.slot()] += 1;
        }
        let mut frames: [Vec<ByteString>; 2] = [vec![], vec![]];
        for event in &msg.events {
            if state.duplicate(event) {
                continue;
            }
            state.seq += 1;
            for (slot, frames) in frames.iter_mut().enumerate() {
                if left[slot] > 0 {
                    frames.push((self.wires[slot])(state.seq, event));
                }
            }
        }
        if frames.iter().all(Vec::is_empty) {
            return;
        }
        let mut slow = vec![];
        for (id, (c, protocol)) in &state.clients {
            let p = protocol.slot();
            left[p] -= 1;
            let batch = if left[p] == 0 {
                std::mem::take(&mut frames[p])
            } else {
                frames[p].clone()
            };
            if let Err(SendError::Full(_)) = c.try_send(ToClient::Push(batch)) {
                slow.push(*id);
            }
        }
        for id in slow {
            if let Some((c, _)) = state.clients.remove(&id) {
                log::warn!(
                    "user={} client={id} closed: slow consumer (more than {} deliveries queued)",
                    msg.username,
                    self.cfg.client.queue_limit
                );
                // Queued past the bound on purpose: the close must follow what is already queued.
                c.do_send(ToClient::SlowConsumer);
            }
        }
    }
}

impl Handler<SessionReport> for Registry {
    type Result = ();

    fn handle(&mut self, report: SessionReport, _: &mut Self::Context) {
        match report {
            SessionReport::Established(m) => self.established(m),
            SessionReport::Gone(m) => self.session_gone(m),
            SessionReport::Deliver(m) => self.deliver(m),
            SessionReport::SubscriptionsReady(m) => self.subscriptions_ready(m),
        }
    }
}

/// A client connected: returns its id and the user's current sequence.
#[derive(Message)]
#[rtype(result = "Result<(ClientId, u64), EndReason>")]
pub struct ClientConnect {
    pub username: String,
    /// Where to push.
    pub client: Recipient<ToClient>,
    /// In which form.
    pub protocol: Protocol,
}

impl Handler<ClientConnect> for Registry {
    type Result = Result<(ClientId, u64), EndReason>;

    fn handle(&mut self, msg: ClientConnect, _: &mut Self::Context) -> Self::Result {
        if self.shutting_down {
            return Err(EndReason::Shutdown);
        }
        if self.cache.touch(&msg.username).is_none() {
            return Err(EndReason::Expired);
        }
        let id = next_id();
        let state = self.users.entry(msg.username).or_default();
        state.clients.insert(id, (msg.client, msg.protocol));
        Ok((id, state.seq))
    }
}

/// A client disconnected.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientDisconnect {
    pub username: String,
    /// Which client.
    pub id: ClientId,
}

impl ClientDisconnect {
    /// Tells `registry` that the client `id` of `username` is gone (when it
    /// was registered: the registry may have dropped it already).
    pub(crate) fn send(registry: &Addr<Registry>, username: &str, id: Option<ClientId>) {
        if let Some(id) = id {
            registry.do_send(ClientDisconnect {
                username: username.to_string(),
                id,
            });
        }
    }
}

impl Handler<ClientDisconnect> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ClientDisconnect, _: &mut Self::Context) {
        if let Some(state) = self.users.get_mut(&msg.username) {
            state.clients.remove(&msg.id);
            if self.cfg.session.clients_keep_alive {
                // The idle TTL runs from the last client leaving.
                self.cache.touch(&msg.username);
            }
        }
    }
}

/// End a user's session (logout, deletion); returns the removed entry.
#[derive(Message)]
#[rtype(result = "Option<Entry>")]
pub struct EndUser {
    pub username: String,
    pub reason: EndReason,
}

impl Handler<EndUser> for Registry {
    type Result = Option<Entry>;

    fn handle(&mut self, msg: EndUser, _: &mut Self::Context) -> Option<Entry> {
        self.end_user(&msg.username, msg.reason)
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

impl Registry {
    fn subscriptions_ready(&mut self, msg: SubscriptionsReady) {
        let Some(state) = self.users.get_mut(&msg.username) else {
            return;
        };
        if state.session.as_ref().is_none_or(|s| s.id != msg.session) {
            return;
        }
        if let Some(old) = state.retiring.take() {
            log::info!(
                "user={} session={} took over from session={}",
                msg.username,
                msg.session,
                old.id
            );
            old.addr.do_send(Stop(EndReason::Replaced));
            // Copies of events the old session already delivered may still arrive.
            state.dedupe_until = Some(Instant::now() + DEDUPE_WINDOW);
        }
    }
}

/// Tell a user's clients to reconnect (an operator drain); returns how many.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ReconnectClients {
    pub username: String,
}

impl Handler<ReconnectClients> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: ReconnectClients, _: &mut Self::Context) -> usize {
        let Some(state) = self.users.get_mut(&msg.username) else {
            return 0;
        };
        let n = state.clients.len();
        for (_, (c, _)) in state.clients.drain() {
            c.do_send(ToClient::Reconnect);
        }
        n
    }
}
