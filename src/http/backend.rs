//! The backend API (docs/DESIGN.md §3): user sync, login, logout, sessions, health.

use super::errors::ApiError;
use super::AppState;
use crate::admin::{GetCredentials, Relogin};
use crate::config::LoginMethod;
use crate::passwords::password_for;
use crate::registry::{EndUser, Login, Snapshot};
use crate::rocketchat::rest::RestClient;
use crate::rocketchat::{sha256_hex, Credentials, RcError};
use crate::session::{EndReason, SessionAuth};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Checks `Authorization: Bearer <api key>` against every configured key in
/// constant time; returns the key's name.
pub fn authorize(req: &HttpRequest, state: &AppState) -> Result<String, ApiError> {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let mut found: Option<&str> = None;
    for k in &state.cfg.server.api_keys {
        // No early exit: every key is compared whatever matched before.
        if bool::from(k.key.expose().as_bytes().ct_eq(given.as_bytes())) {
            found = Some(&k.name);
        }
    }
    found.map(str::to_string).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_api_key",
            "missing or unknown API key (send Authorization: Bearer <key>)",
        )
    })
}

/// The `{username}` of a backend route, once the API key and then the
/// username were checked. Listed first in a handler's arguments, so a caller
/// without a valid key learns nothing about its body.
pub struct ApiUser(pub String);

#[derive(Deserialize)]
struct UsernameParam {
    username: String,
}

impl actix_web::FromRequest for ApiUser {
    type Error = ApiError;
    type Future = std::future::Ready<Result<ApiUser, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(api_user(req))
    }
}

fn api_user(req: &HttpRequest) -> Result<ApiUser, ApiError> {
    let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the application state is missing",
        )
    })?;
    authorize(req, state)?;
    // web::Path decodes the segment exactly as the routes always have.
    let param = <web::Path<UsernameParam> as actix_web::FromRequest>::extract(req)
        .into_inner()
        .map_err(|e| ApiError::bad_request("bad_username", e.to_string()))?
        .into_inner();
    let username = crate::username::canonical(&param.username, &state.cfg.users.reserved)?;
    Ok(ApiUser(username))
}

/// An internal actor that no longer answers: it only stops when imrelay does.
pub fn mailbox(e: actix::MailboxError) -> ApiError {
    log::warn!("an internal actor did not answer: {e}");
    ApiError::shutting_down()
}

/// Runs an admin call; on a 401 the agent logs in again and the call is retried once.
pub async fn with_admin<T>(
    state: &AppState,
    f: impl AsyncFn(&Credentials) -> Result<T, RcError>,
) -> Result<T, ApiError> {
    let creds = state.admin.send(GetCredentials).await.map_err(mailbox)??;
    match f(&creds).await {
        Err(RcError::Unauthorized) => {
            let fresh = state.admin.send(Relogin(creds)).await.map_err(mailbox)??;
            Ok(f(&fresh).await?)
        }
        other => Ok(other?),
    }
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 while imrelay can serve (logged in to Rocket.Chat as
/// the admin, and its last probe of REST and DDP answered), else 503 with
/// the reason.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.ready.check() {
        Ok(()) => HttpResponse::Ok().json(json!({"ready": true})),
        Err(why) => HttpResponse::ServiceUnavailable().json(json!({"ready": false, "reason": why})),
    }
}

/// `GET /metrics` (API key): Prometheus text for the connection bounds.
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    use super::admission::Refusal;
    authorize(&req, &state)?;
    let a = &state.admission;
    let body = format!(
        "# HELP imrelay_connections_open TCP connections open now.\n\
         # TYPE imrelay_connections_open gauge\n\
         imrelay_connections_open {}\n\
         # HELP imrelay_connections_max TCP connections accepted at most (server.max_connections, lowered to fit the descriptor limit).\n\
         # TYPE imrelay_connections_max gauge\n\
         imrelay_connections_max {}\n\
         # HELP imrelay_connections_refused_total TCP connections refused, by the bound that was reached.\n\
         # TYPE imrelay_connections_refused_total counter\n\
         imrelay_connections_refused_total{{reason=\"total\"}} {}\n\
         imrelay_connections_refused_total{{reason=\"per_ip\"}} {}\n",
        a.open(),
        a.max_total(),
        a.refused(Refusal::Total),
        a.refused(Refusal::PerIp),
    );
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body))
}

