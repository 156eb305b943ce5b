//! The registry's side facing the sessions: logins (a new session, reuse,
//! waiting for one in progress) and what a session reports (logged in,
//! gone, events, subscriptions ready), down to the fan-out of a batch to
//! the user's clients.

use super::{Backfilled, Registry, SessionSlot, UserState, Wires, DEDUPE_WINDOW};
use crate::core::backfill::Running;
use crate::core::cache::Entry;
use crate::core::engine::{Answer, Batch, EngineError};
use crate::core::report::{Deliver, Established, SessionGone, SessionReport, SubscriptionsReady};
use crate::core::session::{SessionAuth, Stop};
use crate::core::words::{EndReason, ToClient};
use crate::rocketchat::backfill::{identity, missed, reload_required, Missed, Waits};
use crate::rocketchat::rest::RestClient;
use crate::rocketchat::{Event, RcError};
use actix::prelude::*;
use bytestring::ByteString;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

#[derive(Debug)]
pub enum LoginFailed {
    /// Rocket.Chat refused or failed.
    Rc(RcError),
    /// imrelay is stopping.
    ShuttingDown,
    /// The session stopped before it logged in (a logout or delete meanwhile).
    Interrupted,
    /// The engine could not record or look up the login.
    Engine(EngineError),
}

impl From<EngineError> for LoginFailed {
    fn from(e: EngineError) -> Self {
        LoginFailed::Engine(e)
    }
}

pub(super) type LoginWaiter = oneshot::Sender<Result<Entry, LoginFailed>>;

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
        let (tx, rx) = oneshot::channel();
        let live = self.engine.live(&msg.username);
        self.then(ctx, live, |act, ctx, live| match live {
            Ok(live) => act.login(msg, live, tx, ctx),
            Err(e) => drop(tx.send(Err(e.into()))),
        });
        Box::pin(answer(rx))
    }
}

impl Registry {
    /// A [`Login`], with the user's live login as the engine has it.
    fn login(&mut self, msg: Login, live: Option<Entry>, tx: LoginWaiter, ctx: &mut Context<Self>) {
        let username = msg.username;
        let state = self.users.entry(username.clone()).or_default();
        match &mut state.session {
            // A live login with its session: reuse it (logins are idempotent).
            Some(slot) if slot.established && live.is_some() && !msg.renew => {
                let touch = self.engine.touch(&username);
                self.then(ctx, touch, |_, _, entry| {
                    let entry = match entry {
                        Ok(Some(e)) => Ok(e),
                        Ok(None) => Err(RcError::Unauthorized.into()),
                        Err(e) => Err(e.into()),
                    };
                    let _ = tx.send(entry);
                });
                return;
            }
            // A login in progress: wait for it.
            Some(slot) if !slot.established => return slot.waiters.push(tx),
            _ => {}
        }
        // A live token but no session (it ended with the token still valid): resume with it.
        let auth = match (live, msg.auth) {
            (Some(e), SessionAuth::Password { .. }) if !msg.renew => {
                SessionAuth::Resume(e.credentials())
            }
            (_, auth) => auth,
        };
        self.start_session(&username, auth, ctx).waiters.push(tx);
    }
}

impl Registry {
    fn established(&mut self, msg: Established, ctx: &mut Context<Self>) {
        if self.slot(&msg.username, msg.session).is_none() {
            return;
        }
        let install = self.engine.install(&msg.username, &msg.creds);
        self.then(ctx, install, move |act, _, entry| {
            let Some(state) = act.users.get_mut(&msg.username) else {
                return;
            };
            let Some(slot) = state.session.as_mut().filter(|s| s.id == msg.session) else {
                return;
            };
            match entry {
                Ok(entry) => {
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
                Err(e) => {
                    log::warn!(
                        "user={} session={} logged in, but the login could not be stored: {e}",
                        msg.username,
                        msg.session
                    );
                    slot.addr.do_send(Stop(EndReason::Failed));
                    for w in slot.waiters.drain(..) {
                        let _ = w.send(Err(e.clone().into()));
                    }
                    state.session = None;
                }
            }
        });
    }

    /// The user's current session, if it is `session`.
    fn slot(&mut self, username: &str, session: u64) -> Option<&mut SessionSlot> {
        self.users
            .get_mut(username)
            .and_then(|s| s.session.as_mut())
            .filter(|s| s.id == session)
    }
}

impl Registry {
    fn session_gone(&mut self, msg: SessionGone, ctx: &mut Context<Self>) {
        let release = self.engine.release(&msg.username, msg.session);
        self.detach(ctx, "releasing the session's owner", release);
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
            self.end_user(ctx, &msg.username, msg.reason, |_| {});
        }
    }
}

