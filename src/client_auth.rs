//! Who a client websocket (native or SignalR) belongs to: a client token
//! from login, or a JWT signed by the backend (which logs the user in if
//! needed), taken from `Authorization: Bearer`, `access_token`/`token`, or
//! ABP's encrypted `enc_auth_token`.

use crate::http::backend::ensure_login;
use crate::http::errors::ApiError;
use crate::http::AppState;
use crate::rocketchat::rest::RestClient;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use std::collections::HashMap;

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// The credential a request carries, if any.
pub fn credential(req: &HttpRequest, state: &AppState) -> Result<Option<String>, ApiError> {
    if let Some(b) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Ok(Some(b.to_string()));
    }
    let q = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    if let Some(t) = q.get("access_token").or_else(|| q.get("token")) {
        return Ok(Some(t.clone()));
    }
    if let Some(enc) = q.get("enc_auth_token") {
        let Some(pass) = &state.cfg.client.abp_passphrase else {
            return Err(unauthorized(
                "enc_auth_token_disabled",
                "enc_auth_token needs client.abp_passphrase configured",
            ));
        };
        return crate::abp::decrypt(enc, pass.expose())
            .map(Some)
            .map_err(|e| unauthorized("bad_client_token", e));
    }
    Ok(None)
}

/// Authenticates a client: returns the username.
pub async fn authenticate(
    req: &HttpRequest,
    state: &AppState,
    rest: &RestClient,
) -> Result<String, ApiError> {
    let Some(token) = credential(req, state)? else {
        return Err(unauthorized(
            "missing_client_token",
            "pass the client token or JWT as Authorization: Bearer, ?access_token= or ?token=",
        ));
    };
    authenticate_token(&token, state, rest).await
}

/// Authenticates a token already taken from a request.
pub async fn authenticate_token(
    token: &str,
    state: &AppState,
    rest: &RestClient,
) -> Result<String, ApiError> {
    if let Some(username) = state.cache.user_for_client_token(token) {
        return Ok(username);
    }
    if let (Some(jwt), true) = (&state.cfg.client.jwt, crate::jwt::looks_like_jwt(token)) {
        let claimed =
            crate::jwt::verify(token, jwt).map_err(|e| unauthorized("bad_jwt", e.to_string()))?;
        let username = crate::username::canonical(&claimed, &state.cfg.users.reserved)?;
        if state.cache.live(&username).is_none() {
            // The front end needs nothing but its token: log the user in.
            ensure_login(state, rest, &username, None, false).await?;
        }
        return Ok(username);
    }
    Err(unauthorized(
        "bad_client_token",
        "unknown or expired client token; log the user in again",
    ))
}
