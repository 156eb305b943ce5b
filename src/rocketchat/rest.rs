//! The Rocket.Chat REST client (awc). `awc::Client` is `!Send`: create one
//! per worker thread or actor, never share it.

use super::{Credentials, RcError};
use awc::http::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A REST response, unparsed (for the pass-through proxy).
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub body: bytes::Bytes,
}

/// A REST client for one Rocket.Chat server (a clone shares its pool).
#[derive(Clone)]
pub struct RestClient {
    http: awc::Client,
    base: String,
    max_body: usize,
}

/// What a query value keeps unencoded: RFC 3986's unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Largest Rocket.Chat REST response imrelay reads.
const MAX_RESPONSE: usize = 64 << 20;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The wait a 429 asks for: until `X-RateLimit-Reset` (epoch ms), else a minute.
pub fn retry_after(headers: &awc::http::header::HeaderMap) -> Duration {
    headers
        .get("x-ratelimit-reset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .map(|reset| Duration::from_millis((reset - now_ms()).clamp(0, 3_600_000) as u64))
        .unwrap_or(Duration::from_secs(60))
}

/// Turns a failed answer into an [`RcError`].
pub fn classify(
    status: StatusCode,
    headers: &awc::http::header::HeaderMap,
    body: &Value,
) -> RcError {
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let error_type = body
        .get("errorType")
        .and_then(Value::as_str)
        .or_else(|| body.get("error").and_then(Value::as_str))
        .unwrap_or_default();
    let message = {
        let m = text("message");
        if m.is_empty() {
            text("error")
        } else {
            m
        }
    };
    if let Some(e) = super::classify_named(error_type, &message, body.get("details")) {
        return e;
    }
    match status.as_u16() {
        401 if body.get("status").and_then(Value::as_str) == Some("error")
            && body.get("message").is_some()
            && message != "You must be logged in to do this." =>
        {
            RcError::BadCredentials(message)
        }
        401 => RcError::Unauthorized,
        403 => RcError::Forbidden(message),
        404 => RcError::NotFound(message),
        429 => RcError::RateLimited {
            retry_after: retry_after(headers),
        },
        400 if error_type == "error-field-unavailable" => RcError::Conflict(message),
        400 => RcError::Rejected(if message.is_empty() {
            body.to_string()
        } else {
            message
        }),
        s if s >= 500 => RcError::Server(format!(
            "HTTP {s}: {}",
            if message.is_empty() {
                body.to_string()
            } else {
                message
            }
        )),
        s => RcError::Server(format!("unexpected HTTP {s}")),
    }
}

impl RestClient {
    /// A client for `base` (`http(s)://host[:port]`).
    pub fn new(base: &str, timeout: Duration) -> Self {
        let http = awc::Client::builder()
            // A wss/https server that negotiates h2 breaks websocket upgrades.
            .max_http_version(awc::http::Version::HTTP_11)
            .timeout(timeout)
            .finish();
        RestClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            max_body: MAX_RESPONSE,
        }
    }

    /// Any call, unparsed: `path_and_query` starts with `/api/`.
    pub async fn raw(
        &self,
        method: Method,
        path_and_query: &str,
        creds: Option<&Credentials>,
        headers: &[(&str, String)],
        body: Option<bytes::Bytes>,
    ) -> Result<RawResponse, RcError> {
        let mut req = self
            .http
            .request(method, format!("{}{path_and_query}", self.base));
        if let Some(c) = creds {
            req = req
                .insert_header(("X-User-Id", c.user_id.as_str()))
                .insert_header(("X-Auth-Token", c.token.as_str()));
        }
        for (k, v) in headers {
            req = req.insert_header((*k, v.as_str()));
        }
        let sent = match body {
            Some(b) => req.send_body(b).await,
            None => req.send().await,
        };
        let mut resp = sent.map_err(|e| RcError::Unreachable(e.to_string()))?;
        let body = resp
            .body()
            .limit(self.max_body)
            .await
            .map_err(|e| RcError::Unreachable(format!("reading the response: {e}")))?;
        Ok(RawResponse {
            status: resp.status(),
            headers: resp.headers().clone(),
            body,
        })
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        creds: Option<&Credentials>,
        headers: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, RcError> {
        let mut h: Vec<(&str, String)> = headers.to_vec();
        let bytes = body.map(|b| {
            h.push(("content-type", "application/json".into()));
            bytes::Bytes::from(b.to_string())
        });
        let r = self.raw(method, path, creds, &h, bytes).await?;
        let v: Value = if r.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&r.body).map_err(|_| {
                RcError::Server(format!(
                    "HTTP {}: not JSON ({} bytes); is rocketchat.url right?",
                    r.status.as_u16(),
                    r.body.len()
                ))
            })?
        };
        if r.status.is_success() {
            Ok(v)
        } else {
            Err(classify(r.status, &r.headers, &v))
        }
    }

    fn admin_headers(admin_password: &str) -> Vec<(&'static str, String)> {
        // The two-factor password fallback: harmless where 2FA is not demanded.
        vec![
            ("x-2fa-code", super::sha256_hex(admin_password)),
            ("x-2fa-method", "password".into()),
        ]
    }

    /// An authenticated GET whose answer is JSON (operator reads: settings, permissions).
    pub async fn get(&self, path: &str, creds: &Credentials) -> Result<Value, RcError> {
        self.json(Method::GET, path, Some(creds), &[], None).await
    }

    /// `GET /api/info`.
    pub async fn server_info(&self) -> Result<Value, RcError> {
        self.json(Method::GET, "/api/info", None, &[], None).await
    }

    /// `POST /api/v1/login` with a password.
    pub async fn login(&self, username: &str, password: &str) -> Result<Credentials, RcError> {
        let v = self
            .json(
                Method::POST,
                "/api/v1/login",
                None,
                &[],
                Some(&json!({"username": username, "password": password})),
            )
            .await?;
        creds_from(&v["data"])
            .ok_or_else(|| RcError::Server("login answer without data.userId/authToken".into()))
    }

    /// `GET /api/v1/me`: the token's own user.
    pub async fn me(&self, creds: &Credentials) -> Result<Value, RcError> {
        self.json(Method::GET, "/api/v1/me", Some(creds), &[], None)
            .await
    }

    /// `POST /api/v1/logout`: removes that token only.
    pub async fn logout(&self, creds: &Credentials) -> Result<(), RcError> {
        match self
            .json(
                Method::POST,
                "/api/v1/logout",
                Some(creds),
                &[],
                Some(&json!({})),
            )
            .await
        {
            Ok(_) | Err(RcError::Unauthorized) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/v1/users.info?username=`; `None` when there is no such user.
    pub async fn user_info(
        &self,
        admin: &Credentials,
        admin_password: &str,
        username: &str,
    ) -> Result<Option<Value>, RcError> {
        let username = percent_encoding::utf8_percent_encode(username, QUERY_VALUE);
        let path = format!("/api/v1/users.info?username={username}");
        match self
            .json(
                Method::GET,
                &path,
                Some(admin),
                &Self::admin_headers(admin_password),
                None,
            )
            .await
        {
            Ok(v) => Ok(Some(v["user"].clone())),
            Err(RcError::Rejected(m)) | Err(RcError::NotFound(m))
                if m.to_lowercase().contains("not found")
                    || m.contains("does not match any users") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `POST /api/v1/users.create`.
    pub async fn create_user(
        &self,
        admin: &Credentials,
        admin_password: &str,
        body: &Value,
    ) -> Result<Value, RcError> {
        let v = self
            .json(
                Method::POST,
                "/api/v1/users.create",
                Some(admin),
                &Self::admin_headers(admin_password),
                Some(body),
            )
            .await?;
        Ok(v["user"].clone())
    }

    /// `POST /api/v1/users.update` (needs the 2FA password fallback).
    pub async fn update_user(
        &self,
        admin: &Credentials,
        admin_password: &str,
        user_id: &str,
        data: &Value,
    ) -> Result<Value, RcError> {
        let body = json!({"userId": user_id, "data": data});
        let v = self
            .json(
                Method::POST,
                "/api/v1/users.update",
                Some(admin),
                &Self::admin_headers(admin_password),
                Some(&body),
            )
            .await?;
        Ok(v["user"].clone())
    }

    /// `POST /api/v1/users.delete`.
    pub async fn delete_user(
        &self,
        admin: &Credentials,
        admin_password: &str,
        user_id: &str,
    ) -> Result<(), RcError> {
        self.json(
            Method::POST,
            "/api/v1/users.delete",
            Some(admin),
            &Self::admin_headers(admin_password),
            Some(&json!({"userId": user_id})),
        )
        .await
        .map(|_| ())
    }

    /// `POST /api/v1/users.createToken` (8.x body with the secret; 7.x ignores it
    /// only when absent, so send `{userId}` alone without a secret).
    pub async fn create_token(
        &self,
        admin: &Credentials,
        admin_password: &str,
        user_id: &str,
        secret: Option<&str>,
    ) -> Result<Credentials, RcError> {
        let body = match secret {
            Some(s) => json!({"userId": user_id, "secret": s}),
            None => json!({"userId": user_id}),
        };
        let v = self
            .json(
                Method::POST,
                "/api/v1/users.createToken",
                Some(admin),
                &Self::admin_headers(admin_password),
                Some(&body),
            )
            .await?;
        creds_from(&v["data"])
            .ok_or_else(|| RcError::Server("createToken answer without data".into()))
    }
}

fn creds_from(data: &Value) -> Option<Credentials> {
    Some(Credentials {
        user_id: data.get("userId")?.as_str()?.to_string(),
        token: data.get("authToken")?.as_str()?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use awc::http::header::HeaderMap;

    #[test]
    fn classifies_rocket_chat_answers() {
        let h = HeaderMap::new();
        let c = |s: u16, b: Value| classify(StatusCode::from_u16(s).unwrap(), &h, &b);
        assert_eq!(
            c(
                401,
                json!({"success": false, "error": "You must be logged in to do this.", "status": "error", "message": "You must be logged in to do this."})
            ),
            RcError::Unauthorized
        );
        assert_eq!(
            c(
                401,
                json!({"success": false, "error": 403, "status": "error", "message": "Incorrect password"})
            ),
            RcError::BadCredentials("Incorrect password".into())
        );
        assert!(
            matches!(c(401, json!({"success": false, "error": "totp-required", "status": "error", "details": {"method": "email"}, "message": "TOTP Required"})), RcError::TwoFactor(m) if m.contains("verified:false"))
        );
        assert!(matches!(
            c(
                400,
                json!({"success": false, "errorType": "totp-required", "details": {"method": "password"}})
            ),
            RcError::TwoFactor(_)
        ));
        assert!(matches!(
            c(
                401,
                json!({"success": false, "error": "error-login-blocked-for-user", "status": "error", "message": "Login has been temporarily blocked For User"})
            ),
            RcError::LoginBlocked(_)
        ));
        assert!(matches!(
            c(
                400,
                json!({"success": false, "error": "x is already in use :( [error-field-unavailable]", "errorType": "error-field-unavailable"})
            ),
            RcError::Conflict(_)
        ));
        assert!(matches!(
            c(
                503,
                json!({"success": false, "error": "Service Unavailable"})
            ),
            RcError::Server(_)
        ));
        let mut h = HeaderMap::new();
        h.insert(
            awc::http::header::HeaderName::from_static("x-ratelimit-reset"),
            (now_ms() + 5_000).to_string().parse().unwrap(),
        );
        match classify(StatusCode::TOO_MANY_REQUESTS, &h, &json!({})) {
            RcError::RateLimited { retry_after } => assert!(
                retry_after <= Duration::from_secs(5) && retry_after > Duration::from_secs(3)
            ),
            other => panic!("{other:?}"),
        }
    }
}
