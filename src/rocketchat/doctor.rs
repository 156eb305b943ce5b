//! `imrelay doctor`: checks a Rocket.Chat server as the configured admin and
//! says what to change, one line per finding (`docs/protocol/rocketchat.md` §9).

use crate::config::{Config, LoginMethod};
use crate::rocketchat::method_call::{self, Answer};
use crate::rocketchat::rest::RestClient;
use crate::rocketchat::{Credentials, RcError};
use serde_json::{json, Value};
use std::fmt;

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, with a cost or a risk worth fixing.
    Warn,
    /// imrelay cannot work like this.
    Fail,
}

/// One finding.
#[derive(Clone, Debug)]
pub struct Finding {
    /// Severity.
    pub level: Level,
    /// A stable key (for scripts and tests).
    pub key: &'static str,
    /// What was found, and what to change.
    pub text: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        write!(f, "{tag} {:<22} {}", self.key, self.text)
    }
}

fn finding(level: Level, key: &'static str, text: impl Into<String>) -> Finding {
    Finding {
        level,
        key,
        text: text.into(),
    }
}

async fn setting(rest: &RestClient, admin: &Credentials, id: &str) -> Option<Value> {
    rest.get(&format!("/api/v1/settings/{id}"), admin)
        .await
        .ok()
        .map(|v| v["value"].clone())
}

