//! The SignalR-compatible hub (`docs/protocol/signalr.md`), so a front end
//! written for the official `@microsoft/signalr` client works unchanged:
//! `POST {hub}/negotiate` (versions 0 and 1, WebSockets only), CORS, and the
//! websocket at `{hub}?id=…` (or without `id`: skipNegotiation).

pub mod protocol;
pub(crate) mod resume;
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
use resume::Resumable;
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
    /// Negotiated with `useStatefulReconnect=true`.
    stateful: bool,
    slot: Slot,
}

/// Where a negotiated connection is.
enum Slot {
    /// No websocket yet.
    Unused,
    /// A websocket is starting for it, since then.
    Claimed(Instant),
    /// A websocket holds it (stateful connections only).
    Attached(actix::Addr<SignalRSocket>),
    /// Its websocket dropped; a new one may take over until the deadline.
    Detached(Resumable, Instant),
    /// It had its websocket and cannot have another.
    Used,
}

/// How a websocket may take a negotiated connection.
enum Take {
    /// A new connection.
    Fresh { stateful: bool },
    /// Taking over from a dropped transport.
    Resume(Resumable),
    /// Another transport holds it: ask that one to hand over.
    From(actix::Addr<SignalRSocket>),
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
        let now = Instant::now();
        self.pending.retain(|_, p| match &p.slot {
            Slot::Attached(_) => true,
            Slot::Detached(_, until) => *until > now,
            Slot::Claimed(at) => at.elapsed() < TOKEN_TTL,
            Slot::Unused | Slot::Used => p.created.elapsed() < TOKEN_TTL,
        });
    }

    /// Takes the connection `token` for a websocket, as a new connection or
    /// taking over a stateful one, or says why it cannot.
    fn take(&self, token: &str) -> Result<Take, ApiError> {
        let in_use = || {
            ApiError::new(
                StatusCode::CONFLICT,
                "connection_in_use",
                "Connection ID is already in use",
            )
        };
        let mut p = self.pending.get_mut(token).ok_or_else(unknown_connection)?;
        let take = match std::mem::replace(&mut p.slot, Slot::Claimed(Instant::now())) {
            Slot::Unused if p.created.elapsed() < TOKEN_TTL => Take::Fresh {
                stateful: p.stateful,
            },
            Slot::Detached(state, until) if until > Instant::now() => Take::Resume(state),
            Slot::Attached(addr) => {
                p.slot = Slot::Attached(addr.clone());
                Take::From(addr)
            }
            Slot::Unused | Slot::Detached(..) => {
                drop(p);
                self.pending.remove(token);
                return Err(unknown_connection());
            }
            other @ (Slot::Claimed(_) | Slot::Used) => {
                p.slot = other;
                return Err(in_use());
            }
        };
        Ok(take)
    }

    /// A stateful connection's websocket started.
    pub(crate) fn attached(&self, token: &str, addr: actix::Addr<SignalRSocket>) {
        if let Some(mut p) = self.pending.get_mut(token) {
            p.slot = Slot::Attached(addr);
        }
    }

    /// A stateful connection's websocket dropped: a new one may resume it
    /// within `window`.
    pub(crate) fn detached(&self, token: &str, state: Resumable, window: Duration) {
        if let Some(mut p) = self.pending.get_mut(token) {
            p.slot = Slot::Detached(state, Instant::now() + window);
        }
    }

    /// A connection is over for good.
    pub(crate) fn ended(&self, token: &str) {
        if let Some(mut p) = self.pending.get_mut(token) {
            p.slot = Slot::Used;
        }
    }
}

fn unknown_connection() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_connection",
        "No Connection with that ID",
    )
}

/// Whether the negotiate asks for stateful reconnect (`useStatefulReconnect=true`).
fn wants_stateful(query: &str) -> bool {
    web::Query::<HashMap<String, String>>::from_query(query)
        .map(|q| {
            q.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("useStatefulReconnect") && v.eq_ignore_ascii_case("true")
            })
        })
        .unwrap_or(false)
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
    // Stateful reconnect needs a token that outlives its first transport:
    // negotiate version 1.
    let stateful = version >= 1 && wants_stateful(req.query_string());
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
            stateful,
            slot: Slot::Unused,
        },
    );
    let transports = json!([{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}]);
    let mut body = json!({"negotiateVersion": version, "connectionId": connection_id, "availableTransports": transports});
    if version >= 1 {
        body["connectionToken"] = json!(token);
    }
    if stateful {
        // Only when asked: the client refuses it otherwise.
        body["useStatefulReconnect"] = json!(true);
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
    hub.purge();
    let (username, stateful, taken) = match query.get("id") {
        Some(id) => {
            let Some(username) = hub.pending.get(id).map(|p| p.username.clone()) else {
                return Err(unknown_connection().into());
            };
            let created = hub.pending.get(id).map_or_else(Instant::now, |p| p.created);
            // A logout or delete after the negotiate ends the id, even if
            // the user logged in again since; so does any other end.
            let ended = relay.ended_since(&username, created);
            let live = relay.live(&username).await.map_err(ApiError::from)?;
            if ended.is_some() || live.is_none() {
                hub.pending.remove(id);
                let reason = ended.map_or("session_ended", |r| r.as_str());
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    reason,
                    format!("the user's session ended ({reason}) after this connection was negotiated; log in again"),
                )
                .into());
            }
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
            let (stateful, taken) = match hub.take(id)? {
                Take::Fresh { stateful } => {
                    if !stateful {
                        hub.ended(id);
                    }
                    (stateful.then(|| id.clone()), None)
                }
                Take::Resume(state) => (Some(id.clone()), Some(state)),
                Take::From(old) => {
                    // The old transport is still open here (its loss not yet
                    // seen): it hands its state over and goes.
                    let handed = tokio::time::timeout(HANDOVER_TIMEOUT, old.send(socket::Handover))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten();
                    // It may have been stopping, leaving its state behind.
                    let state = match handed {
                        Some(state) => state,
                        None => match hub.take(id)? {
                            Take::Resume(state) => state,
                            _ => {
                                hub.pending.remove(id);
                                return Err(unknown_connection().into());
                            }
                        },
                    };
                    (Some(id.clone()), Some(state))
                }
            };
            (username, stateful, taken)
        }
        None => (
            credentials::authenticate(&req, &relay, &rest).await?,
            None,
            None,
        ),
    };
    let shard = relay.registry.shard(&username);
    let limits = super::limits(&relay, &username);
    let c = &relay.cfg.client;
    let link = stateful.map(|token| socket::Link {
        hub: hub.clone(),
        token,
        window: c.signalr_reconnect_window,
    });
    let actor = SignalRSocket::new(
        username,
        shard.addr.clone(),
        c.queue_limit,
        c.heartbeat_interval,
        c.heartbeat_timeout,
        link,
        taken,
    );
    super::upgrade::accept(&req, actor, limits, &shard.arbiter)
}

/// How long a transport still open may take to hand its state to the one
/// taking over.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(2);

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
