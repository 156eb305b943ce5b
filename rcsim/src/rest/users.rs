//! `users.*` (`docs/protocol/rocketchat.md` §1.7, §9.3, §9.4).

use super::{Ctx, Reply};
use crate::error::MeteorError;
use crate::settings::CreateTokenProfile;
use crate::sim::{Credential, LoginPath};
use crate::store::{NewUser, UserPatch, UserRef};
use serde_json::{json, Value};

const CREATE_KEYS: &[&str] = &[
    "email",
    "name",
    "password",
    "username",
    "active",
    "bio",
    "nickname",
    "statusText",
    "roles",
    "joinDefaultChannels",
    "requirePasswordChange",
    "setRandomPassword",
    "sendWelcomeEmail",
    "verified",
    "customFields",
    "fields",
    "freeSwitchExtension",
];

/// `POST users.create` (permission `create-user`).
pub fn create(ctx: &mut Ctx) -> Reply {
    if !ctx.can("create-user") {
        return Reply::forbidden();
    }
    let b = ctx.body.as_object().cloned().unwrap_or_default();
    if let Some(k) = b.keys().find(|k| !CREATE_KEYS.contains(&k.as_str())) {
        return Reply::invalid_params(format!("must NOT have additional properties '{k}'"));
    }
    let mut missing = vec![];
    for k in ["email", "name", "password", "username"] {
        if !b.get(k).is_some_and(Value::is_string) {
            missing.push(format!("must have required property '{k}'"));
        }
    }
    if !missing.is_empty() {
        return Reply::invalid_params(missing.join("\n "));
    }
    let s = |k: &str| {
        b.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let name = s("name");
    if name.chars().any(|c| c == '<' || c == '>') {
        return Reply::failure("Name contains invalid characters");
    }
    let settings = ctx.sim.settings();
    let roles = b
        .get("roles")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let new = NewUser {
        username: s("username"),
        name,
        email: s("email"),
        password: s("password"),
        roles,
        verified: b.get("verified").and_then(Value::as_bool).unwrap_or(false),
        join_default_channels: b
            .get("joinDefaultChannels")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        active: b.get("active").and_then(Value::as_bool),
        age_ms: 0,
        email2fa: settings.email_2fa_auto_opt_in,
    };
    let mut out = vec![];
    let result = {
        let mut store = ctx.sim.store.lock();
        store
            .create_user(new, &mut out)
            .map(|uid| store.user(&uid).map(|u| u.doc()).unwrap_or_default())
    };
    ctx.sim.emit(out);
    match result {
        Ok(doc) => Reply::ok(json!({"user": doc})),
        Err(e) => Reply::error(e),
    }
}

/// The password fallback of two-factor (`x-2fa-code` = SHA-256 hex of the
/// caller's password), with the remember window on the caller's token.
fn check_two_factor(ctx: &Ctx) -> Result<(), Reply> {
    let s = ctx.sim.settings();
    if !s.two_factor_on_update {
        return Ok(());
    }
    let Some(caller) = &ctx.caller else {
        return Err(Reply::unauthorized());
    };
    let now = crate::ejson::now_ms();
    let remember = s.two_factor_remember_for.as_millis() as i64;
    let mut store = ctx.sim.store.lock();
    let Some(user) = store.user(&caller.uid).cloned() else {
        return Err(Reply::unauthorized());
    };
    // A freshly created account is treated as authorized.
    if now - user.created_at < remember {
        return Ok(());
    }
    if let Some(t) = store.token(&caller.token_hash) {
        if t.two_factor_until
            .as_ref()
            .is_some_and(|(until, ip)| *until > now && ip == &ctx.ip)
        {
            return Ok(());
        }
    }
    let Some(code) = ctx.header("x-2fa-code") else {
        return Err(Reply::error(
            MeteorError::new("totp-required", "TOTP Required").with_details(
                json!({"method": "password", "codeGenerated": false, "availableMethods": []}),
            ),
        ));
    };
    if user.password_digest.as_deref() != Some(code.to_lowercase().as_str()) {
        return Err(Reply::error(
            MeteorError::new("totp-invalid", "TOTP Invalid")
                .with_details(json!({"method": "password"})),
        ));
    }
    if let Some(t) = store.token_mut(&caller.token_hash) {
        t.two_factor_until = Some((now + remember, ctx.ip.clone()));
    }
    Ok(())
}

/// `POST users.update` (`twoFactorRequired`).
pub fn update(ctx: &mut Ctx) -> Reply {
    let Some(uid) = ctx.param("userId") else {
        return Reply::invalid_params("must have required property 'userId'");
    };
    let Some(data) = ctx.body.get("data").and_then(Value::as_object).cloned() else {
        return Reply::invalid_params("must have required property 'data'");
    };
    if uid != ctx.uid() && !ctx.can("edit-other-user-info") {
        return Reply::forbidden();
    }
    if let Err(r) = check_two_factor(ctx) {
        return r;
    }
    let st = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
    let patch = UserPatch {
        name: st("name"),
        email: st("email"),
        password: st("password"),
        username: st("username"),
        active: data.get("active").and_then(Value::as_bool),
        roles: data.get("roles").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        }),
        verified: data.get("verified").and_then(Value::as_bool),
    };
    let result = {
        let mut store = ctx.sim.store.lock();
        store
            .update_user(&uid, patch)
            .map(|removed| (removed, store.user(&uid).map(|u| u.doc())))
    };
    match result {
        Ok((removed, doc)) => {
            ctx.sim.tokens_removed(&removed, None);
            Reply::ok(json!({"user": doc}))
        }
        Err(e) => Reply::error(e),
    }
}

