//! The HTTP side: backend API (API key), health, and client websockets.

pub mod admission;
pub mod backend;
pub mod body;
pub mod clients;
pub mod errors;
pub mod frames;
pub mod proxy;
pub mod upgrade;

use crate::admin::AdminAgent;
use crate::cache::TokenCache;
use crate::config::Config;
use crate::registry::Registries;
use actix::Addr;
use actix_web::web;
use std::sync::Arc;

/// What every handler shares (all `Send + Sync`).
pub struct AppState {
    /// The configuration.
    pub cfg: Arc<Config>,
    /// The token cache.
    pub cache: Arc<TokenCache>,
    /// The registry's shards.
    pub registry: Registries,
    /// The admin agent.
    pub admin: Addr<AdminAgent>,
    /// Whether imrelay can serve, and why not.
    pub ready: Arc<crate::readiness::Readiness>,
    /// The REST login throttle shared by all workers.
    pub login_gate: Arc<backend::LoginGate>,
    /// Negotiated SignalR connections.
    pub signalr: Arc<crate::signalr::Connections>,
    /// The connection bounds and their counts.
    pub admission: Arc<admission::Admission>,
}

impl AppState {
    /// The bounds of a backend request's body.
    pub fn body_limits(&self) -> body::BodyLimits {
        body::BodyLimits {
            max: self.cfg.server.max_body_bytes,
            timeout: self.cfg.server.body_timeout,
            key: "server.max_body_bytes",
        }
    }

    /// The bounds of a body passed through to Rocket.Chat.
    pub fn proxy_body_limits(&self) -> body::BodyLimits {
        body::BodyLimits {
            max: self.cfg.server.max_proxy_body_bytes,
            timeout: self.cfg.server.body_timeout,
            key: "server.max_proxy_body_bytes",
        }
    }
}

/// Registers every route; the SignalR hub lives at `hub_path`.
pub fn routes(hub_path: String) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.route("/healthz", web::get().to(backend::healthz))
            .route("/readyz", web::get().to(backend::readyz))
            .route("/metrics", web::get().to(backend::metrics))
            .route("/ws", web::get().to(clients::native))
            .route(
                &format!("{hub_path}/negotiate"),
                web::post().to(crate::signalr::negotiate),
            )
            .route(
                &format!("{hub_path}/negotiate"),
                web::method(actix_web::http::Method::OPTIONS).to(crate::signalr::preflight),
            )
            .route(&hub_path, web::get().to(crate::signalr::connect))
            .service(
                web::scope("/api/v1")
                    .route("/users/{username}", web::put().to(backend::put_user))
                    .route("/users/{username}", web::get().to(backend::get_user))
                    .route("/users/{username}", web::delete().to(backend::delete_user))
                    .route("/users/{username}/login", web::post().to(backend::login))
                    .route("/users/{username}/logout", web::post().to(backend::logout))
                    .route(
                        "/users/{username}/reconnect",
                        web::post().to(backend::reconnect),
                    )
                    .route(
                        "/users/{username}/rc/{path:.+}",
                        web::route().to(proxy::user_call),
                    )
                    .route("/admin/rc/{path:.+}", web::route().to(proxy::admin_call))
                    .route("/sessions", web::get().to(backend::sessions))
                    .default_service(web::to(errors::not_found)),
            );
    }
}
