//! The relay's façade: the use cases every adapter calls (log a user in or
//! reuse the live session, log out, delete, reconnect clients, look a user
//! up as the admin, snapshot), over the registry shards, the engine and the
//! admin agent. It knows no wire format and no HTTP; adapters turn its
//! answers and [`RelayError`]s into theirs.

use super::admin::{AdminAgent, GetCredentials, Relogin};
use super::cache::Entry;
use super::engine::{Engine, EngineError};
use super::readiness::Readiness;
use super::registry::{EndUser, Login, LoginFailed, ReconnectClients, Registries, UserInfo};
use super::session::SessionAuth;
use super::words::EndReason;
use crate::config::{Config, LoginMethod};
use crate::rocketchat::passwords::password_for;
use crate::rocketchat::rest::RestClient;
use crate::rocketchat::{sha256_hex, Credentials, RcError};
use actix::Addr;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a use case can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Rocket.Chat refused or failed.
    #[error(transparent)]
    Rc(#[from] RcError),
    /// A logout or delete overtook the login.
    #[error("the user was logged out or deleted while logging in; log in again")]
    Interrupted,
    /// imrelay is stopping (an actor no longer answers).
    #[error("imrelay is shutting down; retry in a moment")]
    ShuttingDown,
    /// Rocket.Chat has no such user (the admin looked).
    #[error("no Rocket.Chat user {0}")]
    UnknownUser(String),
    /// The engine (where logins and sessions are kept) failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<LoginFailed> for RelayError {
    fn from(e: LoginFailed) -> Self {
        match e {
            LoginFailed::Rc(e) => RelayError::Rc(e),
            LoginFailed::ShuttingDown => RelayError::ShuttingDown,
            LoginFailed::Interrupted => RelayError::Interrupted,
            LoginFailed::Engine(e) => RelayError::Engine(e),
        }
    }
}

/// An internal actor that no longer answers: it only stops when imrelay does.
fn gone(e: actix::MailboxError) -> RelayError {
    log::warn!("an internal actor did not answer: {e}");
    RelayError::ShuttingDown
}

/// The running relay, shared by every adapter (all `Send + Sync`).
#[derive(Clone)]
pub struct Relay {
    pub cfg: Arc<Config>,
    engine: Arc<dyn Engine>,
    /// The registry's shards.
    pub registry: Registries,
    /// The admin agent.
    pub admin: Addr<AdminAgent>,
    /// Whether imrelay can serve, and why not.
    pub ready: Arc<Readiness>,
    login_gate: Arc<LoginGate>,
    ended: Arc<parking_lot::Mutex<HashMap<String, (EndReason, Instant)>>>,
}

/// How long an ended session's reason is remembered (longer than a
/// negotiated SignalR connection lives unused).
const REMEMBER_ENDS: Duration = Duration::from_secs(60);

impl Relay {
    /// The façade over running parts.
    pub(crate) fn new(
        cfg: Arc<Config>,
        engine: Arc<dyn Engine>,
        registry: Registries,
        admin: Addr<AdminAgent>,
        ready: Arc<Readiness>,
    ) -> Relay {
        Relay {
            cfg,
            engine,
            registry,
            admin,
            ready,
            login_gate: Arc::default(),
            ended: Arc::default(),
        }
    }

    /// The user's login, unless it expired.
    pub async fn live(&self, username: &str) -> Result<Option<Entry>, EngineError> {
        self.engine.live(username).get().await
    }

    /// The user a client token was given for, while its login is live.
    pub async fn client_user(&self, token: &str) -> Result<Option<String>, EngineError> {
        self.engine.user_for_client_token(token).get().await
    }

    /// Every live login.
    pub async fn logins(&self) -> Result<Vec<(String, Entry)>, EngineError> {
        self.engine.logins().get().await
    }

    /// The admin agent's credentials.
    pub async fn admin_credentials(&self) -> Result<Credentials, RelayError> {
        Ok(self.admin.send(GetCredentials).await.map_err(gone)??)
    }

    /// `stale` was refused: the admin's fresh credentials (one login, however
    /// many ask).
    pub async fn admin_relogin(&self, stale: Credentials) -> Result<Credentials, RelayError> {
        Ok(self.admin.send(Relogin(stale)).await.map_err(gone)??)
    }

    /// Runs an admin call; on a 401 the agent logs in again and the call is
    /// retried once.
    pub async fn with_admin<T>(
        &self,
        f: impl AsyncFn(&Credentials) -> Result<T, RcError>,
    ) -> Result<T, RelayError> {
        let creds = self.admin_credentials().await?;
        match f(&creds).await {
            Err(RcError::Unauthorized) => {
                let fresh = self.admin_relogin(creds).await?;
                Ok(f(&fresh).await?)
            }
            other => Ok(other?),
        }
    }

    /// The Rocket.Chat user, as the admin sees it.
    pub async fn rc_user(&self, rest: &RestClient, username: &str) -> Result<Value, RelayError> {
        let pw = self.cfg.rocketchat.admin_password.expose();
        self.with_admin(async |a| rest.user_info(a, pw, username).await)
            .await?
            .ok_or_else(|| RelayError::UnknownUser(username.to_string()))
    }

