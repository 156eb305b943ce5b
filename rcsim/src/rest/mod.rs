//! `/api/v1/*`: one dispatcher applies what RC's `ApiClass` applies to every
//! route (auth headers, the rate limiter, error envelopes, ISO dates, the
//! no-cache headers), then calls the route's handler.

mod admin;
mod auth;
mod chat;
mod methods;
mod rooms;
mod users;

use crate::ejson::{now_ms, rest_dates};
use crate::error::MeteorError;
use crate::limits::too_many_requests;
use crate::sim::{CallRecord, Sim};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The authenticated caller of a REST call.
#[derive(Clone, Debug)]
pub struct Caller {
    /// `X-User-Id`.
    pub uid: String,
    /// The token's hash.
    pub token_hash: String,
}

/// Everything a handler needs about one call.
pub struct Ctx<'a> {
    pub(crate) sim: &'a Sim,
    pub(crate) req: &'a HttpRequest,
    pub(crate) query: HashMap<String, String>,
    pub(crate) body: Value,
    pub(crate) ip: String,
    pub(crate) caller: Option<Caller>,
    /// The path segment after the route name (`settings/<id>`).
    pub(crate) arg: Option<String>,
    /// The raw body (multipart uploads).
    pub(crate) raw: &'a [u8],
}

impl Ctx<'_> {
    /// A parameter from the JSON body, else the query string.
    pub fn param(&self, key: &str) -> Option<String> {
        match self.body.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => self.query.get(key).cloned(),
            Some(other) => Some(other.to_string()),
        }
    }

    /// The caller's uid (routes with `auth: true` always have one).
    pub fn uid(&self) -> &str {
        self.caller
            .as_ref()
            .map(|c| c.uid.as_str())
            .unwrap_or_default()
    }

    /// A request header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.req
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// Whether the caller holds `permission`.
    pub fn can(&self, permission: &str) -> bool {
        self.sim.has_permission(self.uid(), permission)
    }
}

/// A handler's answer.
pub struct Reply {
    status: u16,
    body: Value,
}