impl Registry {
    fn deliver(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        let Some(state) = self.users.get_mut(&*msg.username) else {
            return;
        };
        let current = state.session.as_ref().is_some_and(|s| s.id == msg.session);
        let retiring = state.retiring.as_ref().is_some_and(|s| s.id == msg.session);
        if !(current || retiring) {
            return;
        }
        let mut events = msg.events;
        if let (Some(held), true) = (&mut state.held, current) {
            if held.len() + events.len() <= HELD_MAX {
                return held.append(&mut events);
            }
            // Too much to hold: what was held goes now, the backfill after it.
            let mut all = std::mem::take(held);
            all.append(&mut events);
            events = all;
            state.held = None;
        }
        events.retain(|e| !state.duplicate(e));
        if events.is_empty() {
            return;
        }
        let events: Batch = events.into();
        let fan_out = FanOut {
            wires: self.wires,
            queue_limit: self.cfg.client.queue_limit,
        };
        match self.engine.publish(&msg.username, &events) {
            // The state already in hand: no second lookup per batch.
            Answer::Now(first) => fan_out.push(&msg.username, state, first, &events),
            later => {
                let username = msg.username;
                self.then(ctx, later, move |act, _, first| match first {
                    Ok(first) => {
                        if let Some(state) = act.users.get_mut(&*username) {
                            fan_out.push(&username, state, first, &events);
                        }
                    }
                    Err(e) => {
                        log::warn!("user={username} {} events not delivered: {e}", events.len())
                    }
                });
            }
        }
    }
}

/// What pushing a batch to a user's clients needs of its shard.
#[derive(Clone, Copy)]
struct FanOut {
    wires: Wires,
    queue_limit: usize,
}

impl FanOut {
    /// Pushes a published batch, whose first event is `first`, to the
    /// user's clients on this node.
    fn push(self, username: &str, state: &mut UserState, first: u64, events: &[Event]) {
        state.seq = first + events.len() as u64 - 1;
        // Each frame is built once, and only for a protocol some client speaks;
        // the last client of a protocol gets the batch itself, the others a copy.
        let mut left = [0usize; 2];
        for (_, p) in state.clients.values() {
            left[p.slot()] += 1;
        }
        let mut frames: [Vec<ByteString>; 2] = [vec![], vec![]];
        for (slot, frames) in frames.iter_mut().enumerate() {
            if left[slot] > 0 {
                let wire = self.wires[slot];
                frames.extend((first..).zip(events).map(|(seq, e)| wire(seq, e)));
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
            if let Err(SendError::Full(_)) = c.try_send(ToClient::Push {
                first,
                frames: batch,
            }) {
                slow.push(*id);
            }
        }
        for id in slow {
            if let Some((c, _)) = state.clients.remove(&id) {
                log::warn!(
                    "user={username} client={id} closed: slow consumer (more than {} deliveries queued)",
                    self.queue_limit
                );
                // Queued past the bound on purpose: the close must follow what is already queued.
                c.do_send(ToClient::SlowConsumer);
            }
        }
    }
}

impl Handler<SessionReport> for Registry {
    type Result = ();

