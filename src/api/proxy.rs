//! Chat actions: `ANY /api/v1/users/{username}/rc/{path}` runs Rocket.Chat
//! REST `/api/v1/{path}` as that user (never as the admin), and
//! `ANY /api/v1/admin/rc/{path}` as the admin agent. Method, query and body
//! pass through (uploads too, capped); Rocket.Chat's status and body come
//! back unchanged. A 401 gets one re-login and retry.

use super::auth::{authorize, ApiUser};
use super::body::BodyLimits;
use super::errors::ApiError;
use crate::core::relay::Relay;
use crate::rocketchat::rest::{retry_after, RawResponse, RestClient};
use crate::rocketchat::Credentials;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

/// Hop-by-hop headers (RFC 9110 §7.6.1) and framing: never passed either way.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// The only request headers passed to Rocket.Chat: what describes the body
/// and the wanted answer, and Rocket.Chat's two-factor headers. Everything
/// else stays here: the backend's API key and cookies, hop-by-hop headers,
/// `Host`, `Expect` (the body is read whole first), and anything that names
/// the client's address (`X-Forwarded-*`, `X-Real-IP`, `Forwarded`, …), so
/// a caller cannot choose the IP Rocket.Chat's rate limiter and login
/// blocking count.
const PASS_REQUEST: &[&str] = &[
    "content-type",
    "content-disposition",
    "accept",
    "accept-language",
    "user-agent",
    "x-requested-with",
    "cache-control",
    "pragma",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "range",
    "x-2fa-code",
    "x-2fa-method",
];

/// Response headers not passed back, on top of [`HOP_BY_HOP`].
const DROP_RESPONSE: &[&str] = &["set-cookie"];

fn passed(name: &str, drop: &[&str]) -> bool {
    !HOP_BY_HOP.contains(&name) && !drop.contains(&name)
}

fn passed_upstream(name: &str) -> bool {
    PASS_REQUEST.contains(&name)
}

/// What a path segment keeps unencoded upstream: RFC 3986's unreserved
/// characters and the sub-delimiters Rocket.Chat routes use.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'@');

/// The Rocket.Chat route for the `{path}` of a proxy call, rebuilt from
/// validated segments: a hop that normalises paths (nginx in front of
/// Rocket.Chat) must not resolve it outside `/api/v1/`. `raw` is the route's
/// match, where `%2F` is still encoded.
pub fn upstream_path(raw: &str) -> Result<String, ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request(
            "bad_path",
            format!("the Rocket.Chat path {raw:?} {why}; name a route under /api/v1/, e.g. chat.postMessage"),
        )
    };
    let mut out = String::from("/api/v1");
    for segment in raw.split('/') {
        let decoded = percent_encoding::percent_decode_str(segment).collect::<Vec<u8>>();
        match decoded.as_slice() {
            b"" => return Err(bad("has an empty segment")),
            b"." | b".." => return Err(bad("has a dot segment")),
            d if d.iter().any(|b| matches!(b, b'/' | b'\\' | b'?' | b'#')) => {
                return Err(bad("has an encoded '/', '\\', '?' or '#'"))
            }
            d if d.iter().any(|b| b.is_ascii_control()) => {
                return Err(bad("has a control character"))
            }
            d => {
                out.push('/');
                out.extend(percent_encoding::percent_encode(d, SEGMENT));
            }
        }
    }
    Ok(out)
}

async fn forward(
    rest: &RestClient,
    req: &HttpRequest,
    path: &str,
    creds: &Credentials,
    body: &bytes::Bytes,
) -> Result<RawResponse, ApiError> {
    let mut target = path.to_string();
    if !req.query_string().is_empty() {
        target = format!("{target}?{}", req.query_string());
    }
    let headers: Vec<(&str, String)> = req
        .headers()
        .iter()
        .filter(|(k, _)| passed_upstream(k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?.to_string())))
        .collect();
    let body = (!body.is_empty()).then(|| body.clone());
    Ok(rest
        .raw(req.method().clone(), &target, Some(creds), &headers, body)
        .await?)
}

fn answer(r: RawResponse, who: &str, path: &str) -> HttpResponse {
    let mut out = HttpResponse::build(r.status);
    for (k, v) in r
        .headers
        .iter()
        .filter(|(k, _)| passed(k.as_str(), DROP_RESPONSE))
    {
        out.append_header((k.clone(), v.clone()));
    }
    if r.status == StatusCode::TOO_MANY_REQUESTS {
        let wait = retry_after(&r.headers);
        log::warn!(
            "{who}: Rocket.Chat rate-limited {path}; passing the 429 on (retry in {}s). Fix: grant the users' role the permission api-bypass-rate-limit, or raise API_Enable_Rate_Limiter_Limit_Calls_Default",
            wait.as_secs()
        );
        out.insert_header(("Retry-After", wait.as_secs().max(1).to_string()));
    }
    out.body(r.body)
}

/// The validated upstream path of a proxy route's `{path}`.
pub fn route_path(req: &HttpRequest) -> Result<String, ApiError> {
    upstream_path(req.match_info().get("path").unwrap_or_default())
}