    /// Logs a user in (reusing a live token unless `renew`): the session is
    /// running and its first Rocket.Chat login done when this returns.
    pub async fn login(
        &self,
        rest: &RestClient,
        username: &str,
        password: Option<&str>,
        renew: bool,
    ) -> Result<Entry, RelayError> {
        let auth = match self.live(username).await?.filter(|_| !renew) {
            Some(e) => SessionAuth::Resume(e.credentials()),
            None => {
                let password = password_for(&self.cfg.users, username, password);
                match self.cfg.rocketchat.login_method {
                    LoginMethod::Ddp => SessionAuth::Password {
                        digest: sha256_hex(&password),
                    },
                    LoginMethod::Rest => {
                        SessionAuth::Resume(self.rest_login(rest, username, &password).await?)
                    }
                    LoginMethod::CreateToken => {
                        let rc = &self.cfg.rocketchat;
                        let pw = rc.admin_password.expose();
                        let secret = rc.create_token_secret.as_ref().map(|s| s.expose());
                        let user = self.rc_user(rest, username).await?;
                        let uid = user["_id"].as_str().unwrap_or_default().to_string();
                        SessionAuth::Resume(
                            self.with_admin(async |a| rest.create_token(a, pw, &uid, secret).await)
                                .await?,
                        )
                    }
                }
            }
        };
        let wait = self.cfg.session.login_timeout + Duration::from_secs(1);
        let login = Login {
            username: username.to_string(),
            auth,
            renew,
        };
        let entry = tokio::time::timeout(wait, self.registry.for_user(username).send(login))
            .await
            .map_err(|_| RcError::Unreachable(format!("no login answer within {wait:?}")))?
            .map_err(gone)??;
        Ok(entry)
    }

    async fn rest_login(
        &self,
        rest: &RestClient,
        username: &str,
        password: &str,
    ) -> Result<Credentials, RcError> {
        let deadline = Instant::now() + self.cfg.session.login_timeout;
        loop {
            self.login_gate.wait_turn(deadline).await?;
            match rest.login(username, password).await {
                Err(RcError::RateLimited { retry_after }) => {
                    log::warn!(
                        "user={username} REST login rate-limited by Rocket.Chat; waiting {retry_after:?} for the reset. Fix: login_method = \"ddp\" (default), or raise API_Enable_Rate_Limiter_Limit_Calls_Default"
                    );
                    self.login_gate
                        .blocked_for(retry_after + Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// Ends the user's session for `reason` (its clients are told); the
    /// cache entry it had, if any. The reason is remembered for a while, for
    /// clients that come back with what they negotiated before.
    pub async fn end_user(
        &self,
        username: &str,
        reason: EndReason,
    ) -> Result<Option<Entry>, RelayError> {
        let end = EndUser {
            username: username.to_string(),
            reason,
        };
        let entry = self
            .registry
            .for_user(username)
            .send(end)
            .await
            .map_err(gone)??;
        let mut ended = self.ended.lock();
        ended.retain(|_, (_, at)| at.elapsed() < REMEMBER_ENDS);
        ended.insert(username.to_string(), (reason, Instant::now()));
        Ok(entry)
    }

    /// Why the user's session was ended through [`Relay::end_user`] after
    /// `since`, if it was (and not too long ago to remember).
    pub fn ended_since(&self, username: &str, since: Instant) -> Option<EndReason> {
        self.ended
            .lock()
            .get(username)
            .filter(|(_, at)| *at >= since && at.elapsed() < REMEMBER_ENDS)
            .map(|(r, _)| *r)
    }

    /// Tells the user's clients to reconnect; how many there were.
    pub async fn reconnect_clients(&self, username: &str) -> Result<usize, RelayError> {
        let msg = ReconnectClients {
            username: username.to_string(),
        };
        self.registry
            .for_user(username)
            .send(msg)
            .await
            .map_err(gone)
    }

    /// What the registry knows of one user (clients, a connected session).
    pub async fn user_info(&self, username: &str) -> Result<Option<UserInfo>, RelayError> {
        let snapshot = self
            .registry
            .for_user(username)
            .send(super::registry::Snapshot)
            .await
            .map_err(gone)?;
        Ok(snapshot.get(username).cloned())
    }

    /// What every shard knows, by username.
    pub async fn snapshot(&self) -> Result<HashMap<String, UserInfo>, RelayError> {
        self.registry.snapshot().await.map_err(gone)
    }
}

/// Spaces out REST logins after Rocket.Chat said 429: every caller waits
/// for the reset instead of retrying into the limiter.
#[derive(Default)]
struct LoginGate {
    blocked_until: parking_lot::Mutex<Option<Instant>>,
}

impl LoginGate {
    async fn wait_turn(&self, deadline: Instant) -> Result<(), RcError> {
        let until = *self.blocked_until.lock();
        if let Some(t) = until.filter(|t| *t > Instant::now()) {
            if t > deadline {
                return Err(RcError::RateLimited {
                    retry_after: t - Instant::now(),
                });
            }
            tokio::time::sleep_until(t.into()).await;
        }
        Ok(())
    }

    fn blocked_for(&self, d: Duration) {
        let t = Instant::now() + d;
        let mut b = self.blocked_until.lock();
        if b.is_none_or(|old| old < t) {
            *b = Some(t);
        }
    }
}