/// `PUT /users/{username}` body.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PutUser {
    name: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

/// `PUT /api/v1/users/{username}`: create or update the Rocket.Chat user.
pub async fn put_user(
    ApiUser(username): ApiUser,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    let body: PutUser = super::body::json(&req, payload, state.body_limits(), false).await?;
    let pw = state.cfg.rocketchat.admin_password.expose();
    let existing = with_admin(&state, async |a| rest.user_info(a, pw, &username).await).await?;
    match existing {
        None => {
            let user = create_user(&state, &rest, &username, body).await?;
            Ok(HttpResponse::Created()
                .json(json!({"username": username, "rc_user_id": user["_id"], "created": true})))
        }
        Some(user) => {
            let uid = user["_id"].as_str().unwrap_or_default().to_string();
            let mut data = serde_json::Map::new();
            if let Some(n) = body.name {
                data.insert("name".into(), json!(n));
            }
            if let Some(e) = body.email {
                data.insert("email".into(), json!(e));
                data.insert("verified".into(), json!(false));
            }
            if let Some(p) = body.password {
                // Rocket.Chat logs the user out everywhere on a password change.
                data.insert("password".into(), json!(p));
            }
            if !data.is_empty() {
                let data = Value::Object(data);
                with_admin(&state, async |a| rest.update_user(a, pw, &uid, &data).await).await?;
                log::info!("user={username} updated in Rocket.Chat");
            }
            Ok(HttpResponse::Ok()
                .json(json!({"username": username, "rc_user_id": uid, "created": false})))
        }
    }
}

/// Creates the Rocket.Chat user from a `PUT /users` body (`email` required).
async fn create_user(
    state: &AppState,
    rest: &RestClient,
    username: &str,
    body: PutUser,
) -> Result<Value, ApiError> {
    let Some(email) = body.email.filter(|e| e.contains('@')) else {
        return Err(ApiError::bad_request(
            "missing_email",
            "creating a Rocket.Chat user needs an email address",
        ));
    };
    let pw = state.cfg.rocketchat.admin_password.expose();
    let password = password_for(&state.cfg.users, username, body.password.as_deref());
    // verified:false: a verified email would opt the user in to email
    // two-factor, and every password login would then fail.
    let create = json!({
        "username": username, "name": body.name.unwrap_or_else(|| username.to_string()), "email": email,
        "password": password, "verified": false, "joinDefaultChannels": true,
        "requirePasswordChange": false, "sendWelcomeEmail": false,
    });
    let user = with_admin(state, async |a| rest.create_user(a, pw, &create).await).await?;
    log::info!("user={username} created in Rocket.Chat");
    Ok(user)
}

fn iso(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The Rocket.Chat user, or 404 `user_not_found`.
async fn rc_user(state: &AppState, rest: &RestClient, username: &str) -> Result<Value, ApiError> {
    let pw = state.cfg.rocketchat.admin_password.expose();
    with_admin(state, async |a| rest.user_info(a, pw, username).await)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "user_not_found",
                format!("no Rocket.Chat user {username}"),
            )
        })
}

/// `GET /api/v1/users/{username}`.
pub async fn get_user(
    ApiUser(username): ApiUser,
    state: web::Data<AppState>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    let user = rc_user(&state, &rest, &username).await?;
    let snapshot = state
        .registry
        .for_user(&username)
        .send(Snapshot)
        .await
        .map_err(mailbox)?;
    let session = state.cache.live(&username).map(|e| {
        let clients = snapshot.get(&username).map_or(0, |u| u.clients);
        json!({"expires_at": iso(e.expires_at_system()), "clients": clients})
    });
    Ok(HttpResponse::Ok().json(json!({"username": username, "rc_user_id": user["_id"], "name": user["name"], "session": session})))
}

