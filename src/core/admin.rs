//! The admin agent: logs in to Rocket.Chat as the configured admin at
//! start-up (retrying with backoff while Rocket.Chat is unreachable; the
//! daemon is not ready until it succeeds), hands out the credentials,
//! re-logs in when a call finds them dead, and logs out at shutdown. Every
//! `rocketchat.health_interval` it probes Rocket.Chat (REST as the admin,
//! and a DDP round trip) and keeps the daemon's readiness to match.

use super::readiness::Readiness;
use crate::config::Config;
use crate::rocketchat::probe::{probe, ProbeError};
use crate::rocketchat::rest::RestClient;
use crate::rocketchat::{Credentials, RcError};
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The admin agent.
pub struct AdminAgent {
    cfg: Arc<Config>,
    rest: Option<RestClient>,
    creds: Option<Credentials>,
    logging_in: bool,
    attempt: u32,
    waiters: Vec<oneshot::Sender<Result<Credentials, RcError>>>,
    ready: Arc<Readiness>,
    stopped: bool,
    probing: bool,
    /// Bumped at every successful login: a probe result from an older
    /// login's credentials is stale and ignored.
    login_gen: u64,
}

impl AdminAgent {
    /// An agent that keeps `ready` up to date.
    pub fn new(cfg: Arc<Config>, ready: Arc<Readiness>) -> Self {
        AdminAgent {
            cfg,
            rest: None,
            creds: None,
            logging_in: false,
            attempt: 0,
            waiters: vec![],
            ready,
            stopped: false,
            probing: false,
            login_gen: 0,
        }
    }

    /// One probe of Rocket.Chat, unless one is running or there is no
    /// admin token (a login is then under way and decides readiness).
    fn probe(&mut self, ctx: &mut Context<Self>) {
        let Some(creds) = self.creds.clone() else {
            return;
        };
        if self.probing || self.stopped {
            return;
        }
        let Some(rest) = self.rest.clone() else {
            return;
        };
        self.probing = true;
        let gen = self.login_gen;
        let rc = &self.cfg.rocketchat;
        let (ws_url, timeout) = (rc.ws_url.clone(), rc.request_timeout);
        let fut = async move { probe(&rest, &creds, &ws_url, timeout).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.probing = false;
            if act.stopped || gen != act.login_gen || act.creds.is_none() {
                return;
            }
            match res {
                Ok(()) => {
                    if !act.ready.is_ready() {
                        log::info!("Rocket.Chat answers again: ready");
                    }
                    act.ready.set_ready();
                }
                Err(ProbeError::AdminToken) => {
                    log::info!(
                        "admin agent: the probe found the admin token dead; logging in again"
                    );
                    act.ready.set_not_ready(
                        "logging in to Rocket.Chat as the admin again (its token was refused)",
                    );
                    act.creds = None;
                    act.login(ctx);
                }
                Err(e) => {
                    // The detail (addresses, Rocket.Chat's text) goes to the
                    // log; /readyz, unauthenticated, names only the part.
                    if act.ready.set_not_ready(e.part()) {
                        log::warn!("not ready: {e}");
                    }
                }
            }
        }));
    }

    fn login(&mut self, ctx: &mut Context<Self>) {
        if self.logging_in || self.stopped {
            return;
        }
        self.logging_in = true;
        let rc = &self.cfg.rocketchat;
        let (user, password) = (
            rc.admin_username.clone(),
            rc.admin_password.expose().to_string(),
        );
        let rest = RestClient::new(&rc.url, rc.request_timeout);
        let fut = async move { rest.login(&user, &password).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.logging_in = false;
            match res {
                Ok(creds) => {
                    log::info!(
                        "admin agent: logged in to Rocket.Chat as {}",
                        act.cfg.rocketchat.admin_username
                    );
                    act.attempt = 0;
                    act.login_gen += 1;
                    act.creds = Some(creds.clone());
                    act.ready.set_ready();
                    for w in act.waiters.drain(..) {
                        let _ = w.send(Ok(creds.clone()));
                    }
                }
                Err(e) => {
                    act.ready.set_not_ready(
                        "not logged in to Rocket.Chat as the admin (details in imrelay's log)",
                    );
                    for w in act.waiters.drain(..) {
                        let _ = w.send(Err(e.clone()));
                    }
                    let delay = match &e {
                        RcError::RateLimited { retry_after } => *retry_after,
                        _ => Duration::from_millis(500)
                            .saturating_mul(1 << act.attempt.min(6))
                            .min(Duration::from_secs(30)),
                    };
                    act.attempt += 1;
                    let hint = match e {
                        RcError::BadCredentials(_) => {
                            " (check rocketchat.admin_username and rocketchat.admin_password)"
                        }
                        _ => "",
                    };
                    log::warn!("admin agent: login failed: {e}{hint}; retrying in {delay:?}");
                    ctx.run_later(delay, |act, ctx| act.login(ctx));
                }
            }
        }));
    }
}

impl Actor for AdminAgent {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.rest = Some(RestClient::new(
            &self.cfg.rocketchat.url,
            self.cfg.rocketchat.request_timeout,
        ));
        self.login(ctx);
        ctx.run_interval(self.cfg.rocketchat.health_interval, |act, ctx| {
            act.probe(ctx)
        });
    }
}

/// The admin's credentials, if logged in.
#[derive(Message)]
#[rtype(result = "Result<Credentials, RcError>")]
pub struct GetCredentials;

impl Handler<GetCredentials> for AdminAgent {
    type Result = Result<Credentials, RcError>;

    fn handle(&mut self, _: GetCredentials, _: &mut Self::Context) -> Self::Result {
        self.creds.clone().ok_or_else(|| {
            RcError::Unreachable("the admin agent has not logged in to Rocket.Chat yet".into())
        })
    }
}

/// A call found these credentials dead: log in again (once, however many ask).
#[derive(Message)]
#[rtype(result = "Result<Credentials, RcError>")]
pub struct Relogin(pub Credentials);

impl Handler<Relogin> for AdminAgent {
    type Result = ResponseFuture<Result<Credentials, RcError>>;

    fn handle(&mut self, msg: Relogin, ctx: &mut Self::Context) -> Self::Result {
        if let Some(c) = &self.creds {
            if *c != msg.0 {
                let c = c.clone();
                return Box::pin(async move { Ok(c) });
            }
        }
        log::info!("admin agent: Rocket.Chat rejected the admin token; logging in again");
        self.creds = None;
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        self.login(ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or(Err(RcError::Unreachable("admin agent stopped".into())))
        })
    }
}

/// Log out (shutdown): resolves when Rocket.Chat answered or failed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Logout;

impl Handler<Logout> for AdminAgent {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Logout, _: &mut Self::Context) -> Self::Result {
        self.stopped = true;
        self.ready.stop();
        let creds = self.creds.take();
        let rest = self.rest.take();
        Box::pin(
            async move {
                if let (Some(c), Some(r)) = (creds, rest) {
                    match r.logout(&c).await {
                        Ok(()) => log::info!("admin agent: logged out of Rocket.Chat"),
                        Err(e) => log::warn!("admin agent: logout failed: {e}"),
                    }
                }
            }
            .into_actor(self),
        )
    }
}
