//! Who a client websocket (native or SignalR) belongs to: a client token
//! from login, or a JWT signed by the backend (which logs the user in if
//! needed), taken from `Authorization: Bearer`, `access_token`/`token`, or
//! ABP's encrypted `enc_auth_token`.

use crate::api::errors::ApiError;
use crate::core::relay::Relay;
use crate::rocketchat::rest::RestClient;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use std::collections::HashMap;

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// The credential a request carries, if any.
pub fn credential(req: &HttpRequest, relay: &Relay) -> Result<Option<String>, ApiError> {
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
        let Some(pass) = &relay.cfg.client.abp_passphrase else {
            return Err(unauthorized(
                "enc_auth_token_disabled",
                "enc_auth_token needs client.abp_passphrase configured",
            ));
        };
        return super::abp::decrypt(enc, pass.expose())
            .map(Some)
            .map_err(|e| unauthorized("bad_client_token", e.to_string()));
    }
    Ok(None)
}

/// Authenticates a client: returns the username.
pub async fn authenticate(
    req: &HttpRequest,
    relay: &Relay,
    rest: &RestClient,
) -> Result<String, ApiError> {
    let Some(token) = credential(req, relay)? else {
        return Err(unauthorized(
            "missing_client_token",
            "pass the client token or JWT as Authorization: Bearer, ?access_token= or ?token=",
        ));
    };
    authenticate_token(&token, relay, rest).await
}

/// Authenticates a token already taken from a request.
pub async fn authenticate_token(
    token: &str,
    relay: &Relay,
    rest: &RestClient,
) -> Result<String, ApiError> {
    if let Some(username) = relay.client_user(token).await? {
        return Ok(username);
    }
    if let (Some(jwt), true) = (&relay.cfg.client.jwt, super::jwt::looks_like_jwt(token)) {
        let claimed =
            super::jwt::verify(token, jwt).map_err(|e| unauthorized("bad_jwt", e.to_string()))?;
        let username = crate::core::username::canonical(&claimed, &relay.cfg.users.reserved)?;
        if relay.live(&username).await?.is_none() {
            // The front end needs nothing but its token: log the user in.
            relay.login(rest, &username, None, false).await?;
        }
        return Ok(username);
    }
    Err(unauthorized(
        "bad_client_token",
        "unknown or expired client token; log the user in again",
    ))
}
