//! Everything Rocket.Chat-specific lives here, behind neutral types
//! ([`Credentials`], [`Event`], [`RcError`]), so that another chat server
//! could be added as a sibling module.

pub mod ddp;
pub mod rest;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use std::time::Duration;

/// A user's (or the admin's) Rocket.Chat REST credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `X-User-Id`.
    pub user_id: String,
    /// `X-Auth-Token`.
    pub token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ user_id: {}, token: *** }}", self.user_id)
    }
}

/// Lowercase hex SHA-256: the password digest DDP logins send, and the
/// `x-2fa-code` password fallback.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// An event for a user's clients: a client event name and its data.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// `getRoomMessageNotification`, …
    pub name: &'static str,
    /// The payload, Rocket.Chat objects as they came (EJSON dates).
    pub data: Value,
}

/// What a Rocket.Chat call can go wrong with, in terms a backend can act on.
#[derive(Clone, Debug, PartialEq)]
pub enum RcError {
    /// The token is not (or no longer) valid.
    Unauthorized,
    /// Rocket.Chat rejected the login: wrong password or unknown user.
    BadCredentials(String),
    /// The account lacks a permission.
    Forbidden(String),
    /// No such user or resource.
    NotFound(String),
    /// Username or email already taken.
    Conflict(String),
    /// Rate-limited: retry after this long.
    RateLimited {
        /// From `X-RateLimit-Reset` (epoch ms) or the DDP `timeToReset`.
        retry_after: Duration,
    },
    /// Two-factor authentication blocks the call; the text names the setting to change.
    TwoFactor(String),
    /// Rocket.Chat blocked logins after failures.
    LoginBlocked(String),
    /// The account is deactivated.
    Deactivated,
    /// Rocket.Chat said 400 for another reason.
    Rejected(String),
    /// Rocket.Chat answered 5xx or something unparseable.
    Server(String),
    /// Rocket.Chat could not be reached (refused, DNS, TLS, timeout).
    Unreachable(String),
}

impl fmt::Display for RcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RcError::Unauthorized => f.write_str("Rocket.Chat rejected the token (401)"),
            RcError::BadCredentials(m) => write!(f, "Rocket.Chat rejected the login: {m}"),
            RcError::Forbidden(m) => write!(f, "Rocket.Chat refused: {m}"),
            RcError::NotFound(m) => write!(f, "not found in Rocket.Chat: {m}"),
            RcError::Conflict(m) => write!(f, "conflict in Rocket.Chat: {m}"),
            RcError::RateLimited { retry_after } => write!(
                f,
                "Rocket.Chat rate-limited the call; retry in {}s (grant the users' role the permission api-bypass-rate-limit, or raise API_Enable_Rate_Limiter_Limit_Calls_Default)",
                retry_after.as_secs_f64().ceil()
            ),
            RcError::TwoFactor(m) => write!(f, "Rocket.Chat demands two-factor authentication: {m}"),
            RcError::LoginBlocked(m) => write!(
                f,
                "Rocket.Chat blocked logins after failed attempts ({m}); check the password policy, then wait or adjust Block_Multiple_Failed_Logins_*"
            ),
            RcError::Deactivated => f.write_str("the Rocket.Chat account is deactivated"),
            RcError::Rejected(m) => write!(f, "Rocket.Chat rejected the request: {m}"),
            RcError::Server(m) => write!(f, "Rocket.Chat failed: {m}"),
            RcError::Unreachable(m) => write!(f, "Rocket.Chat is unreachable: {m}"),
        }
    }
}

/// The advice for a `totp-required` answer, by 2FA method.
pub fn two_factor_advice(method: &str) -> String {
    match method {
        "email" => "the user has email two-factor authentication (a verified email with Accounts_TwoFactorAuthentication_By_Email_Auto_Opt_In on); create users with verified:false, or set Accounts_TwoFactorAuthentication_By_Email_Auto_Opt_In=false before creating them".into(),
        "password" => "the admin call needs the x-2fa-code password fallback; check rocketchat.admin_password".into(),
        other => format!("method {other}; disable two-factor authentication for this account"),
    }
}