/// `getUserFromParams`: `userId`, `username` or `user`.
fn target_user(ctx: &Ctx) -> Result<String, Reply> {
    let r = if let Some(id) = ctx.param("userId") {
        UserRef::Id(id)
    } else if let Some(u) = ctx.param("username").or_else(|| ctx.param("user")) {
        UserRef::Username(u)
    } else {
        return Err(Reply::error(MeteorError::new(
            "error-user-param-not-provided",
            "The required \"userId\" or \"username\" param was not provided",
        )));
    };
    ctx.sim
        .store
        .lock()
        .find_user(&r)
        .map(|u| u.id.clone())
        .ok_or_else(|| {
            Reply::error(MeteorError::new(
                "error-invalid-user",
                "The required \"userId\" or \"username\" param provided does not match any users",
            ))
        })
}

/// `POST users.delete` (`permissionsRequired: ['delete-user']`).
pub fn delete(ctx: &mut Ctx) -> Reply {
    if !ctx.can("delete-user") {
        return Reply::forbidden();
    }
    let uid = match target_user(ctx) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let mut out = vec![];
    let removed = ctx.sim.store.lock().delete_user(&uid, &mut out);
    ctx.sim.emit(out);
    ctx.sim.tokens_removed(&removed.unwrap_or_default(), None);
    Reply::ok(json!({}))
}

/// `GET users.info?userId=|username=`.
pub fn info(ctx: &mut Ctx) -> Reply {
    let r = if let Some(id) = ctx.param("userId") {
        UserRef::Id(id)
    } else if let Some(u) = ctx.param("username") {
        UserRef::Username(u)
    } else if let Some(e) = ctx.param("email") {
        UserRef::Email(e)
    } else {
        return Reply::error(MeteorError::new(
            "error-user-param-not-provided",
            "The required \"userId\" or \"username\" param was not provided",
        ));
    };
    let store = ctx.sim.store.lock();
    let Some(u) = store.find_user(&r) else {
        return Reply::failure("User not found.");
    };
    let mut doc = u.doc();
    if ctx.param("includeUserRooms").as_deref() == Some("true") {
        let (subs, _) = store.subscriptions_of(&u.id, None);
        doc["rooms"] = Value::Array(
            subs.iter()
                .map(|s| json!({"rid": s["rid"], "name": s["name"], "t": s["t"], "unread": s["unread"]}))
                .collect(),
        );
    }
    Reply::ok(json!({"user": doc}))
}

