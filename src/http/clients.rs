//! Client websocket upgrades: check `Origin`, authenticate before the upgrade
//! (401 JSON for an unknown or expired token), then hand over to the actor
//! (run on the bare socket by [`super::upgrade`]).

use super::errors::ApiError;
use super::AppState;
use crate::client_ws::{ClientSocket, MAX_CLIENT_FRAME};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

/// Rejects browsers from origins not configured (no `Origin`: not a browser, allowed).
pub fn check_origin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let allowed = &state.cfg.server.allowed_origins;
    match req.headers().get("origin").and_then(|v| v.to_str().ok()) {
        Some(o) if !allowed.is_empty() && !allowed.iter().any(|a| a == o) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!("origin {o} is not in server.allowed_origins"),
        )),
        _ => Ok(()),
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
        username,
        shard.addr.clone(),
        c.heartbeat_interval,
        c.heartbeat_timeout,
        c.queue_limit,
    );
    super::upgrade::accept(&req, actor, MAX_CLIENT_FRAME, &shard.arbiter)
}
