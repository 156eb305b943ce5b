//! The simulator's shared state and the operations both protocols use:
//! logins (with Rocket.Chat's throttles and two-factor rules), token removal
//! (which closes the DDP sockets logged in with them), permissions, faults
//! and counters.

use crate::ejson::now_ms;
use crate::error::MeteorError;
use crate::hub::{ConnId, Hub};
use crate::ids;
use crate::limits::{DdpLimiter, LoginGuard, RateLimiter};
use crate::settings::Settings;
use crate::store::{Emit, Store, UserRef};
use parking_lot::{Mutex, RwLock};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How a login proves who it is.
#[derive(Clone, Debug)]
pub enum Credential {
    /// A password, plain or as a lowercase SHA-256 hex digest.
    Password {
        /// Who.
        user: UserRef,
        /// Plain text, or `{digest, algorithm:"sha-256"}`.
        password: Password,
        /// An email/TOTP code (`code`, `x-2fa-code`, or `{totp:{code}}`).
        code: Option<String>,
    },
    /// `{resume: token}`.
    Resume(String),
}

/// A password as a client sends it.
#[derive(Clone, Debug)]
pub enum Password {
    /// Plain text.
    Plain(String),
    /// SHA-256 hex.
    Digest(String),
}

/// Which path a login came by (for counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoginPath {
    /// `POST /api/v1/login`.
    Rest,
    /// DDP `login`.
    Ddp,
    /// `users.createToken`.
    CreateToken,
}

/// A successful login.
#[derive(Clone, Debug)]
pub struct LoginOk {
    /// `_id` of the user.
    pub uid: String,
    /// The token.
    pub token: String,
    /// Its hash (what connections are bound to).
    pub token_hash: String,
    /// `tokenExpires`, ms.
    pub expires: i64,
    /// `password` or `resume`.
    pub kind: &'static str,
}

/// One REST call as rcsim saw it, for tests that ask "whose token made this call".
#[derive(Clone, Debug)]
pub struct CallRecord {
    /// `GET`, `POST`, …
    pub method: String,
    /// Route name after `/api/v1/`, e.g. `chat.postMessage`.
    pub route: String,
    /// The authenticated user, if any.
    pub user_id: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// The client address Rocket.Chat counted for rate limits and login
    /// blocking (`X-Real-IP` before the socket's).
    pub ip: String,
}

/// Counters.
#[derive(Default)]
pub struct Stats {
    calls: Mutex<VecDeque<CallRecord>>,
    routes: Mutex<HashMap<String, u64>>,
    logins: Mutex<HashMap<(LoginPath, String), u64>>,
    failed_logins: AtomicU64,
}

/// At most this many REST calls are remembered in the call log.
const CALL_LOG_LEN: usize = 10_000;

impl Stats {
    pub(crate) fn record_call(&self, rec: CallRecord) {
        *self.routes.lock().entry(rec.route.clone()).or_default() += 1;
        let mut log = self.calls.lock();
        if log.len() == CALL_LOG_LEN {
            log.pop_front();
        }
        log.push_back(rec);
    }

    /// REST calls by route name.
    pub fn route_calls(&self, route: &str) -> u64 {
        self.routes.lock().get(route).copied().unwrap_or(0)
    }

    /// The last REST calls (up to 10,000).
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls.lock().iter().cloned().collect()
    }

    /// Successful logins of a user by path.
    pub fn logins(&self, path: LoginPath, uid: &str) -> u64 {
        self.logins
            .lock()
            .get(&(path, uid.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Successful logins of every user by path.
    pub fn total_logins(&self, path: LoginPath) -> u64 {
        self.logins
            .lock()
            .iter()
            .filter(|((p, _), _)| *p == path)
            .map(|(_, n)| n)
            .sum()
    }

    /// Failed logins.
    pub fn failed_logins(&self) -> u64 {
        self.failed_logins.load(Ordering::Relaxed)
    }
}

/// A fault injected into one REST route.
#[derive(Clone, Debug)]
pub struct RouteFault {
    /// The status to answer (e.g. 500, 503, 429).
    pub status: u16,
    /// How many calls to fail; `None` = until cleared.
    pub remaining: Option<u32>,
}

/// Injected faults.
#[derive(Default)]
pub struct Faults {
    pub(crate) refuse_until: Mutex<Option<Instant>>,
    pub(crate) deaf: AtomicBool,
    pub(crate) delay: Mutex<Duration>,
    pub(crate) routes: Mutex<HashMap<String, RouteFault>>,
}

impl Faults {
    /// New DDP connections are refused (503) right now.
    pub fn refusing(&self) -> bool {
        self.refuse_until.lock().is_some_and(|t| Instant::now() < t)
    }

    /// The delay added before REST responses and DDP method results.
    pub fn delay(&self) -> Duration {
        *self.delay.lock()
    }

    /// Takes one failure for `route`, if one is armed.
    pub fn take_route_failure(&self, route: &str) -> Option<u16> {
        let mut routes = self.routes.lock();
        let f = routes.get_mut(route)?;
        let status = f.status;
        match &mut f.remaining {
            Some(0) => {
                routes.remove(route);
                return None;
            }
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    routes.remove(route);
                }
            }
            None => {}
        }
        Some(status)
    }
}

