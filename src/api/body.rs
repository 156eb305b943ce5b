//! Request bodies, read with a size bound and a deadline.
//!
//! Why a deadline: a body trickled one byte at a time (chunked, forever)
//! kept a request, its buffer and a worker's attention open for as long as
//! the caller liked. Why one reader: actix's own extractors answer an
//! oversize body with a plain-text 413, not the API's JSON error.

use super::errors::ApiError;
use crate::config::ServerConfig;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// What bounds a body.
#[derive(Clone, Copy)]
pub struct BodyLimits {
    /// Largest body, in bytes.
    pub max: usize,
    /// Longest it may take to arrive, from the handler's first read.
    pub timeout: Duration,
    /// The config key behind `max`, named in the 413.
    pub key: &'static str,
}

impl BodyLimits {
    /// A backend request's body.
    pub fn backend(cfg: &ServerConfig) -> Self {
        BodyLimits {
            max: cfg.max_body_bytes,
            timeout: cfg.body_timeout,
            key: "server.max_body_bytes",
        }
    }

    /// A body passed through to Rocket.Chat.
    pub fn proxy(cfg: &ServerConfig) -> Self {
        BodyLimits {
            max: cfg.max_proxy_body_bytes,
            timeout: cfg.body_timeout,
            key: "server.max_proxy_body_bytes",
        }
    }
}

/// Reads the whole body within `limits`.
pub async fn read(mut payload: web::Payload, limits: BodyLimits) -> Result<bytes::Bytes, ApiError> {
    let whole = async {
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request("bad_body", e.to_string()))?;
            if body.len() + chunk.len() > limits.max {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!(
                        "request bodies here are limited to {} bytes ({})",
                        limits.max, limits.key
                    ),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(limits.timeout, whole)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {:?} (server.body_timeout)",
                    limits.timeout
                ),
            ))
        })
}

/// Reads a JSON body within `limits`; an empty body is `T::default()` when
/// `empty_ok`, and otherwise JSON must be declared as the content type.
pub async fn json<T: DeserializeOwned + Default>(
    req: &HttpRequest,
    payload: web::Payload,
    limits: BodyLimits,
    empty_ok: bool,
) -> Result<T, ApiError> {
    let body = read(payload, limits).await?;
    if body.is_empty() && empty_ok {
        return Ok(T::default());
    }
    let is_json = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json && !empty_ok {
        return Err(ApiError::bad_request(
            "bad_content_type",
            "send Content-Type: application/json",
        ));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("bad_json", e.to_string()))
}