/// `POST users.setActiveStatus`: deactivation removes every token.
pub fn set_active_status(ctx: &mut Ctx) -> Reply {
    if !ctx.can("edit-other-user-active-status") {
        return Reply::forbidden();
    }
    let (Some(uid), Some(active)) = (
        ctx.param("userId"),
        ctx.body.get("activeStatus").and_then(Value::as_bool),
    ) else {
        return Reply::invalid_params(
            "must have required property 'userId' and boolean 'activeStatus'",
        );
    };
    let result = ctx.sim.store.lock().update_user(
        &uid,
        UserPatch {
            active: Some(active),
            ..Default::default()
        },
    );
    match result {
        Ok(removed) => {
            ctx.sim.tokens_removed(&removed, None);
            Reply::ok(json!({"user": {"_id": uid, "active": active}}))
        }
        Err(e) => Reply::error(e),
    }
}

/// `POST users.logout {userId?}`: removes all of that user's tokens.
pub fn logout(ctx: &mut Ctx) -> Reply {
    let uid = ctx.param("userId").unwrap_or_else(|| ctx.uid().to_string());
    if uid != ctx.uid() && !ctx.can("logout-other-user") {
        return Reply::forbidden();
    }
    let removed = {
        let mut store = ctx.sim.store.lock();
        if store.user(&uid).is_none() {
            return Reply::error(MeteorError::new("error-invalid-user-id", "Invalid user id"));
        }
        store.remove_user_tokens(&uid)
    };
    ctx.sim.tokens_removed(&removed, None);
    Reply::ok(json!({"message": format!("User {uid} has been logged out!")}))
}

/// `POST users.createToken`, 7.x or 8.x profile.
pub fn create_token(ctx: &mut Ctx) -> Reply {
    let s = ctx.sim.settings();
    let not_authorized =
        || Reply::error(MeteorError::new("error-not-authorized", "Not authorized"));
    let target = match s.create_token_profile {
        CreateTokenProfile::V7 => {
            if !s.create_tokens_for_users {
                return not_authorized();
            }
            match target_user(ctx) {
                Ok(u) => u,
                Err(r) => return r,
            }
        }
        CreateTokenProfile::V8 => {
            let b = ctx.body.as_object().cloned().unwrap_or_default();
            if let Some(k) = b.keys().find(|k| *k != "userId" && *k != "secret") {
                return Reply::invalid_params(format!("must NOT have additional properties '{k}'"));
            }
            let (Some(uid), Some(secret)) = (ctx.param("userId"), ctx.param("secret")) else {
                return Reply::invalid_params(
                    "must have required property 'userId'\n must have required property 'secret'",
                );
            };
            if s.create_tokens_secret.as_deref() != Some(secret.as_str()) {
                return not_authorized();
            }
            uid
        }
    };
    if target != ctx.uid() && !ctx.can("user-generate-access-token") {
        return not_authorized();
    }
    let (token, exists) = {
        let mut store = ctx.sim.store.lock();
        if store.user(&target).is_none() {
            (None, false)
        } else {
            (Some(store.add_token(&target).0), true)
        }
    };
    if !exists {
        return Reply::error(MeteorError::new("error-invalid-user", "Invalid user"));
    }
    let token = token.unwrap_or_default();
    // Counted as a login of that user, the way RC's session log sees it.
    let _ = ctx.sim.login(
        Credential::Resume(token.clone()),
        &ctx.ip,
        LoginPath::CreateToken,
    );
    Reply::ok(json!({"data": {"userId": target, "authToken": token}}))
}
