//! Who calls the backend API: `Authorization: Bearer <api key>`, checked in
//! constant time, then the `{username}` of the route in its one form.

use super::errors::ApiError;
use crate::config::Config;
use crate::core::relay::Relay;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// Checks `Authorization: Bearer <api key>` against every configured key in
/// constant time; returns the key's name.
pub fn authorize(req: &HttpRequest, cfg: &Config) -> Result<String, ApiError> {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let mut found: Option<&str> = None;
    for k in &cfg.server.api_keys {
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
    let relay = req.app_data::<web::Data<Relay>>().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the application state is missing",
        )
    })?;
    authorize(req, &relay.cfg)?;
    // web::Path decodes the segment exactly as the routes always have.
    let param = <web::Path<UsernameParam> as actix_web::FromRequest>::extract(req)
        .into_inner()
        .map_err(|e| ApiError::bad_request("bad_username", e.to_string()))?
        .into_inner();
    let username = crate::core::username::canonical(&param.username, &relay.cfg.users.reserved)?;
    Ok(ApiUser(username))
}
