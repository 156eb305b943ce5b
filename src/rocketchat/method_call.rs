//! DDP methods over REST (`POST /api/v1/method.call/:method`), as
//! Rocket.Chat's web client calls them (`docs/protocol/rocketchat.md`
//! §9.7). Rocket.Chat's REST limiter leaves this route alone and applies
//! the DDP limiter instead, per user and token: every user gets a budget
//! of their own rather than sharing 10 calls a minute per route with all
//! of imrelay's users behind one IP.

use super::rest::RestClient;
use super::{Credentials, RcError};
use awc::http::Method;
use serde_json::{json, Value};

/// A method's answer.
pub(crate) enum Answer {
    /// Its result (EJSON, dates as `{"$date": ms}`).
    Result(Value),
    /// This server has no such method (or no `method.call`).
    Gone,
}

/// Calls `method` with `params` as the user of `creds`.
pub(crate) async fn call(
    rest: &RestClient,
    creds: &Credentials,
    method: &str,
    params: Value,
) -> Result<Answer, RcError> {
    let body = json!({"message": super::ddp::method("1", method, params)});
    let r = rest
        .raw(
            Method::POST,
            &format!("/api/v1/method.call/{}", method.replace('/', ":")),
            Some(creds),
            &[("content-type", "application/json".into())],
            Some(bytes::Bytes::from(body.to_string())),
        )
        .await?;
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let status = r.status.as_u16();
    // Before Rocket.Chat's PR #38007 a method's error came with 200, after
    // it with 400: either way it is inside `message`.
    let Some(message) = v
        .get("message")
        .and_then(Value::as_str)
        .filter(|_| status == 200 || status == 400)
    else {
        // A server without `method.call` answers a 404 in JSON (Rocket.Chat's
        // API writes every answer so); a proxy's error page is not that.
        return match status {
            404 if v.is_object() => Ok(Answer::Gone),
            _ => Err(super::rest::classify(r.status, &r.headers, &v)),
        };
    };
    let msg: Value = serde_json::from_str(message)
        .map_err(|_| RcError::Server(format!("method.call {method}: the answer is not EJSON")))?;
    match msg.get("error") {
        None => Ok(Answer::Result(
            msg.get("result").cloned().unwrap_or(Value::Null),
        )),
        Some(e) => method_error(e),
    }
}

fn method_error(e: &Value) -> Result<Answer, RcError> {
    let (code, reason) = super::ddp::error_parts(e);
    if let Some(named) = super::classify_named(&code, &reason, e.get("details")) {
        return Err(named);
    }
    Err(match code.as_str() {
        // Meteor's answer for a method it does not have.
        "404" if reason.starts_with("Method '") && reason.ends_with("' not found") => {
            return Ok(Answer::Gone)
        }
        "too-many-requests" => super::ddp::rate_limited(e),
        "error-unauthorized" | "error-not-allowed" | "403" => RcError::Forbidden(reason),
        _ => RcError::Rejected(format!("{code}: {reason}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn method_errors_are_classified() {
        let gone = json!({"error": 404, "reason": "Method 'rooms/get' not found"});
        assert!(matches!(method_error(&gone), Ok(Answer::Gone)));
        let limited = json!({"error": "too-many-requests", "details": {"timeToReset": 4200}});
        assert!(matches!(
            method_error(&limited),
            Err(RcError::RateLimited { retry_after }) if retry_after == Duration::from_millis(4200)
        ));
        let bad = json!({"error": "too-many-requests", "details": {"timeToReset": 9_000_000_000_000_000_u64}});
        assert!(
            matches!(
                method_error(&bad),
                Err(RcError::RateLimited { retry_after }) if retry_after == Duration::from_secs(60)
            ),
            "a wait out of reason is bounded"
        );
        let other_404 = json!({"error": 404, "reason": "Room not found"});
        assert!(matches!(
            method_error(&other_404),
            Err(RcError::Rejected(_))
        ));
        let other = json!({"error": "error-invalid-room", "reason": "Invalid room"});
        assert!(
            matches!(method_error(&other), Err(RcError::Rejected(m)) if m.contains("Invalid room"))
        );
    }
}
