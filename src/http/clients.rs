//! Client websocket upgrades: authenticate before the upgrade (401 JSON for
//! an unknown or expired token), check `Origin`, then hand over to the actor.

use super::errors::ApiError;
use super::AppState;
use crate::client_ws::{ClientSocket, MAX_CLIENT_FRAME};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

/// The client token from `?token=` / `?access_token=` or `Authorization: Bearer`.
pub fn client_token(req: &HttpRequest) -> Option<String> {
    let q = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok();
    q.and_then(|q| q.get("token").or_else(|| q.get("access_token")).cloned())
        .or_else(|| {
            req.headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string)
        })
}

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
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    check_origin(&req, &state)?;
    let Some(token) = client_token(&req) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_client_token",
            "pass the client token as ?token= or Authorization: Bearer",
        )
        .into());
    };
    let Some(username) = state.cache.user_for_client_token(&token) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_client_token",
            "unknown or expired client token; log the user in again",
        )
        .into());
    };
    let c = &state.cfg.client;
    let actor = ClientSocket::new(
        username,
        state.registry.clone(),
        c.heartbeat_interval,
        c.heartbeat_timeout,
        c.queue_limit,
    );
    ws::WsResponseBuilder::new(actor, &req, stream)
        .frame_size(MAX_CLIENT_FRAME)
        .start()
}
