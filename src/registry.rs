//! The registry actor: for each user, the session actor (started, replaced
//! and ended here), the connected clients, and the per-user sequence. It
//! routes each session event to every client of that user, serialised once.
//! It also sweeps expired cache entries.

use crate::cache::{Entry, TokenCache};
use crate::client_ws::ToClient;
use crate::config::Config;
use crate::rocketchat::{Credentials, Event, RcError};
use crate::session::{EndReason, SessionAuth, Stop, UserSession};
use actix::prelude::*;
use bytestring::ByteString;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A client connection's id.
pub type ClientId = u64;

/// How a client wants its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `/ws`: `{"type":"event","seq":..}`.
    Native,
    /// `/signalr`: JSON hub protocol invocations.
    SignalR,
}

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
        event.data.hash(&mut h);
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

/// The registry.
pub struct Registry {
    cfg: Arc<Config>,
    cache: Arc<TokenCache>,
    users: HashMap<String, UserState>,
    next_id: u64,
    sweep_every: Duration,
    shutting_down: bool,
    /// Threads the session actors are spread over: their DDP parsing then
    /// runs beside this actor instead of queueing behind it.
    arbiters: Vec<actix::ArbiterHandle>,
}

impl Registry {
    /// A registry over the cache.
    pub fn new(cfg: Arc<Config>, cache: Arc<TokenCache>) -> Self {
        // Sweep often enough that an expiry is seen within a second or a tenth of the TTL.
        let sweep_every =
            (cfg.session.idle_ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arbiters = (0..threads)
            .map(|_| actix::Arbiter::new().handle())
            .collect();
        Registry {
            arbiters,
            cfg,
            cache,
            users: HashMap::new(),
            next_id: 0,
            sweep_every,
            shutting_down: false,
        }
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn start_session(
        &mut self,
        username: &str,
        auth: SessionAuth,
        ctx: &mut Context<Self>,
    ) -> &mut SessionSlot {
        let id = self.next();
        let (name, cfg, registry) = (username.to_string(), Arc::clone(&self.cfg), ctx.address());
        let arbiter = &self.arbiters[id as usize % self.arbiters.len()];
        // Built on its own thread: a session holds thread-local channels.
        let addr = UserSession::start_in_arbiter(arbiter, move |_| {
            UserSession::new(id, name, auth, cfg, registry)
        });
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
        // Only entries past their deadline are looked at: touching every user
        // with clients each second stalled this thread (it also carries every
        // DDP socket) and showed as a latency tail at 9000 users.
        for username in self.cache.expired() {
            let has_clients = self
                .users
                .get(&username)
                .is_some_and(|s| !s.clients.is_empty());
            if self.cfg.session.clients_keep_alive && has_clients {
                self.cache.extend(&username);
            } else {
                self.end_user(&username, EndReason::Expired);
            }
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        for a in &self.arbiters {
            a.stop();
        }
    }

    fn started(&mut self, ctx: &mut Self::Context) {
        // Sessions report with do_send; allow bursts without blocking them.
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(self.sweep_every, |act, _| act.sweep());
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
    /// Who.
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

/// From a session: its first Rocket.Chat login succeeded.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Established {
    /// Who.
    pub username: String,
    /// Which session.
    pub session: u64,
    /// The token it holds.
    pub creds: Credentials,
}

impl Handler<Established> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Established, _: &mut Self::Context) {
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

/// From a session: it is gone, for `reason` (or failed to log in with `error`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionGone {
    /// Who.
    pub username: String,
    /// Which session.
    pub session: u64,
    /// Why it ended.
    pub reason: EndReason,
    /// The login failure, if it never logged in.
    pub error: Option<RcError>,
}

impl Handler<SessionGone> for Registry {
    type Result = ();

    fn handle(&mut self, msg: SessionGone, _: &mut Self::Context) {
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

/// From a session: an event for the user's clients.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    /// Who.
    pub username: String,
    /// Which session.
    pub session: u64,
    /// What.
    pub event: Event,
}

/// The native protocol's event frame.
pub fn event_frame(seq: u64, event: &Event) -> ByteString {
    ByteString::from(format!(
        r#"{{"type":"event","seq":{seq},"event":"{}","data":{}}}"#,
        event.name, event.data
    ))
}

impl Handler<Deliver> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _: &mut Self::Context) {
        let Some(state) = self.users.get_mut(&msg.username) else {
            return;
        };
        let current = state.session.as_ref().is_some_and(|s| s.id == msg.session);
        let retiring = state.retiring.as_ref().is_some_and(|s| s.id == msg.session);
        if !(current || retiring) || state.duplicate(&msg.event) {
            return;
        }
        state.seq += 1;
        if state.clients.is_empty() {
            return;
        }
        // Each frame is built once, and only for a protocol some client speaks.
        let (mut native, mut signalr) = (None, None);
        let mut slow = vec![];
        for (id, (c, protocol)) in &state.clients {
            let frame = match protocol {
                Protocol::Native => {
                    native.get_or_insert_with(|| event_frame(state.seq, &msg.event))
                }
                Protocol::SignalR => signalr
                    .get_or_insert_with(|| crate::signalr::protocol::invocation_frame(&msg.event)),
            };
            if let Err(SendError::Full(_)) = c.try_send(ToClient::Push(frame.clone())) {
                slow.push(*id);
            }
        }
        for id in slow {
            if let Some((c, _)) = state.clients.remove(&id) {
                log::warn!(
                    "user={} client={id} closed: slow consumer (more than {} messages queued)",
                    msg.username,
                    self.cfg.client.queue_limit
                );
                // Queued past the bound on purpose: the close must follow what is already queued.
                c.do_send(ToClient::SlowConsumer);
            }
        }
    }
}

/// A client connected: returns its id and the user's current sequence.
#[derive(Message)]
#[rtype(result = "Result<(ClientId, u64), EndReason>")]
pub struct ClientConnect {
    /// Who.
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
        let id = self.next();
        let state = self.users.entry(msg.username).or_default();
        state.clients.insert(id, (msg.client, msg.protocol));
        Ok((id, state.seq))
    }
}

/// A client disconnected.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientDisconnect {
    /// Who.
    pub username: String,
    /// Which client.
    pub id: ClientId,
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
    /// Who.
    pub username: String,
    /// Why.
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

/// From a session: every subscription is ready (events flow).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscriptionsReady {
    /// Who.
    pub username: String,
    /// Which session.
    pub session: u64,
}

impl Handler<SubscriptionsReady> for Registry {
    type Result = ();

    fn handle(&mut self, msg: SubscriptionsReady, _: &mut Self::Context) {
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
    /// Who.
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
