//! Chat actions: `ANY /api/v1/users/{username}/rc/{path}` runs Rocket.Chat
//! REST `/api/v1/{path}` as that user (never as the admin), and
//! `ANY /api/v1/admin/rc/{path}` as the admin agent. Method, query and body
//! pass through (uploads too, capped); Rocket.Chat's status and body come
//! back unchanged. A 401 gets one re-login and retry.

use super::backend::{authorize, ensure_login, mailbox, ApiUser};
use super::errors::ApiError;
use super::AppState;
use crate::admin::{GetCredentials, Relogin};
use crate::rocketchat::rest::{retry_after, RawResponse, RestClient};
use crate::rocketchat::Credentials;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

/// Hop-by-hop headers (RFC 9110 §7.6.1) and framing: never passed either way.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Request headers imrelay sets itself or must not leak (the backend's API
/// key, cookies), on top of [`HOP_BY_HOP`].
const DROP_REQUEST: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "x-user-id",
    "x-auth-token",
    "accept-encoding",
];

/// Response headers not passed back, on top of [`HOP_BY_HOP`].
const DROP_RESPONSE: &[&str] = &["set-cookie"];

fn passed(name: &str, drop: &[&str]) -> bool {
    !HOP_BY_HOP.contains(&name) && !drop.contains(&name)
}

async fn read_body(mut payload: web::Payload, max: usize) -> Result<bytes::Bytes, ApiError> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("bad_body", e.to_string()))?;
        if body.len() + chunk.len() > max {
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("bodies passed to Rocket.Chat are limited to {max} bytes (server.max_proxy_body_bytes)")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

async fn forward(
    rest: &RestClient,
    req: &HttpRequest,
    path: &str,
    creds: &Credentials,
    body: &bytes::Bytes,
) -> Result<RawResponse, ApiError> {
    let mut target = format!("/api/v1/{path}");
    if !req.query_string().is_empty() {
        target = format!("{target}?{}", req.query_string());
    }
    let headers: Vec<(&str, String)> = req
        .headers()
        .iter()
        .filter(|(k, _)| passed(k.as_str(), DROP_REQUEST))
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?.to_string())))
        .collect();
    let body = (!body.is_empty()).then(|| body.clone());
    Ok(rest
        .raw(req.method().clone(), &target, Some(creds), &headers, body)
        .await?)
}

fn relay(r: RawResponse, who: &str, path: &str) -> HttpResponse {
    let mut out = HttpResponse::build(r.status);
    for (k, v) in r
        .headers
        .iter()
        .filter(|(k, _)| passed(k.as_str(), DROP_RESPONSE))
    {
        out.append_header((k.clone(), v.clone()));
    }
    if r.status == StatusCode::TOO_MANY_REQUESTS {
        let wait = retry_after(&r.headers);
        log::warn!(
            "{who}: Rocket.Chat rate-limited {path}; passing the 429 on (retry in {}s). Fix: grant the users' role the permission api-bypass-rate-limit, or raise API_Enable_Rate_Limiter_Limit_Calls_Default",
            wait.as_secs()
        );
        out.insert_header(("Retry-After", wait.as_secs().max(1).to_string()));
    }
    out.body(r.body)
}

/// `ANY /api/v1/users/{username}/rc/{path}`.
pub async fn user_call(
    ApiUser(username): ApiUser,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    let (_, path) = path.into_inner();
    as_user(&req, &username, &path, payload, &state, &rest).await
}

/// Runs the call as `username` (already authorized by the caller).
pub async fn as_user(
    req: &HttpRequest,
    username: &str,
    path: &str,
    payload: web::Payload,
    state: &AppState,
    rest: &RestClient,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, state.cfg.server.max_proxy_body_bytes).await?;
    let entry = ensure_login(state, rest, username, None, false).await?;
    let mut resp = forward(rest, req, path, &entry.credentials(), &body).await?;
    if resp.status == StatusCode::UNAUTHORIZED {
        log::info!("user={username} Rocket.Chat rejected the token on {path}; logging in again and retrying once");
        let fresh = ensure_login(state, rest, username, None, true).await?;
        resp = forward(rest, req, path, &fresh.credentials(), &body).await?;
    }
    Ok(relay(resp, &format!("user={username}"), path))
}

/// `ANY /api/v1/admin/rc/{path}`: the same as the admin agent, explicitly.
pub async fn admin_call(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let path = path.into_inner();
    let body = read_body(payload, state.cfg.server.max_proxy_body_bytes).await?;
    let creds = state.admin.send(GetCredentials).await.map_err(mailbox)??;
    let mut resp = forward(&rest, &req, &path, &creds, &body).await?;
    if resp.status == StatusCode::UNAUTHORIZED {
        let fresh = state.admin.send(Relogin(creds)).await.map_err(mailbox)??;
        resp = forward(&rest, &req, &path, &fresh, &body).await?;
    }
    Ok(relay(resp, "admin", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_framing_stay_on_our_side() {
        for h in [
            "authorization",
            "cookie",
            "x-auth-token",
            "transfer-encoding",
        ] {
            assert!(!passed(h, DROP_REQUEST), "{h} must not reach Rocket.Chat");
        }
        for h in ["set-cookie", "connection", "content-length"] {
            assert!(!passed(h, DROP_RESPONSE), "{h} must not reach the backend");
        }
        assert!(passed("content-type", DROP_REQUEST));
        assert!(passed("x-ratelimit-reset", DROP_RESPONSE));
    }
}