impl Reply {
    /// 200 with `success: true` added.
    pub fn ok(body: Value) -> Reply {
        let mut body = match body {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        body.insert("success".into(), Value::Bool(true));
        Reply {
            status: 200,
            body: Value::Object(body),
        }
    }

    /// A status and body as given.
    pub fn raw(status: u16, body: Value) -> Reply {
        Reply { status, body }
    }

    /// `API.v1.failure(message)`: 400 `{success:false, error}`.
    pub fn failure(message: impl Into<String>) -> Reply {
        Reply::raw(400, json!({"success": false, "error": message.into()}))
    }

    /// A thrown `Meteor.Error`: 400 with `errorType` (403/429 for the codes RC maps).
    pub fn error(e: MeteorError) -> Reply {
        match e.error.as_str() {
            Some("error-unauthorized" | "unauthorized") => Reply::forbidden(),
            Some("error-too-many-requests") => {
                Reply::raw(429, json!({"success": false, "error": e.message()}))
            }
            _ => Reply::raw(400, e.to_rest_failure()),
        }
    }

    /// A missing permission: 403.
    pub fn forbidden() -> Reply {
        Reply::raw(
            403,
            json!({"success": false, "error": "User does not have the permissions required for this action [error-unauthorized]"}),
        )
    }

    /// Legacy 401 for missing or bad credentials.
    pub fn unauthorized() -> Reply {
        Reply::raw(
            401,
            json!({"success": false, "error": "You must be logged in to do this.", "status": "error", "message": "You must be logged in to do this."}),
        )
    }

    /// ajv validation failure.
    pub fn invalid_params(message: impl Into<String>) -> Reply {
        Reply::raw(
            400,
            json!({"success": false, "errorType": "error-invalid-params", "error": message.into()}),
        )
    }
}

type Handler = fn(&mut Ctx) -> Reply;

/// A route: method, name, whether it needs `X-User-Id`/`X-Auth-Token`, handler.
struct Route {
    method: &'static str,
    name: &'static str,
    auth: bool,
    handler: Handler,
}

const fn route(method: &'static str, name: &'static str, auth: bool, handler: Handler) -> Route {
    Route {
        method,
        name,
        auth,
        handler,
    }
}

static ROUTES: &[Route] = &[
    route("POST", "login", false, auth::login),
    route("POST", "logout", true, auth::logout),
    route("GET", "logout", true, auth::logout),
    route("GET", "me", true, auth::me),
    route("POST", "users.create", true, users::create),
    route("POST", "users.update", true, users::update),
    route("POST", "users.delete", true, users::delete),
    route("GET", "users.info", true, users::info),
    route(
        "POST",
        "users.setActiveStatus",
        true,
        users::set_active_status,
    ),
    route("POST", "users.logout", true, users::logout),
    route("POST", "users.createToken", true, users::create_token),
    route("POST", "chat.postMessage", true, chat::post_message),
    route("POST", "chat.sendMessage", true, chat::send_message),
    route("POST", "chat.update", true, chat::update),
    route("POST", "chat.delete", true, chat::delete),
    route("POST", "chat.react", true, chat::react),
    route("GET", "chat.syncMessages", true, chat::sync_messages),
    route("GET", "channels.history", true, chat::history),
    route("GET", "groups.history", true, chat::history),
    route("GET", "im.history", true, chat::history),
    route("GET", "dm.history", true, chat::history),
    route("POST", "im.create", true, rooms::im_create),
    route("POST", "dm.create", true, rooms::im_create),
    route("POST", "channels.create", true, rooms::channels_create),
    route("POST", "groups.create", true, rooms::groups_create),
    route("POST", "channels.invite", true, rooms::invite),
    route("POST", "groups.invite", true, rooms::invite),
    route("POST", "channels.kick", true, rooms::kick),
    route("POST", "groups.kick", true, rooms::kick),
    route("POST", "channels.leave", true, rooms::leave),
    route("POST", "groups.leave", true, rooms::leave),
    route("GET", "rooms.get", true, rooms::rooms_get),
    route("GET", "subscriptions.get", true, rooms::subscriptions_get),
    route(
        "POST",
        "subscriptions.read",
        true,
        rooms::subscriptions_read,
    ),
    route("GET", "settings", true, admin::setting),
    route("POST", "rooms.upload", true, chat::upload),
    route("GET", "permissions.listAll", true, admin::permissions),
    route("POST", "method.call", true, methods::call),
];

/// Routes declared with `rateLimiterOptions: false`.
const UNLIMITED: &[&str] = &["method.call"];

/// The client address RC counts: `X-Real-IP` wins over the socket address.
pub fn client_ip(req: &HttpRequest) -> String {
    req.headers()
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.peer_addr().map(|a| a.ip().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

fn parse_body(req: &HttpRequest, bytes: &[u8]) -> Result<Value, Reply> {
    if bytes.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("multipart/form-data") {
        // Parsed by the route itself from the raw body.
        return Ok(Value::Object(Map::new()));
    }
    if ct.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
            .map_err(|e| Reply::failure(format!("Invalid form body: {e}")))?;
        return Ok(Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| Reply::failure(format!("Invalid JSON body: {e}")))
}

/// `ANY /api/v1/{name}`.
pub async fn dispatch(
    req: HttpRequest,
    name: web::Path<String>,
    bytes: web::Bytes,
    sim: web::Data<Arc<Sim>>,
) -> HttpResponse {
    let delay = sim.faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let full = name.into_inner();
    let (name, arg) = match full.split_once('/') {
        Some((n, a)) => (n.to_string(), Some(a.to_string())),
        None => (full, None),
    };
    let method = req.method().as_str().to_string();
    let mut headers: Vec<(&'static str, String)> = vec![];
    let mut caller_id = None;
    let reply = 'reply: {
        let Some(route) = ROUTES.iter().find(|r| {
            r.name == name
                && r.method == method
                && arg.is_some() == matches!(r.name, "settings" | "rooms.upload" | "method.call")
        }) else {
            break 'reply Reply::raw(
                404,
                json!({"success": false, "error": "Resource not found"}),
            );
        };
        if let Some(status) = sim.faults.take_route_failure(&name) {
            break 'reply injected_failure(status, &mut headers);
        }
        let body = match parse_body(&req, &bytes) {
            Ok(b) => b,
            Err(r) => break 'reply r,
        };
        let query: HashMap<String, String> =
            serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
        let caller = match (
            req.headers().get("x-user-id"),
            req.headers().get("x-auth-token"),
        ) {
            (Some(u), Some(t)) => {
                let (u, t) = (u.to_str().unwrap_or(""), t.to_str().unwrap_or(""));
                sim.authenticate(u, t).map(|h| Caller {
                    uid: u.to_string(),
                    token_hash: h,
                })
            }
            _ => None,
        };
        if route.auth && caller.is_none() {
            break 'reply Reply::unauthorized();
        }
        caller_id = caller.as_ref().map(|c| c.uid.clone());
        let ip = client_ip(&req);
        let settings = sim.settings();
        if settings.rest_rate_limiter && !UNLIMITED.contains(&name.as_str()) {
            let bypass = route.auth
                && caller
                    .as_ref()
                    .is_some_and(|c| sim.has_permission(&c.uid, "api-bypass-rate-limit"));
            if !bypass {
                let now = now_ms();
                let key = format!("/v1/{name}{}", method.to_lowercase());
                let window = settings.rest_rate_limit_window.as_millis() as i64;
                let info =
                    sim.limiter
                        .lock()
                        .hit(&key, &ip, settings.rest_rate_limit_calls, window, now);
                headers.push(("X-RateLimit-Limit", info.limit.to_string()));
                headers.push(("X-RateLimit-Remaining", info.remaining.to_string()));
                headers.push(("X-RateLimit-Reset", info.reset_ms.to_string()));
                if info.blocked {
                    break 'reply Reply::raw(
                        429,
                        json!({"success": false, "error": too_many_requests(info.reset_ms - now)}),
                    );
                }
            }
        }
        let mut ctx = Ctx {
            sim: &sim,
            req: &req,
            query,
            body,
            ip,
            caller,
            arg,
            raw: &bytes,
        };
        (route.handler)(&mut ctx)
    };
    sim.stats.record_call(CallRecord {
        method,
        route: name,
        user_id: caller_id,
        status: reply.status,
        ip: client_ip(&req),
    });
    sim.bump();
    let mut resp = HttpResponse::build(
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    resp.insert_header(("Cache-Control", "no-store"));
    resp.insert_header(("Pragma", "no-cache"));
    for (k, v) in headers {
        resp.insert_header((k, v));
    }
    resp.content_type("application/json")
        .body(rest_dates(reply.body).to_string())
}

fn injected_failure(status: u16, headers: &mut Vec<(&'static str, String)>) -> Reply {
    match status {
        429 => {
            let reset = now_ms() + 60_000;
            headers.push(("X-RateLimit-Limit", "10".into()));
            headers.push(("X-RateLimit-Remaining", "0".into()));
            headers.push(("X-RateLimit-Reset", reset.to_string()));
            Reply::raw(
                429,
                json!({"success": false, "error": too_many_requests(60_000)}),
            )
        }
        503 => Reply::raw(
            503,
            json!({"success": false, "error": "Service Unavailable"}),
        ),
        s => Reply::raw(
            s,
            json!({"success": false, "error": "Internal server error"}),
        ),
    }
}

/// `GET /api/info`: the server version, no auth needed.
pub async fn info(sim: web::Data<Arc<Sim>>) -> HttpResponse {
    let version = sim.settings.read().server_version.clone();
    HttpResponse::Ok().json(json!({"version": version, "success": true}))
}