/// What a DDP stream event means for imrelay.
#[derive(Debug, PartialEq)]
pub enum Mapped {
    /// Relay to the user's clients.
    Event(Event),
    /// Rocket.Chat logged the user out (`force_logout`).
    Revoked,
    /// Nothing to relay.
    Ignore,
}

fn method_word(w: &Value) -> &'static str {
    match w.as_str() {
        Some("inserted") => "insert",
        Some("removed") => "remove",
        _ => "update",
    }
}

/// Maps a `changed` stream event to a client event (DESIGN §4).
pub fn map_event(collection: &str, event_name: &str, args: &Value) -> Mapped {
    let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
    match collection {
        "stream-room-messages" if event_name == "__my_messages__" => {
            // Rocket.Chat also streams public rooms the user merely can read.
            if args
                .get(1)
                .and_then(|m| m.get("roomParticipant"))
                .and_then(Value::as_bool)
                == Some(true)
            {
                Mapped::Event(Event {
                    name: "getRoomMessageNotification",
                    data: arg(0),
                })
            } else {
                Mapped::Ignore
            }
        }
        "stream-notify-user" => match event_name.rsplit_once('/').map(|(_, e)| e) {
            Some("subscriptions-changed") => Mapped::Event(Event {
                name: "getRoomSubscriptionChangedNotification",
                data: json!({"method": method_word(&arg(0)), "msg": arg(1)}),
            }),
            Some("rooms-changed") => Mapped::Event(Event {
                name: "getRoomChangedNotification",
                data: json!({"method": method_word(&arg(0)), "room": arg(1)}),
            }),
            Some("notification") => Mapped::Event(Event {
                name: "getDesktopNotification",
                data: arg(0),
            }),
            Some("message") => Mapped::Event(Event {
                name: "getEphemeralMessage",
                data: arg(0),
            }),
            Some("force_logout") => Mapped::Revoked,
            _ => Mapped::Ignore,
        },
        _ => Mapped::Ignore,
    }
}

/// The `stream-notify-user` events a session subscribes to.
pub const USER_EVENTS: [&str; 5] = [
    "subscriptions-changed",
    "rooms-changed",
    "notification",
    "message",
    "force_logout",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_events_as_the_design_says() {
        let msg = json!({"_id": "m", "rid": "r", "msg": "hi"});
        assert_eq!(
            map_event(
                "stream-room-messages",
                "__my_messages__",
                &json!([msg, {"roomParticipant": true, "roomType": "d"}])
            ),
            Mapped::Event(Event {
                name: "getRoomMessageNotification",
                data: msg.clone()
            })
        );
        assert_eq!(
            map_event(
                "stream-room-messages",
                "__my_messages__",
                &json!([msg, {"roomParticipant": false}])
            ),
            Mapped::Ignore
        );
        assert_eq!(
            map_event(
                "stream-notify-user",
                "u1/subscriptions-changed",
                &json!(["inserted", {"_id": "s"}])
            ),
            Mapped::Event(Event {
                name: "getRoomSubscriptionChangedNotification",
                data: json!({"method": "insert", "msg": {"_id": "s"}})
            })
        );
        assert_eq!(
            map_event(
                "stream-notify-user",
                "u1/rooms-changed",
                &json!(["removed", {"_id": "r"}])
            ),
            Mapped::Event(Event {
                name: "getRoomChangedNotification",
                data: json!({"method": "remove", "room": {"_id": "r"}})
            })
        );
        assert_eq!(
            map_event("stream-notify-user", "u1/force_logout", &json!([])),
            Mapped::Revoked
        );
        assert_eq!(
            map_event("stream-notify-user", "u1/userData", &json!([{}])),
            Mapped::Ignore
        );
    }
}