/// `DELETE /api/v1/users/{username}`: delete in Rocket.Chat and end the session.
pub async fn delete_user(
    ApiUser(username): ApiUser,
    state: web::Data<AppState>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    let pw = state.cfg.rocketchat.admin_password.expose();
    let user = rc_user(&state, &rest, &username).await?;
    let uid = user["_id"].as_str().unwrap_or_default().to_string();
    state
        .registry
        .for_user(&username)
        .send(EndUser {
            username: username.clone(),
            reason: EndReason::Deleted,
        })
        .await
        .map_err(mailbox)?;
    state.signalr.end_user(&username, EndReason::Deleted);
    with_admin(&state, async |a| rest.delete_user(a, pw, &uid).await).await?;
    log::info!("user={username} deleted from Rocket.Chat");
    Ok(HttpResponse::NoContent().finish())
}

/// Spaces out REST logins after Rocket.Chat said 429: every caller waits
/// for the reset instead of retrying into the limiter.
#[derive(Default)]
pub struct LoginGate {
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

/// `POST /users/{username}/login` body (optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    password: Option<String>,
    /// Make a fresh Rocket.Chat login even if a live token exists.
    #[serde(default)]
    renew: bool,
    /// Re-create the user with these if Rocket.Chat no longer knows it
    /// (its data was lost): `PUT /users`' fields.
    email: Option<String>,
    name: Option<String>,
}

