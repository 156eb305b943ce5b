//! The client adapter: browsers and apps on websockets, natively at `/ws`
//! and through the SignalR-compatible hub. An upgrade checks `Origin`,
//! authenticates before the upgrade (401 JSON for an unknown or expired
//! credential), then hands the socket to the protocol's actor, run on the
//! bare socket by [`upgrade`].

pub mod abp;
pub(crate) mod credentials;
pub(crate) mod frames;
pub mod jwt;
pub(crate) mod native;
pub(crate) mod signalr;
pub(crate) mod upgrade;

use crate::api::errors::ApiError;
use crate::core::relay::Relay;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use native::{ClientSocket, MAX_CLIENT_FRAME};

/// Registers `/ws` and the SignalR hub at `hub_path`.
pub fn configure(hub_path: String) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.route("/ws", web::get().to(native_ws))
            .route(
                &format!("{hub_path}/negotiate"),
                web::post().to(signalr::negotiate),
            )
            .route(
                &format!("{hub_path}/negotiate"),
                web::method(actix_web::http::Method::OPTIONS).to(signalr::preflight),
            )
            .route(&hub_path, web::get().to(signalr::connect));
    }
}

/// Rejects browser pages from origins `server.allowed_origins` does not
/// allow (same-origin only by default). A request without `Origin` is not
/// from a browser page and passes: browsers always send it on websockets.
pub fn check_origin(req: &HttpRequest, relay: &Relay) -> Result<(), ApiError> {
    match origin_allowed(req, relay) {
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
pub fn origin_allowed<'a>(req: &'a HttpRequest, relay: &Relay) -> Result<Option<&'a str>, &'a str> {
    let Some(origin) = req.headers().get("origin") else {
        return Ok(None);
    };
    let origin = origin.to_str().map_err(|_| "(not text)")?;
    let host = req.headers().get("host").and_then(|h| h.to_str().ok());
    if relay.cfg.server.allowed_origins.allows(origin, host) {
        Ok(Some(origin))
    } else {
        Err(origin)
    }
}

/// `GET /ws`: the native client protocol.
async fn native_ws(
    req: HttpRequest,
    relay: web::Data<Relay>,
    rest: web::Data<crate::rocketchat::rest::RestClient>,
) -> Result<HttpResponse, actix_web::Error> {
    check_origin(&req, &relay)?;
    let since = native::resume_point(req.query_string())?;
    let username = credentials::authenticate(&req, &relay, &rest).await?;
    let c = &relay.cfg.client;
    let shard = relay.registry.shard(&username);
    let actor = ClientSocket::new(
        username.clone(),
        shard.addr.clone(),
        c.heartbeat_interval,
        c.heartbeat_timeout,
        c.queue_limit,
        since,
    );
    upgrade::accept(&req, actor, limits(&relay, &username), &shard.arbiter)
}

/// The bounds of one client websocket of `username`.
pub fn limits(relay: &Relay, username: &str) -> upgrade::Limits {
    upgrade::Limits {
        max_frame: MAX_CLIENT_FRAME,
        write_timeout: relay.cfg.client.write_timeout,
        who: format!("user={username}"),
    }
}
