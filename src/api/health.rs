//! Health for load balancers and operators: `/healthz` (alive), `/readyz`
//! (can serve, else why not) and `/metrics` (API key).

use super::auth::authorize;
use super::errors::ApiError;
use crate::admission::{Admission, Refusal};
use crate::core::relay::Relay;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 while imrelay can serve (logged in to Rocket.Chat as
/// the admin, and its last probe of REST and DDP answered), else 503 with
/// the reason.
pub async fn readyz(relay: web::Data<Relay>) -> HttpResponse {
    match relay.ready.check() {
        Ok(()) => HttpResponse::Ok().json(json!({"ready": true})),
        Err(why) => HttpResponse::ServiceUnavailable().json(json!({"ready": false, "reason": why})),
    }
}

/// `GET /metrics` (API key): Prometheus text for the connection bounds.
pub async fn metrics(
    req: HttpRequest,
    relay: web::Data<Relay>,
    admission: web::Data<Admission>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &relay.cfg)?;
    let a = &admission;
    let body = format!(
        "# HELP imrelay_connections_open TCP connections open now.\n\
         # TYPE imrelay_connections_open gauge\n\
         imrelay_connections_open {}\n\
         # HELP imrelay_connections_max TCP connections accepted at most (server.max_connections, lowered to fit the descriptor limit).\n\
         # TYPE imrelay_connections_max gauge\n\
         imrelay_connections_max {}\n\
         # HELP imrelay_connections_refused_total TCP connections refused, by the bound that was reached.\n\
         # TYPE imrelay_connections_refused_total counter\n\
         imrelay_connections_refused_total{{reason=\"total\"}} {}\n\
         imrelay_connections_refused_total{{reason=\"per_ip\"}} {}\n",
        a.open(),
        a.max_total(),
        a.refused(Refusal::Total),
        a.refused(Refusal::PerIp),
    );
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body))
}
