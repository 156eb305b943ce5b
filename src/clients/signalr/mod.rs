//! The SignalR-compatible hub (`docs/protocol/signalr.md`), so a front end
//! written for the official `@microsoft/signalr` client works unchanged:
//! `POST {hub}/negotiate` (versions 0 and 1, WebSockets only), CORS, and the
//! websocket at `{hub}?id=…` (or without `id`: skipNegotiation).

pub mod protocol;
pub mod socket;

use super::credentials;
use crate::api::errors::ApiError;
use crate::core::relay::Relay;
use crate::rocketchat::rest::RestClient;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use dashmap::DashMap;
use rand::Rng;
use serde_json::json;
use socket::SignalRSocket;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// An unused connection token expires after this long (the client connects
/// within milliseconds of negotiating).
const TOKEN_TTL: Duration = Duration::from_secs(15);

struct Pending {
    username: String,
    created: Instant,
    used: bool,
}

/// How often stale connection tokens are swept out.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// Negotiated connections waiting for (or holding) their websocket.
#[derive(Default)]
pub struct Connections {
    pending: DashMap<String, Pending>,
    last_purge: parking_lot::Mutex<Option<Instant>>,
}

impl Connections {
    /// Drops expired tokens, at most once per `PURGE_EVERY`: a shutdown that
    /// asks every client to reconnect brings them all back at once, and a
    /// full sweep per negotiate would make that storm quadratic. Expiry is
    /// checked again at connect, so a late sweep is only memory.
    fn purge(&self) {
        {
            let mut last = self.last_purge.lock();
            if last.is_some_and(|t| t.elapsed() < PURGE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        self.pending.retain(|_, p| p.created.elapsed() < TOKEN_TTL);
    }
}

/// 16 random bytes, base64url: ASP.NET's id and token format.
fn new_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// CORS for browsers on other origins: the exact origin echoed (credentials
/// mode forbids `*`), or nothing when the origin is not allowed.
fn cors(req: &HttpRequest, relay: &Relay, r: &mut HttpResponseBuilder) -> bool {
    let origin = match super::origin_allowed(req, relay) {
        Ok(Some(o)) => o,
        Ok(None) => return true,
        Err(_) => return false,
    };
    let headers = req
        .headers()
        .get("access-control-request-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(
            "authorization, x-requested-with, x-signalr-user-agent, x-xsrf-token, content-type",
        )
        .to_string();
    r.insert_header(("Access-Control-Allow-Origin", origin.to_string()))
        .insert_header(("Access-Control-Allow-Credentials", "true"))
        .insert_header(("Access-Control-Allow-Methods", "GET, POST, OPTIONS"))
        .insert_header(("Access-Control-Allow-Headers", headers))
        .insert_header(("Access-Control-Max-Age", "600"))
        .insert_header(("Vary", "Origin"));
    true
}

/// `OPTIONS {hub}/negotiate`: the CORS preflight.
pub async fn preflight(req: HttpRequest, relay: web::Data<Relay>) -> HttpResponse {
    let mut r = HttpResponse::NoContent();
    if cors(&req, &relay, &mut r) {
        r.finish()
    } else {
        HttpResponse::Forbidden()
            .json(json!({"error": "origin not allowed: add it to server.allowed_origins"}))
    }
}

/// The negotiate version a query asks for, clamped to the highest we speak
/// (1); an error in ASP.NET's words otherwise.
pub fn negotiate_version(query: &str) -> Result<i64, String> {
    let query = web::Query::<HashMap<String, String>>::from_query(query)
        .map(|q| q.into_inner())
        .unwrap_or_default();
    match query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("negotiateVersion"))
    {
        None => Ok(0),
        Some((_, v)) => match v.parse::<i64>() {
            Ok(v) if v >= 0 => Ok(v.min(1)),
            Ok(v) => Err(format!(
                "The client requested version '{v}', but the server does not support this version."
            )),
            Err(_) => Err("The client requested a non-integer protocol version.".into()),
        },
    }
}

/// `POST {hub}/negotiate`.
pub async fn negotiate(
    req: HttpRequest,
    relay: web::Data<Relay>,
    hub: web::Data<Connections>,
    rest: web::Data<RestClient>,
) -> HttpResponse {
    let mut r = HttpResponse::Ok();
    if !cors(&req, &relay, &mut r) {
        return HttpResponse::Forbidden()
            .json(json!({"error": "origin not allowed: add it to server.allowed_origins"}));
    }
    let version = match negotiate_version(req.query_string()) {
        Ok(v) => v,
        Err(e) => return r.json(json!({ "error": e })),
    };
    // An error in the body (status 200) is what makes the official client's
    // start() reject with our text rather than a bare status code.
    let username = match credentials::authenticate(&req, &relay, &rest).await {
        Ok(u) => u,
        Err(e) => return r.json(json!({"error": format!("imrelay: {} ({})", e.message, e.code)})),
    };
    hub.purge();
    let connection_id = new_id();
    let token = if version >= 1 {
        new_id()
    } else {
        connection_id.clone()
    };
    hub.pending.insert(
        token.clone(),
        Pending {
            username,
            created: Instant::now(),
            used: false,
        },
    );
    let transports = json!([{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}]);
    let mut body = json!({"negotiateVersion": version, "connectionId": connection_id, "availableTransports": transports});
    if version >= 1 {
        body["connectionToken"] = json!(token);
    }
    r.json(body)
}

/// `GET {hub}`: the websocket, with the negotiated `id` or (skipNegotiation) without.
pub async fn connect(
    req: HttpRequest,
    relay: web::Data<Relay>,
    hub: web::Data<Connections>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, actix_web::Error> {
    super::check_origin(&req, &relay)?;
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let username = match query.get("id") {
        Some(id) => {
            let Some(mut p) = hub
                .pending
                .get_mut(id)
                .filter(|p| p.created.elapsed() < TOKEN_TTL)
            else {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_connection",
                    "No Connection with that ID",
                )
                .into());
            };
            // A logout or delete after the negotiate ends the id, even if
            // the user logged in again since; so does any other end.
            let ended = relay.ended_since(&p.username, p.created);
            let live = relay.live(&p.username).await.map_err(ApiError::from)?;
            if ended.is_some() || live.is_none() {
                let reason = ended.map_or("session_ended", |r| r.as_str());
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    reason,
                    format!("the user's session ended ({reason}) after this connection was negotiated; log in again"),
                )
                .into());
            }
            if p.used {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "connection_in_use",
                    "Connection ID is already in use",
                )
                .into());
            }
            p.used = true;
            let username = p.username.clone();
            drop(p);
            // A credential on the upgrade must be the same user's.
            if let Some(token) = credentials::credential(&req, &relay)? {
                let who = credentials::authenticate_token(&token, &relay, &rest).await?;
                if who != username {
                    return Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "token_mismatch",
                        "the token belongs to another user than the negotiated connection",
                    )
                    .into());
                }
            }
            username
        }
        None => credentials::authenticate(&req, &relay, &rest).await?,
    };
    let shard = relay.registry.shard(&username);
    let limits = super::limits(&relay, &username);
    let c = &relay.cfg.client;
    let actor = SignalRSocket::new(
        username,
        shard.addr.clone(),
        c.queue_limit,
        c.heartbeat_interval,
        c.heartbeat_timeout,
    );
    super::upgrade::accept(&req, actor, limits, &shard.arbiter)
}

#[cfg(test)]
mod fuzz {
    use super::negotiate_version;
    use proptest::prelude::*;

    proptest! {
        /// Any query: version 0 or 1, or an error; never a panic.
        #[test]
        fn negotiate_queries(query in "(negotiateVersion|negotiateversion|x|id|%[0-9a-fA-F]{0,2}|[=&+;]|-?[0-9]{1,25}|\\PC){0,12}") {
            match negotiate_version(&query) {
                Ok(v) => prop_assert!(v == 0 || v == 1),
                Err(e) => prop_assert!(e.starts_with("The client requested")),
            }
        }
    }
}
