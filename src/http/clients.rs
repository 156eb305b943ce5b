//! Client websocket upgrades: check `Origin`, authenticate before the upgrade
//! (401 JSON for an unknown or expired token), then hand over to the actor
//! (run on the bare socket by [`super::upgrade`]).

use super::errors::ApiError;
use super::AppState;
use crate::client_ws::{ClientSocket, MAX_CLIENT_FRAME};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

/// Rejects browser pages from origins `server.allowed_origins` does not
/// allow (same-origin only by default). A request without `Origin` is not
/// from a browser page and passes: browsers always send it on websockets.
pub fn check_origin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    match origin_allowed(req, state) {
        Err(o) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!("origin {o} is not allowed: add it to server.allowed_origins (pages from imrelay's own host are always allowed)"),
        )),
        Ok(_) => Ok(()),
    }
}

/// The request's `Origin` if it is allowed (`None`: no `Origin`), or the
/// refused origin.
pub fn origin_allowed<'a>(
    req: &'a HttpRequest,
    state: &AppState,
) -> Result<Option<&'a str>, &'a str> {
    let Some(origin) = req.headers().get("origin") else {
        return Ok(None);
    };
    let origin = origin.to_str().map_err(|_| "(not text)")?;
    let host = req.headers().get("host").and_then(|h| h.to_str().ok());
    if state.cfg.server.allowed_origins.allows(origin, host) {
        Ok(Some(origin))
    } else {
        Err(origin)
    }
}

/// `GET /ws`: the native client protocol.
pub async fn native(
    req: HttpRequest,
    state: web::Data<AppState>,
    rest: web::Data<crate::rocketchat::rest::RestClient>,
) -> Result<HttpResponse, actix_web::Error> {
    check_origin(&req, &state)?;
    let username = crate::client_auth::authenticate(&req, &state, &rest).await?;
    let c = &state.cfg.client;
    let shard = state.registry.shard(&username);
    let actor = ClientSocket::new(
        username.clone(),
        shard.addr.clone(),
        c.heartbeat_interval,
        c.heartbeat_timeout,
        c.queue_limit,
    );
    super::upgrade::accept(&req, actor, limits(&state, &username), &shard.arbiter)
}

/// The bounds of one client websocket of `username`.
pub fn limits(state: &AppState, username: &str) -> super::upgrade::Limits {
    super::upgrade::Limits {
        max_frame: MAX_CLIENT_FRAME,
        write_timeout: state.cfg.client.write_timeout,
        who: format!("user={username}"),
    }
}