    fn handle(&mut self, report: SessionReport, ctx: &mut Self::Context) {
        match report {
            SessionReport::Established(m) => self.established(m, ctx),
            SessionReport::Gone(m) => self.session_gone(m, ctx),
            SessionReport::Deliver(m) => self.deliver(m, ctx),
            SessionReport::SubscriptionsReady(m) => self.subscriptions_ready(m, ctx),
        }
    }
}

impl Registry {
    fn subscriptions_ready(&mut self, msg: SubscriptionsReady, ctx: &mut Context<Self>) {
        if let (Some(lost_at), Some(state)) = (msg.lost_at, self.users.get_mut(&msg.username)) {
            state.held.get_or_insert_with(Vec::new);
            if state.backfilling {
                // One backfill at a time per user: this one follows it.
                let at = state.backfill_again.map_or(lost_at, |t| t.min(lost_at));
                state.backfill_again = Some(at);
            } else {
                state.backfilling = true;
                self.backfill(msg.username.clone(), msg.session, lost_at, ctx);
            }
        }
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

/// Rocket.Chat's clock and ours may differ: a backfill starts this much
/// before the loss (what it fetches twice, the history recognises).
const SKEW: Duration = Duration::from_secs(2);

/// Live events held while a backfill runs, at most.
const HELD_MAX: usize = 20_000;

/// How long after a backfill the same message arriving live is dropped.
const OVERLAP: Duration = Duration::from_secs(30);

/// How a backfill ended.
enum Backfill {
    /// What was missing, to deliver.
    Events(Vec<Event>),
    /// It cannot be delivered: the clients must reload (the reason).
    Reload(&'static str),
}

thread_local! {
    /// One REST client per shard thread (awc's client is not `Send`).
    static REST: std::cell::OnceCell<RestClient> = const { std::cell::OnceCell::new() };
}

impl Registry {
    /// The session `session` is subscribed again after its socket was lost
    /// at `lost_at`: fetch what Rocket.Chat emitted meanwhile, in turn with
    /// every other backfill, and deliver it.
    fn backfill(
        &mut self,
        username: String,
        session: u64,
        lost_at: SystemTime,
        ctx: &mut Context<Self>,
    ) {
        if lost_at.elapsed().unwrap_or_default() > self.cfg.session.backfill_max_age {
            let why = Backfill::Reload("too_old");
            return self.backfilled(username, session, lost_at, HashSet::new(), why, ctx);
        }
        let recent = self.engine.recent(&username);
        self.then(ctx, recent, move |act, ctx, recent| {
            // What the history holds, and where it ends by Rocket.Chat's own
            // clock: all it emitted up to its newest event came on the lost
            // socket before that event, so the backfill starts there (a
            // millisecond before, for a tie), with no skew to allow for.
            let mut held = HashSet::new();
            let mut newest = None;
            for e in recent.unwrap_or_default().iter().flat_map(|b| b.iter()) {
                if let Some((id, at)) = identity(e) {
                    newest = newest.max(Some(at));
                    held.insert((id, at));
                }
            }
            let since = match newest {
                Some(ms) => UNIX_EPOCH + Duration::from_millis(ms.max(1) as u64 - 1),
                None => lost_at - SKEW,
            };
            act.fetch(username, session, since, held, ctx);
        });
    }

    /// Fetches what came after `since`, in turn with every other backfill.
    fn fetch(
        &mut self,
        username: String,
        session: u64,
        since: SystemTime,
        held: HashSet<(String, i64)>,
        ctx: &mut Context<Self>,
    ) {
        let s = &self.cfg.session;
        let urgent = self
            .users
            .get(&username)
            .is_some_and(|u| !u.clients.is_empty());
        let (backfills, max) = (Arc::clone(&self.backfills), s.backfill_max_messages);
        let rc = &self.cfg.rocketchat;
        let rest = REST.with(|r| {
            r.get_or_init(|| RestClient::new(&rc.url, rc.request_timeout))
                .clone()
        });
        let live = self.engine.live(&username);
        self.then(ctx, live, move |act, ctx, live| {
            let Ok(Some(login)) = live else {
                // No login to fetch with: release what is held.
                let why = Backfill::Reload("failed");
                return act.backfilled(username, session, since, held, why, ctx);
            };
            let creds = login.credentials();
            let fetch = async move {
                let waits = Running::start(&backfills, urgent).await;
                let mut tries = 0;
                loop {
                    match missed(&rest, &creds, since, max, &backfills.methods, &waits).await {
                        Err(RcError::RateLimited { retry_after }) if tries < 3 => {
                            tries += 1;
                            waits.pause(retry_after).await;
                        }
                        Ok(Missed::Events(events)) => return Backfill::Events(events),
                        Ok(Missed::TooMany) => return Backfill::Reload("too_many"),
                        Err(e) => {
                            log::warn!("backfill failed: {e}");
                            return Backfill::Reload("failed");
                        }
                    }
                }
            };
            ctx.spawn(fetch.into_actor(act).map(move |done, act, ctx| {
                act.backfilled(username, session, since, held, done, ctx)
            }));
        });
    }

    /// Delivers a backfill's events (those the history does not hold
    /// already), or the event telling clients to reload; then the live
    /// events held meanwhile.
    fn backfilled(
        &mut self,
        username: String,
        session: u64,
        since: SystemTime,
        held: HashSet<(String, i64)>,
        done: Backfill,
        ctx: &mut Context<Self>,
    ) {
        let events: Vec<Event> = match done {
            Backfill::Events(events) => events
                .into_iter()
                .filter(|e| identity(e).is_none_or(|k| !held.contains(&k)))
                .collect(),
            Backfill::Reload(why) => {
                log::warn!("user={username} session={session} cannot backfill ({why}): its clients are told to reload");
                vec![reload_required(since, why)]
            }
        };
        log::info!(
            "user={username} session={session} backfilled {} events",
            events.len()
        );
        let Some(state) = self.users.get_mut(&username) else {
            return;
        };
        let live = state.held.take();
        let again = state.backfill_again.take();
        let seen: Vec<_> = events.iter().filter_map(identity).collect();
        self.deliver_now(&username, session, events, ctx);
        let Some(state) = self.users.get_mut(&username) else {
            return;
        };
        // From now on the same messages arriving live are dropped.
        let b = state.backfilled.get_or_insert_with(|| {
            Box::new(Backfilled {
                seen: HashSet::new(),
                until: Instant::now(),
            })
        });
        b.seen.extend(seen);
        b.until = Instant::now() + OVERLAP;
        match again {
            // The socket was lost again meanwhile: its own backfill comes
            // next, and the live events wait for it too.
            Some(lost_at) => {
                state.held = live.or_else(|| Some(vec![]));
                self.backfill(username, session, lost_at, ctx);
            }
            None => {
                state.backfilling = false;
                // A newer login may have taken over meanwhile: what is held
                // is its events then.
                let current = state.session.as_ref().map_or(session, |s| s.id);
                self.deliver_now(&username, current, live.unwrap_or_default(), ctx);
            }
        }
    }

    /// Delivers events past the hold (what a backfill releases).
    fn deliver_now(
        &mut self,
        username: &str,
        session: u64,
        events: Vec<Event>,
        ctx: &mut Context<Self>,
    ) {
        if events.is_empty() {
            return;
        }
        let deliver = Deliver {
            username: username.into(),
            session,
            events,
        };
        self.deliver(deliver, ctx);
    }
}
