//! The backend API's user calls (docs/DESIGN.md §3): sync a user, look it
//! up, delete it, log it in or out, tell its clients to reconnect.

use super::auth::ApiUser;
use super::body::BodyLimits;
use super::errors::ApiError;
use crate::core::relay::{Relay, RelayError};
use crate::core::words::EndReason;
use crate::rocketchat::passwords::password_for;
use crate::rocketchat::rest::RestClient;
use crate::rocketchat::RcError;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

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
    relay: web::Data<Relay>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    let body: PutUser =
        super::body::json(&req, payload, BodyLimits::backend(&relay.cfg.server), false).await?;
    let pw = relay.cfg.rocketchat.admin_password.expose();
    let existing = relay
        .with_admin(async |a| rest.user_info(a, pw, &username).await)
        .await?;
    match existing {
        None => {
            let user = create_user(&relay, &rest, &username, body).await?;
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
                relay
                    .with_admin(async |a| rest.update_user(a, pw, &uid, &data).await)
                    .await?;
                log::info!("user={username} updated in Rocket.Chat");
            }
            Ok(HttpResponse::Ok()
                .json(json!({"username": username, "rc_user_id": uid, "created": false})))
        }
    }
}

/// Creates the Rocket.Chat user from a `PUT /users` body (`email` required).
async fn create_user(
    relay: &Relay,
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
    let pw = relay.cfg.rocketchat.admin_password.expose();
    let password = password_for(&relay.cfg.users, username, body.password.as_deref());
    // verified:false: a verified email would opt the user in to email
    // two-factor, and every password login would then fail.
    let create = json!({
        "username": username, "name": body.name.unwrap_or_else(|| username.to_string()), "email": email,
        "password": password, "verified": false, "joinDefaultChannels": true,
        "requirePasswordChange": false, "sendWelcomeEmail": false,
    });
    let user = relay
        .with_admin(async |a| rest.create_user(a, pw, &create).await)
        .await?;
    log::info!("user={username} created in Rocket.Chat");
    Ok(user)
}

pub(super) fn iso(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `GET /api/v1/users/{username}`.
pub async fn get_user(
    ApiUser(username): ApiUser,
    relay: web::Data<Relay>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    let user = relay.rc_user(&rest, &username).await?;
    let info = relay.user_info(&username).await?;
    let live = relay.live(&username).await?;
    let session = live.map(|e| {
        let clients = info.as_ref().map_or(0, |u| u.clients);
        json!({"expires_at": iso(e.expires_at_system()), "clients": clients})
    });
    Ok(HttpResponse::Ok().json(json!({"username": username, "rc_user_id": user["_id"], "name": user["name"], "session": session})))
}

/// `DELETE /api/v1/users/{username}`: delete in Rocket.Chat and end the session.
pub async fn delete_user(
    ApiUser(username): ApiUser,
    relay: web::Data<Relay>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    let pw = relay.cfg.rocketchat.admin_password.expose();
    let user = relay.rc_user(&rest, &username).await?;
    let uid = user["_id"].as_str().unwrap_or_default().to_string();
    relay.end_user(&username, EndReason::Deleted).await?;
    relay
        .with_admin(async |a| rest.delete_user(a, pw, &uid).await)
        .await?;
    log::info!("user={username} deleted from Rocket.Chat");
    Ok(HttpResponse::NoContent().finish())
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

/// `POST /api/v1/users/{username}/login`: log in (reusing a live token) and start or keep the session.
pub async fn login(
    ApiUser(username): ApiUser,
    req: HttpRequest,
    payload: web::Payload,
    relay: web::Data<Relay>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    let body: LoginBody =
        super::body::json(&req, payload, BodyLimits::backend(&relay.cfg.server), true).await?;
    if !body.renew && relay.live(&username).await?.is_some() {
        // A cached token would answer 200 with Rocket.Chat down.
        if let Err(why) = relay.ready.check() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                format!("imrelay cannot reach Rocket.Chat now ({why}); the session is kept and reconnects by itself; retry the login later"),
            ));
        }
    }
    let password = body.password.as_deref();
    let entry = match relay.login(&rest, &username, password, body.renew).await {
        // Rocket.Chat answers an unknown user as a failed login (or "not
        // found", by login method): ask it whether the user exists.
        Err(e @ RelayError::Rc(RcError::NotFound(_) | RcError::BadCredentials(_))) => {
            match relay.rc_user(&rest, &username).await {
                Ok(_) => return Err(e.into()),
                Err(RelayError::UnknownUser(_)) => {
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
                    create_user(&relay, &rest, &username, again).await?;
                    relay.login(&rest, &username, password, body.renew).await?
                }
                Err(other) => return Err(other.into()),
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
    if relay.cfg.rocketchat.expose_rc_token {
        // Front-end auth mode: the browser holds its own DDP connection.
        out["rc_token"] = json!(entry.rc_token);
        out["rc_url"] = json!(relay.cfg.rocketchat.url);
        out["rc_ws_url"] = json!(relay.cfg.rocketchat.ws_url);
    }
    Ok(HttpResponse::Ok().json(out))
}

/// `POST /api/v1/users/{username}/reconnect`: the user's clients are told to
/// reconnect (SignalR: a Close with `allowReconnect`); 204.
pub async fn reconnect(
    ApiUser(username): ApiUser,
    relay: web::Data<Relay>,
) -> Result<HttpResponse, ApiError> {
    let n = relay.reconnect_clients(&username).await?;
    log::info!("user={username} {n} clients asked to reconnect");
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/users/{username}/logout`: Rocket.Chat logout and end the session (idempotent).
pub async fn logout(
    ApiUser(username): ApiUser,
    relay: web::Data<Relay>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    let entry = relay.end_user(&username, EndReason::LoggedOut).await?;
    if let Some(e) = entry {
        rest.logout(&e.credentials()).await?;
        log::info!("user={username} logged out");
    }
    Ok(HttpResponse::NoContent().finish())
}
