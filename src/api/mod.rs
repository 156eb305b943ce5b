//! The backend adapter: the HTTP API that business applications call with
//! an API key (users, sessions, the chat-action proxy), and health. It turns
//! HTTP into calls on the core's façade and the façade's answers into JSON.

pub mod auth;
pub mod body;
pub mod errors;
pub mod health;
pub mod proxy;
pub mod sessions;
pub mod users;

use actix_web::web;

/// Registers the backend API and health routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .service(
            web::scope("/api/v1")
                .route("/users/{username}", web::put().to(users::put_user))
                .route("/users/{username}", web::get().to(users::get_user))
                .route("/users/{username}", web::delete().to(users::delete_user))
                .route("/users/{username}/login", web::post().to(users::login))
                .route("/users/{username}/logout", web::post().to(users::logout))
                .route(
                    "/users/{username}/reconnect",
                    web::post().to(users::reconnect),
                )
                .route(
                    "/users/{username}/rc/{path:.+}",
                    web::route().to(proxy::user_call),
                )
                .route("/admin/rc/{path:.+}", web::route().to(proxy::admin_call))
                .route("/sessions", web::get().to(sessions::sessions))
                .default_service(web::to(errors::not_found)),
        );
}
