//! `POST method.call/:method`: DDP methods over REST, the way Rocket.Chat's
//! web client calls them (`docs/protocol/rocketchat.md` §9.7). The REST
//! limiter does not apply (`rateLimiterOptions: false`); the DDP limiter is
//! applied by hand, keyed by the user and the hashed login token. The
//! method comes from the body, an EJSON `{msg:"method", id, method,
//! params}` string, and its answer is one too: HTTP 200 with the result;
//! the error with 400 from 8.0 (Rocket.Chat's PR #38007, merged before
//! 8.0.0), with 200 and `success: true` before (`server_version`).

use super::{Ctx, Reply};
use crate::ejson::{ejson_date, now_ms};
use crate::error::MeteorError;
use crate::Settings;
use serde_json::{json, Value};

/// The methods rcsim answers over `method.call`.
const METHODS: &[&str] = &["subscriptions/get", "rooms/get", "messages/get"];

pub fn call(ctx: &mut Ctx) -> Reply {
    let msg: Option<Value> = ctx
        .body
        .get("message")
        .and_then(Value::as_str)
        .and_then(|m| serde_json::from_str(m).ok());
    let Some(msg) = msg else {
        return Reply::failure("Invalid method call");
    };
    let (Some("method"), Some(id), Some(method), Some(params)) = (
        msg.get("msg").and_then(Value::as_str),
        msg.get("id").and_then(Value::as_str),
        msg.get("method").and_then(Value::as_str),
        msg.get("params").and_then(Value::as_array),
    ) else {
        return Reply::failure("Invalid method call");
    };
    let settings = ctx.sim.settings();
    if settings.ddp_rate_limiter {
        let token = ctx
            .caller
            .as_ref()
            .map(|c| c.token_hash.clone())
            .unwrap_or_default();
        let wait = ctx.sim.ddp_limiter.lock().hit(
            ctx.uid(),
            &ctx.ip,
            &token,
            method,
            now_ms(),
            settings.ddp_rate_limit_by_method_interval.as_millis() as i64,
        );
        if let Some(ms) = wait {
            let secs = (ms + 999) / 1000;
            let e = MeteorError::new(
                "too-many-requests",
                format!("Error, too many requests. Please slow down. You must wait {secs} seconds before trying again."),
            )
            .with_details(json!({"timeToReset": ms}));
            return answer(&settings, id, Err(e));
        }
    }
    let known = METHODS.contains(&method) && !settings.removed_methods.iter().any(|m| m == method);
    let result = if known {
        run(ctx, method, params)
    } else {
        Err(MeteorError::new(
            404,
            format!("Method '{method}' not found"),
        ))
    };
    answer(&settings, id, result)
}

fn answer(settings: &Settings, id: &str, result: Result<Value, MeteorError>) -> Reply {
    match result {
        Ok(r) => Reply::ok(
            json!({"message": json!({"msg": "result", "id": id, "result": r}).to_string()}),
        ),
        Err(e) => {
            let message = json!({"msg": "result", "id": id, "error": e.to_ddp()}).to_string();
            if settings.major_version() >= 8 {
                Reply::raw(400, json!({"success": false, "message": message}))
            } else {
                Reply::ok(json!({"message": message}))
            }
        }
    }
}

fn run(ctx: &Ctx, method: &str, params: &[Value]) -> Result<Value, MeteorError> {
    let store = ctx.sim.store.lock();
    let uid = ctx.uid();
    let since = |v: Option<&Value>| v.and_then(ejson_date);
    Ok(match method {
        // With a date `{update, remove}`, without one every record. A date is
        // an EJSON Date only: Rocket.Chat's `instanceof Date` takes nothing else.
        "subscriptions/get" => match since(params.first()) {
            Some(t) => {
                let (update, remove) = store.subscriptions_of(uid, Some(t));
                json!({"update": update, "remove": remove})
            }
            None => json!(store.subscriptions_of(uid, None).0),
        },
        "rooms/get" => match since(params.first()) {
            Some(t) => json!({"update": store.rooms_of(uid, Some(t)), "remove": []}),
            None => json!(store.rooms_of(uid, None)),
        },
        _ => {
            let Some(rid) = params.first().and_then(Value::as_str) else {
                return Err(MeteorError::new("error-invalid-room", "Invalid room"));
            };
            if !store.can_access(rid, uid) {
                return Err(MeteorError::new("error-not-allowed", "Not allowed"));
            }
            let Some(t) = since(params.get(1).and_then(|o| o.get("lastUpdate"))) else {
                return Err(MeteorError::new("error-invalid-date", "Invalid date"));
            };
            let (updated, deleted) = store.sync_messages(rid, t);
            json!({"updated": updated, "deleted": deleted})
        }
    })
}
