//! API errors: `{"error": {"code": "…", "message": "…"}}` with a fitting status.

use crate::core::relay::RelayError;
use crate::rocketchat::RcError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use std::fmt;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code for programs.
    pub code: &'static str,
    /// Text for people.
    pub message: String,
    /// `Retry-After` seconds.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 503 while imrelay stops: the caller retries against the next instance.
    pub fn shutting_down() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "imrelay is shutting down; retry in a moment",
        )
    }

    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        if let Some(s) = self.retry_after {
            r.insert_header(("Retry-After", s.to_string()));
        }
        r.json(json!({"error": {"code": self.code, "message": self.message}}))
    }
}

impl From<RelayError> for ApiError {
    fn from(e: RelayError) -> Self {
        match e {
            RelayError::Rc(e) => e.into(),
            RelayError::ShuttingDown => ApiError::shutting_down(),
            RelayError::Interrupted => ApiError::new(
                StatusCode::CONFLICT,
                "login_interrupted",
                "the user was logged out or deleted while logging in; log in again",
            ),
            RelayError::UnknownUser(u) => ApiError::new(
                StatusCode::NOT_FOUND,
                "user_not_found",
                format!("no Rocket.Chat user {u}"),
            ),
            RelayError::Engine(e) => e.into(),
        }
    }
}

impl From<crate::core::engine::EngineError> for ApiError {
    fn from(e: crate::core::engine::EngineError) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        )
    }
}

impl From<crate::core::username::UsernameError> for ApiError {
    fn from(e: crate::core::username::UsernameError) -> Self {
        use crate::core::username::UsernameError;
        let code = match e {
            UsernameError::Invalid(_) => "bad_username",
            UsernameError::Reserved(_) => "reserved_username",
        };
        let status = match e {
            UsernameError::Invalid(_) => StatusCode::BAD_REQUEST,
            UsernameError::Reserved(_) => StatusCode::FORBIDDEN,
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<RcError> for ApiError {
    fn from(e: RcError) -> Self {
        let message = e.to_string();
        let (status, code) = match &e {
            RcError::Unauthorized => (StatusCode::BAD_GATEWAY, "rc_unauthorized"),
            RcError::BadCredentials(_) => (StatusCode::BAD_GATEWAY, "rc_login_failed"),
            RcError::Forbidden(_) => (StatusCode::BAD_GATEWAY, "rc_forbidden"),
            RcError::NotFound(_) => (StatusCode::NOT_FOUND, "user_not_found"),
            RcError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            RcError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            RcError::TwoFactor(_) => (StatusCode::BAD_GATEWAY, "rc_two_factor_required"),
            RcError::LoginBlocked(_) => (StatusCode::BAD_GATEWAY, "rc_login_blocked"),
            RcError::Deactivated => (StatusCode::CONFLICT, "user_deactivated"),
            RcError::Rejected(_) => (StatusCode::BAD_GATEWAY, "rc_rejected"),
            RcError::Server(_) => (StatusCode::BAD_GATEWAY, "rc_error"),
            RcError::Unreachable(_) => (StatusCode::SERVICE_UNAVAILABLE, "rc_unreachable"),
        };
        let retry_after = match e {
            RcError::RateLimited { retry_after } => Some(retry_after.as_secs_f64().ceil() as u64),
            _ => None,
        };
        ApiError {
            status,
            code,
            message,
            retry_after,
        }
    }
}

/// Unknown API routes.
pub async fn not_found() -> HttpResponse {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such API route; see README.md",
    )
    .error_response()
}

/// Malformed JSON bodies and oversize payloads, as API errors.
pub fn json_error(
    err: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let e = match &err {
        J::OverflowKnownLength { .. } | J::Overflow { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            err.to_string(),
        ),
        J::ContentType => {
            ApiError::bad_request("bad_content_type", "send Content-Type: application/json")
        }
        _ => ApiError::bad_request("bad_json", err.to_string()),
    };
    e.into()
}