async fn rest_login(
    state: &AppState,
    rest: &RestClient,
    username: &str,
    password: &str,
) -> Result<Credentials, RcError> {
    let deadline = Instant::now() + state.cfg.session.login_timeout;
    loop {
        state.login_gate.wait_turn(deadline).await?;
        match rest.login(username, password).await {
            Err(RcError::RateLimited { retry_after }) => {
                log::warn!(
                    "user={username} REST login rate-limited by Rocket.Chat; waiting {retry_after:?} for the reset. Fix: login_method = \"ddp\" (default), or raise API_Enable_Rate_Limiter_Limit_Calls_Default"
                );
                state
                    .login_gate
                    .blocked_for(retry_after + Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Logs a user in (reusing a live token unless `renew`): the session is
/// running and its first Rocket.Chat login done when this returns.
pub async fn ensure_login(
    state: &AppState,
    rest: &RestClient,
    username: &str,
    password: Option<&str>,
    renew: bool,
) -> Result<crate::cache::Entry, ApiError> {
    let auth = match state.cache.live(username).filter(|_| !renew) {
        Some(e) => SessionAuth::Resume(e.credentials()),
        None => {
            let password = password_for(&state.cfg.users, username, password);
            match state.cfg.rocketchat.login_method {
                LoginMethod::Ddp => SessionAuth::Password {
                    digest: sha256_hex(&password),
                },
                LoginMethod::Rest => {
                    SessionAuth::Resume(rest_login(state, rest, username, &password).await?)
                }
                LoginMethod::CreateToken => {
                    let pw = state.cfg.rocketchat.admin_password.expose();
                    let secret = state
                        .cfg
                        .rocketchat
                        .create_token_secret
                        .as_ref()
                        .map(|s| s.expose());
                    let user = rc_user(state, rest, username).await?;
                    let uid = user["_id"].as_str().unwrap_or_default().to_string();
                    SessionAuth::Resume(
                        with_admin(state, async |a| {
                            rest.create_token(a, pw, &uid, secret).await
                        })
                        .await?,
                    )
                }
            }
        }
    };
    let wait = state.cfg.session.login_timeout + Duration::from_secs(1);
    let entry = tokio::time::timeout(
        wait,
        state.registry.for_user(username).send(Login {
            username: username.to_string(),
            auth,
            renew,
        }),
    )
    .await
    .map_err(|_| RcError::Unreachable(format!("no login answer within {wait:?}")))?
    .map_err(mailbox)??;
    Ok(entry)
}

/// `POST /api/v1/users/{username}/login`: log in (reusing a live token) and start or keep the session.
pub async fn login(
    ApiUser(username): ApiUser,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    let body: LoginBody = super::body::json(&req, payload, state.body_limits(), true).await?;
    if !body.renew && state.cache.live(&username).is_some() {
        // A cached token would answer 200 with Rocket.Chat down.
        if let Err(why) = state.ready.check() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                format!("imrelay cannot reach Rocket.Chat now ({why}); the session is kept and reconnects by itself; retry the login later"),
            ));
        }
    }
    let password = body.password.as_deref();
    let entry = match ensure_login(&state, &rest, &username, password, body.renew).await {
        // Rocket.Chat answers an unknown user as a failed login (or "not
        // found", by login method): ask it whether the user exists.
        Err(e) if matches!(e.code, "user_not_found" | "rc_login_failed") => {
            match rc_user(&state, &rest, &username).await {
                Ok(_) => return Err(e),
                Err(missing) if missing.code == "user_not_found" => {
                    let Some(email) = body.email.clone() else {
                        return Err(ApiError::new(
                            StatusCode::NOT_FOUND,
                            "user_not_found",
                            format!("Rocket.Chat has no user {username}: sync it with PUT /api/v1/users/{username}, or pass \"email\" (and \"name\") in the login body to re-create it"),
                        ));
                    };
                    // Rocket.Chat lost the user (a restore without its data):
                    // sync it again from the login's own fields, then log in.
                    log::warn!("user={username} unknown to Rocket.Chat at login; re-creating it from the login body");
                    let again = PutUser {
                        name: body.name.clone(),
                        email: Some(email),
                        password: body.password.clone(),
                    };
                    create_user(&state, &rest, &username, again).await?;
                    ensure_login(&state, &rest, &username, password, body.renew).await?
                }
                Err(other) => return Err(other),
            }
        }
        other => other?,
    };
    let mut out = json!({
        "username": username,
        "rc_user_id": entry.rc_user_id,
        "client_token": entry.client_token,
        "expires_at": iso(entry.expires_at_system()),
    });
    if state.cfg.rocketchat.expose_rc_token {
        // Front-end auth mode: the browser holds its own DDP connection.
        out["rc_token"] = json!(entry.rc_token);
        out["rc_url"] = json!(state.cfg.rocketchat.url);
        out["rc_ws_url"] = json!(state.cfg.rocketchat.ws_url);
    }
    Ok(HttpResponse::Ok().json(out))
}

/// `POST /api/v1/users/{username}/reconnect`: the user's clients are told to
/// reconnect (SignalR: a Close with `allowReconnect`); 204.
pub async fn reconnect(
    ApiUser(username): ApiUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let n = state
        .registry
        .for_user(&username)
        .send(crate::registry::ReconnectClients {
            username: username.clone(),
        })
        .await
        .map_err(mailbox)?;
    log::info!("user={username} {n} clients asked to reconnect");
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/users/{username}/logout`: Rocket.Chat logout and end the session (idempotent).
pub async fn logout(
    ApiUser(username): ApiUser,
    state: web::Data<AppState>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    let entry = state
        .registry
        .for_user(&username)
        .send(EndUser {
            username: username.clone(),
            reason: EndReason::LoggedOut,
        })
        .await
        .map_err(mailbox)?;
    state.signalr.end_user(&username, EndReason::LoggedOut);
    if let Some(e) = entry {
        rest.logout(&e.credentials()).await?;
        log::info!("user={username} logged out");
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/v1/sessions`: live sessions, for operators.
pub async fn sessions(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let snapshot = state.registry.snapshot().await.map_err(mailbox)?;
    let mut list: Vec<Value> = state
        .cache
        .snapshot()
        .into_iter()
        .map(|(u, e)| {
            let info = snapshot.get(&u);
            json!({
                "username": u, "rc_user_id": e.rc_user_id, "generation": e.generation,
                "expires_at": iso(e.expires_at_system()),
                "clients": info.map_or(0, |i| i.clients), "connected": info.is_some_and(|i| i.session),
            })
        })
        .collect();
    list.sort_by(|a, b| a["username"].as_str().cmp(&b["username"].as_str()));
    Ok(HttpResponse::Ok().json(json!({"sessions": list})))
}