/// The shared state of one simulator.
pub struct Sim {
    pub(crate) settings: RwLock<Settings>,
    pub(crate) store: Mutex<Store>,
    pub(crate) hub: Hub,
    pub(crate) limiter: Mutex<RateLimiter>,
    /// The DDP limiter `method.call` applies.
    pub(crate) ddp_limiter: Mutex<DdpLimiter>,
    pub(crate) guard: Mutex<LoginGuard>,
    pub(crate) permissions: RwLock<HashMap<String, Vec<String>>>,
    pub(crate) faults: Faults,
    pub(crate) stats: Stats,
    pub(crate) changes: watch::Sender<u64>,
    pub(crate) base_url: RwLock<String>,
}

fn default_permissions() -> HashMap<String, Vec<String>> {
    let admin = || vec!["admin".to_string()];
    let mut p = HashMap::new();
    for name in [
        "create-user",
        "delete-user",
        "edit-other-user-info",
        "edit-other-user-active-status",
        "logout-other-user",
        "user-generate-access-token",
        "view-full-other-user-info",
        "force-delete-message",
        "add-user-to-any-c-room",
        "add-user-to-any-p-room",
        "remove-user",
        "view-privileged-setting",
    ] {
        p.insert(name.to_string(), admin());
    }
    p.insert(
        "api-bypass-rate-limit".into(),
        vec!["admin".into(), "bot".into(), "app".into()],
    );
    for name in ["create-c", "create-p", "create-d"] {
        p.insert(
            name.to_string(),
            vec!["admin".into(), "user".into(), "bot".into(), "app".into()],
        );
    }
    p
}

impl Sim {
    pub(crate) fn new(settings: Settings) -> Self {
        Sim {
            settings: RwLock::new(settings),
            store: Mutex::new(Store::default()),
            hub: Hub::default(),
            limiter: Mutex::new(RateLimiter::default()),
            ddp_limiter: Mutex::new(DdpLimiter::default()),
            guard: Mutex::new(LoginGuard::default()),
            permissions: RwLock::new(default_permissions()),
            faults: Faults::default(),
            stats: Stats::default(),
            changes: watch::channel(0).0,
            base_url: RwLock::new(String::new()),
        }
    }

