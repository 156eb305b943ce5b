//! `GET /api/v1/sessions`: the live sessions, for operators.

use super::auth::authorize;
use super::errors::ApiError;
use super::users::iso;
use crate::core::relay::Relay;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

/// `GET /api/v1/sessions`: live sessions, for operators.
pub async fn sessions(req: HttpRequest, relay: web::Data<Relay>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &relay.cfg)?;
    let snapshot = relay.snapshot().await?;
    let logins = relay.logins().await?;
    let mut list: Vec<Value> = logins
        .into_iter()
        .map(|(u, e)| {
            let info = snapshot.get(&u);
            json!({
                "username": u, "rc_user_id": e.rc_user_id, "generation": e.generation,
                "expires_at": iso(e.expires_at_system()),
                "clients": info.map_or(0, |i| i.clients), "connected": info.is_some_and(|i| i.session),
            })
        })
        .collect();
    list.sort_by(|a, b| a["username"].as_str().cmp(&b["username"].as_str()));
    Ok(HttpResponse::Ok().json(json!({"sessions": list})))
}