/// `ANY /api/v1/users/{username}/rc/{path}`.
pub async fn user_call(
    ApiUser(username): ApiUser,
    req: HttpRequest,
    payload: web::Payload,
    relay: web::Data<Relay>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    let path = route_path(&req)?;
    as_user(&req, &username, &path, payload, &relay, &rest).await
}

/// Runs the call as `username` (already authorized by the caller) on
/// `path`, a route from [`upstream_path`].
pub async fn as_user(
    req: &HttpRequest,
    username: &str,
    path: &str,
    payload: web::Payload,
    relay: &Relay,
    rest: &RestClient,
) -> Result<HttpResponse, ApiError> {
    let body = super::body::read(payload, BodyLimits::proxy(&relay.cfg.server)).await?;
    let entry = relay.login(rest, username, None, false).await?;
    let mut resp = forward(rest, req, path, &entry.credentials(), &body).await?;
    if resp.status == StatusCode::UNAUTHORIZED {
        log::info!("user={username} Rocket.Chat rejected the token on {path}; logging in again and retrying once");
        let fresh = relay.login(rest, username, None, true).await?;
        resp = forward(rest, req, path, &fresh.credentials(), &body).await?;
    }
    Ok(answer(resp, &format!("user={username}"), path))
}

/// `ANY /api/v1/admin/rc/{path}`: the same as the admin agent, explicitly.
pub async fn admin_call(
    req: HttpRequest,
    payload: web::Payload,
    relay: web::Data<Relay>,
    rest: web::Data<RestClient>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &relay.cfg)?;
    let path = route_path(&req)?;
    let body = super::body::read(payload, BodyLimits::proxy(&relay.cfg.server)).await?;
    let creds = relay.admin_credentials().await?;
    let mut resp = forward(&rest, &req, &path, &creds, &body).await?;
    if resp.status == StatusCode::UNAUTHORIZED {
        let fresh = relay.admin_relogin(creds).await?;
        resp = forward(&rest, &req, &path, &fresh, &body).await?;
    }
    Ok(answer(resp, "admin", &path))
}

#[cfg(test)]
mod fuzz {
    use super::upstream_path;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the caller puts in the path, what goes upstream stays
        /// under /api/v1/ through any hop that decodes and normalises it.
        #[test]
        fn upstream_paths_never_leave_api_v1(raw in "([a-z.]{0,6}|%2[fFeE]|%5[cC]|%3[fF]|%23|%00|%25|/|\\.\\.?|\\PC){0,14}") {
            if let Ok(path) = upstream_path(&raw) {
                prop_assert!(path.starts_with("/api/v1/"));
                let decoded = percent_encoding::percent_decode_str(&path).decode_utf8_lossy().into_owned();
                for segment in decoded.trim_start_matches("/api/v1/").split('/') {
                    prop_assert!(!segment.is_empty() && segment != "." && segment != "..", "{path}");
                    prop_assert!(!segment.contains(['?', '#', '\\', '\0']), "{path}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_framing_stay_on_our_side() {
        for h in [
            "authorization",
            "cookie",
            "x-auth-token",
            "x-user-id",
            "transfer-encoding",
            "host",
            "expect",
            "x-forwarded-for",
            "x-real-ip",
            "forwarded",
            "x-forwarded-host",
            "x-cluster-client-ip",
            "x-original-url",
        ] {
            assert!(!passed_upstream(h), "{h} must not reach Rocket.Chat");
        }
        for h in ["set-cookie", "connection", "content-length"] {
            assert!(!passed(h, DROP_RESPONSE), "{h} must not reach the backend");
        }
        assert!(passed_upstream("content-type") && passed_upstream("x-2fa-code"));
        assert!(passed("x-ratelimit-reset", DROP_RESPONSE));
    }

    #[test]
    fn upstream_paths_stay_under_api_v1() {
        for (raw, want) in [
            ("chat.postMessage", "/api/v1/chat.postMessage"),
            ("rooms.info", "/api/v1/rooms.info"),
            ("emoji-custom/a b+c", "/api/v1/emoji-custom/a%20b%2Bc"),
            ("users.info%2Bx", "/api/v1/users.info%2Bx"),
            ("x/100%25", "/api/v1/x/100%25"),
        ] {
            assert_eq!(upstream_path(raw).unwrap().as_str(), want, "{raw}");
        }
        for raw in [
            "..%2f..%2finfo",
            "..%2F..%2Finfo",
            "%2F%2Fevil.example/x",
            "me%3Fx=1&y=2",
            "me%23frag",
            "a/../info",
            "a/./b",
            "%2e%2e/info",
            "a%5c..%5cinfo",
            "a//b",
            "a/",
            "x%00y",
            "x%0d%0aHost: evil",
        ] {
            let e = upstream_path(raw).unwrap_err();
            assert_eq!((e.status.as_u16(), e.code), (400, "bad_path"), "{raw}");
        }
    }
}