    /// Wakes everyone waiting in [`crate::Rcsim::wait_for`].
    pub(crate) fn bump(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// A copy of the settings.
    pub fn settings(&self) -> Settings {
        self.settings.read().clone()
    }

    /// `Site_Url`.
    pub fn site_url(&self) -> String {
        let s = self.settings.read();
        if s.site_url.is_empty() {
            self.base_url.read().clone()
        } else {
            s.site_url.clone()
        }
    }

    /// Delivers events produced by a store change.
    pub(crate) fn emit(&self, emits: Vec<Emit>) {
        self.hub.emit(emits);
    }

    /// After tokens are removed: close the DDP sockets logged in with them.
    pub(crate) fn tokens_removed(&self, hashes: &[String], keep: Option<ConnId>) {
        if self.hub.close_tokens(hashes, keep) > 0 || !hashes.is_empty() {
            self.bump();
        }
    }

    /// Whether `uid` holds `permission` through one of its roles.
    pub fn has_permission(&self, uid: &str, permission: &str) -> bool {
        let roles = match self.store.lock().user(uid) {
            Some(u) => u.roles.clone(),
            None => return false,
        };
        self.permissions
            .read()
            .get(permission)
            .is_some_and(|allowed| roles.iter().any(|r| allowed.contains(r)))
    }

    /// Logs a user in, as Meteor's `login` method with RC's validators.
    pub fn login(
        &self,
        cred: Credential,
        ip: &str,
        path: LoginPath,
    ) -> Result<LoginOk, MeteorError> {
        let s = self.settings();
        let now = now_ms();
        let day_ms = 86_400_000;
        let result = match cred {
            Credential::Resume(token) => {
                let hash = ids::hash_login_token(&token);
                let store = self.store.lock();
                match store.token(&hash) {
                    None => Err(MeteorError::new(
                        403,
                        "You've been logged out by the server. Please log in again.",
                    )),
                    Some(t) if t.expired => Err(MeteorError::new(
                        403,
                        "Your session has expired. Please log in again.",
                    )),
                    Some(t) => Ok(LoginOk {
                        uid: t.uid.clone(),
                        token: token.clone(),
                        token_hash: hash,
                        expires: t.when + s.login_expiration_days * day_ms,
                        kind: "resume",
                    }),
                }
            }
            Credential::Password {
                user,
                password,
                code,
            } => self.password_login(&s, user, password, code, ip, now),
        };
        match &result {
            Ok(ok) => {
                *self
                    .stats
                    .logins
                    .lock()
                    .entry((path, ok.uid.clone()))
                    .or_default() += 1;
                self.bump();
            }
            Err(_) => {
                self.stats.failed_logins.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn password_login(
        &self,
        s: &Settings,
        who: UserRef,
        password: Password,
        code: Option<String>,
        ip: &str,
        now: i64,
    ) -> Result<LoginOk, MeteorError> {
        let mut store = self.store.lock();
        let mut guard = self.guard.lock();
        let user = store.find_user(&who).cloned();
        let uid = user.as_ref().map(|u| u.id.clone());
        let digest = match password {
            Password::Plain(p) => ids::sha256_hex(&p),
            Password::Digest(d) => d.to_lowercase(),
        };
        let attempt = match &user {
            None => Err(MeteorError::new(403, "User not found")),
            Some(u) if u.password_digest.as_deref() != Some(digest.as_str()) => {
                Err(MeteorError::new(403, "Incorrect password"))
            }
            Some(_) => Ok(()),
        };
        // validateLoginAttempt: the brute-force blocks apply whatever the password.
        if let Some(blocked) = guard.check(uid.as_deref(), ip, s, now) {
            if blocked.error != "error-login-blocked-for-user" {
                guard.failed(uid.as_deref(), ip, now);
            }
            return Err(blocked);
        }
        if let Err(e) = attempt {
            if s.block_failed_logins {
                guard.failed(uid.as_deref(), ip, now);
            }
            return Err(e);
        }
        let user = user.expect("attempt succeeded");
        if !user.active {
            return Err(
                MeteorError::new("error-user-is-not-activated", "User is not activated")
                    .with_details(json!({"function": "Accounts.validateLoginAttempt"})),
            );
        }
        if s.email_2fa_enabled && user.email_2fa_effective() {
            let pending = user.email_code.clone().filter(|(_, exp)| *exp > now);
            match (code, &pending) {
                (Some(c), Some((expected, _))) if &c == expected => {
                    if let Some(u) = store.user_mut(&user.id) {
                        u.email_code = None;
                    }
                }
                (Some(_), _) => {
                    return Err(MeteorError::new("totp-invalid", "TOTP Invalid")
                        .with_details(json!({"method": "email", "availableMethods": ["email"]})));
                }
                (None, _) => {
                    // totp-required is not counted as a failed attempt.
                    let mut details = json!({
                        "method": "email",
                        "codeGenerated": pending.is_none(),
                        "emailOrUsername": user.username,
                        "availableMethods": ["email"],
                    });
                    match pending {
                        Some((_, exp)) => details["codeExpires"] = crate::ejson::date(exp),
                        None => {
                            if let Some(u) = store.user_mut(&user.id) {
                                u.email_code = Some((ids::email_code(), now + 3_600_000));
                            }
                        }
                    }
                    return Err(
                        MeteorError::new("totp-required", "TOTP Required").with_details(details)
                    );
                }
            }
        }
        guard.succeeded(&user.id, ip);
        let (token, when) = store.add_token(&user.id);
        Ok(LoginOk {
            uid: user.id.clone(),
            token_hash: ids::hash_login_token(&token),
            token,
            expires: when + s.login_expiration_days * 86_400_000,
            kind: "password",
        })
    }

    /// Resolves REST credentials (`X-User-Id` + `X-Auth-Token`) to the token hash.
    pub fn authenticate(&self, user_id: &str, token: &str) -> Option<String> {
        let hash = ids::hash_login_token(token);
        let store = self.store.lock();
        let t = store.token(&hash)?;
        (t.uid == user_id && store.user(user_id).is_some()).then_some(hash)
    }
}