/// Runs every check.
pub async fn check(cfg: &Config) -> Vec<Finding> {
    let rc = &cfg.rocketchat;
    let rest = RestClient::new(&rc.url, rc.request_timeout);
    let mut out = vec![];
    match rest.server_info().await {
        Ok(info) => out.push(finding(
            Level::Ok,
            "reachable",
            format!(
                "Rocket.Chat {} at {}",
                info["version"].as_str().unwrap_or("(version hidden)"),
                rc.url
            ),
        )),
        Err(e) => {
            out.push(finding(
                Level::Fail,
                "reachable",
                format!("{e}; check rocketchat.url ({})", rc.url),
            ));
            return out;
        }
    }
    let admin = match rest
        .login(&rc.admin_username, rc.admin_password.expose())
        .await
    {
        Ok(c) => {
            out.push(finding(
                Level::Ok,
                "admin_login",
                format!("logged in as {}", rc.admin_username),
            ));
            c
        }
        Err(e) => {
            let fix = match e {
                RcError::BadCredentials(_) => {
                    "; check rocketchat.admin_username and rocketchat.admin_password"
                }
                RcError::RateLimited { .. } => {
                    "; the REST login limit (10/min per IP) is spent: wait a minute"
                }
                _ => "",
            };
            out.push(finding(Level::Fail, "admin_login", format!("{e}{fix}")));
            return out;
        }
    };
    let limiter = setting(&rest, &admin, "API_Enable_Rate_Limiter").await;
    let calls = setting(&rest, &admin, "API_Enable_Rate_Limiter_Limit_Calls_Default")
        .await
        .and_then(|v| v.as_u64())
        .unwrap_or(10);
    let window = setting(&rest, &admin, "API_Enable_Rate_Limiter_Limit_Time_Default")
        .await
        .and_then(|v| v.as_u64())
        .unwrap_or(60_000);
    let bypass_roles: Vec<String> = rest
        .get("/api/v1/permissions.listAll", &admin)
        .await
        .ok()
        .and_then(|p| {
            p["update"]
                .as_array()?
                .iter()
                .find(|p| p["_id"] == "api-bypass-rate-limit")
                .map(|p| {
                    p["roles"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r.as_str().map(str::to_string))
                        .collect()
                })
        })
        .unwrap_or_default();
    match limiter {
        Some(Value::Bool(false)) => out.push(finding(
            Level::Ok,
            "rest_rate_limiter",
            "API_Enable_Rate_Limiter is off",
        )),
        None => out.push(finding(
            Level::Warn,
            "rest_rate_limiter",
            "cannot read API_Enable_Rate_Limiter (the admin needs view-privileged-setting)",
        )),
        Some(_) => {
            if bypass_roles.iter().any(|r| r == "user") {
                out.push(finding(
                    Level::Ok,
                    "rest_rate_limiter",
                    "on, but the role user has api-bypass-rate-limit",
                ));
            } else {
                out.push(finding(
                    Level::Warn,
                    "rest_rate_limiter",
                    format!(
                        "on: REST calls made as users share {calls} per {}s per route from imrelay's one IP; grant api-bypass-rate-limit to the role user (Administration > Permissions), or raise API_Enable_Rate_Limiter_Limit_Calls_Default",
                        window / 1000
                    ),
                ));
            }
            if rc.login_method == LoginMethod::Rest {
                out.push(finding(
                    Level::Warn,
                    "login_method",
                    format!("login_method = \"rest\": /api/v1/login allows {calls} per {}s per IP, never exempt; use login_method = \"ddp\"", window / 1000),
                ));
            }
        }
    }
    // After a Rocket.Chat restart every session backfills at once: paced
    // to the limiter when it binds, at full speed when it does not.
    let unlimited =
        matches!(limiter, Some(Value::Bool(false))) || bypass_roles.iter().any(|r| r == "user");
    let per_minute = calls * 60_000 / window.max(1);
    let pace = u64::from(cfg.session.backfill_rate);
    if unlimited && pace > 0 {
        out.push(finding(
            Level::Warn,
            "backfill_rate",
            format!("session.backfill_rate = {pace} paces backfills that Rocket.Chat does not limit: set it to 0 (1,000 users then backfill in seconds, not {} minutes)", 1000 / pace.max(1)),
        ));
    } else if !unlimited && (pace == 0 || pace > per_minute) {
        out.push(finding(
            Level::Warn,
            "backfill_rate",
            format!("session.backfill_rate = {pace} is over Rocket.Chat's {per_minute} calls a minute per route: backfills over the REST routes (where the DDP methods are missing, see backfill_methods) will meet 429s; set it to {per_minute}, or grant api-bypass-rate-limit to the role user and set it to 0"),
        ));
    } else {
        out.push(finding(
            Level::Ok,
            "backfill_rate",
            format!("session.backfill_rate = {pace} a minute per route"),
        ));
    }
    // Backfills ask these first: Rocket.Chat limits them per user, not per
    // IP. Asked for what changed from now on (small answers); the made-up
    // room is refused by a server that has `messages/get`.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let since = json!({"$date": now});
    let mut gone = vec![];
    let mut failed = None;
    for (method, params) in [
        ("subscriptions/get", json!([since])),
        ("rooms/get", json!([since])),
        (
            "messages/get",
            json!(["imrelay-doctor", {"lastUpdate": since}]),
        ),
    ] {
        match method_call::call(&rest, &admin, method, params).await {
            Ok(Answer::Gone) => gone.push(method),
            Ok(Answer::Result(_)) => {}
            Err(RcError::Forbidden(_) | RcError::Rejected(_)) if method == "messages/get" => {}
            Err(e) => failed = Some(format!("{method}: {e}")),
        }
    }
    out.push(match (failed, gone.is_empty()) {
        (Some(e), _) => finding(Level::Warn, "backfill_methods", format!("cannot ask the DDP methods backfills use ({e})")),
        (None, true) => finding(Level::Ok, "backfill_methods", "backfills ask subscriptions/get, rooms/get and messages/get over method.call, limited per user rather than per IP"),
        (None, false) if unlimited => finding(Level::Ok, "backfill_methods", format!("no {}: backfills use the REST routes, which Rocket.Chat does not limit here", gone.join(", "))),
        (None, false) => finding(Level::Warn, "backfill_methods", format!("no {} (Rocket.Chat 9 removes them): backfills use the REST routes, {per_minute} calls a minute per route for all users together, so 1,000 users take {} minutes after a restart; grant api-bypass-rate-limit to the role user and set session.backfill_rate = 0", gone.join(", "), 1000 / per_minute.max(1))),
    });
    match setting(&rest, &admin, "Accounts_TwoFactorAuthentication_By_Email_Auto_Opt_In").await {
        Some(Value::Bool(true)) => out.push(finding(
            Level::Warn,
            "email_2fa_auto_opt_in",
            "on: users created with a verified email cannot log in with a password (email 2FA). imrelay creates them with verified:false; for users made elsewhere set Accounts_TwoFactorAuthentication_By_Email_Auto_Opt_In=false",
        )),
        Some(_) => out.push(finding(Level::Ok, "email_2fa_auto_opt_in", "off")),
        None => out.push(finding(Level::Warn, "email_2fa_auto_opt_in", "cannot read the setting")),
    }
    if setting(&rest, &admin, "Accounts_TwoFactorAuthentication_Enabled").await
        == Some(Value::Bool(true))
    {
        out.push(finding(
            Level::Ok,
            "two_factor",
            "on: users.update needs the password fallback, which imrelay sends (x-2fa-code)",
        ));
    }
    let secret = rc.create_token_secret.as_ref().map(|s| s.expose());
    match rest
        .create_token(&admin, rc.admin_password.expose(), &admin.user_id, secret)
        .await
    {
        Ok(token) => {
            let _ = rest.logout(&token).await;
            out.push(finding(
                Level::Ok,
                "create_token",
                "users.createToken works with this configuration",
            ));
        }
        Err(e) => {
            let level = if rc.login_method == LoginMethod::CreateToken {
                Level::Fail
            } else {
                Level::Ok
            };
            out.push(finding(
                level,
                "create_token",
                format!("users.createToken is not available ({e}): set CREATE_TOKENS_FOR_USERS_SECRET on the server (8.x; CREATE_TOKENS_FOR_USERS=true on 7.x) and rocketchat.create_token_secret to the same value to use login_method = \"create_token\""),
            ));
        }
    }
    let _ = rest.logout(&admin).await;
    out
}

/// Prints the findings; the exit code is 1 if anything failed.
pub fn run(cfg: Config) -> i32 {
    actix_rt::System::new().block_on(async move {
        crate::install_crypto_provider();
        let findings = check(&cfg).await;
        for f in &findings {
            println!("{f}");
        }
        i32::from(findings.iter().any(|f| f.level == Level::Fail))
    })
}
