//! `login`, `logout`, `me` (`docs/protocol/rocketchat.md` §1.4–§1.6).

use super::{Ctx, Reply};
use crate::error::MeteorError;
use crate::sim::{Credential, LoginPath, Password};
use crate::store::UserRef;
use serde_json::{json, Map, Value};

/// `POST /api/v1/login`: every body form `loginCompatibility` accepts.
pub fn login(ctx: &mut Ctx) -> Reply {
    let b = ctx.body.as_object().cloned().unwrap_or_default();
    let code = b
        .get("code")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| ctx.header("x-2fa-code"));
    let user = if let Some(u) = b.get("user").and_then(Value::as_str) {
        Some(if u.contains('@') {
            UserRef::Email(u.into())
        } else {
            UserRef::Username(u.into())
        })
    } else if let Some(u) = b.get("username").and_then(Value::as_str) {
        Some(UserRef::Username(u.into()))
    } else {
        b.get("email")
            .and_then(Value::as_str)
            .map(|e| UserRef::Email(e.into()))
    };
    let password = match b.get("password") {
        Some(Value::String(p)) => Some(Password::Plain(p.clone())),
        Some(Value::Object(h)) => h
            .get("hashed")
            .and_then(Value::as_str)
            .map(|d| Password::Digest(d.into())),
        _ => None,
    };
    let cred = match (user, password, b.get("resume").and_then(Value::as_str)) {
        (Some(user), Some(password), _) => Credential::Password {
            user,
            password,
            code,
        },
        (_, None, Some(token)) => Credential::Resume(token.to_string()),
        _ => {
            return login_failure(MeteorError::new(
                400,
                "Unrecognized options for login request",
            ))
        }
    };
    match ctx.sim.login(cred, &ctx.ip, LoginPath::Rest) {
        Ok(ok) => {
            let site = ctx.sim.site_url();
            let me = ctx.sim.store.lock().user(&ok.uid).map(|u| u.me(&site));
            Reply::raw(
                200,
                json!({
                    "status": "success",
                    "data": {"userId": ok.uid, "authToken": ok.token, "me": me},
                    "success": true,
                }),
            )
        }
        Err(e) => login_failure(e),
    }
}

/// The 401 body `ApiClass` builds from a failed login: `unauthorized()`
/// overwritten with `{status, error, details, message}`; RC rewrites
/// "User not found" to a bare "Unauthorized".
fn login_failure(e: MeteorError) -> Reply {
    if e.reason.as_deref() == Some("User not found") {
        return Reply::raw(
            401,
            json!({"success": false, "error": "Unauthorized", "status": "error", "message": "Unauthorized"}),
        );
    }
    let mut body = Map::new();
    body.insert("success".into(), json!(false));
    body.insert("error".into(), e.error.clone());
    body.insert("status".into(), json!("error"));
    if let Some(d) = &e.details {
        body.insert("details".into(), (**d).clone());
    }
    body.insert(
        "message".into(),
        json!(e.reason.clone().unwrap_or_else(|| e.message())),
    );
    Reply::raw(401, Value::Object(body))
}

/// `POST|GET /api/v1/logout`: removes the calling token only.
pub fn logout(ctx: &mut Ctx) -> Reply {
    if let Some(c) = &ctx.caller {
        ctx.sim.store.lock().remove_token(&c.token_hash);
        ctx.sim
            .tokens_removed(std::slice::from_ref(&c.token_hash), None);
    }
    // The documented body, which has no `success` key.
    Reply::raw(
        200,
        json!({"status": "success", "data": {"message": "You've been logged out!"}}),
    )
}

/// `GET /api/v1/me`.
pub fn me(ctx: &mut Ctx) -> Reply {
    let site = ctx.sim.site_url();
    match ctx.sim.store.lock().user(ctx.uid()) {
        Some(u) => Reply::ok(u.me(&site)),
        None => Reply::unauthorized(),
    }
}
