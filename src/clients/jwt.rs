//! JWTs signed by the backend (HS256 with a shared secret) as client
//! credentials, so an app can hand its existing access token to the
//! browser. Verified by `jsonwebtoken`: HS256 only (never `none`), `exp`
//! required, `nbf`, issuer and audience checked, `client.jwt.leeway` for
//! clock skew.

use crate::config::JwtConfig;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

/// Why a JWT was refused, in words a front-end developer can act on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("not a well-formed JWT")]
    Malformed,
    /// Signed with another algorithm than HS256 (or `none`).
    #[error("only HS256 JWTs are accepted")]
    Algorithm,
    /// The signature does not verify with the configured secret.
    #[error("JWT signature does not match (client.jwt.secret)")]
    Signature,
    /// `exp` is in the past.
    #[error("the JWT has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the JWT is not valid yet (nbf)")]
    NotYetValid,
    /// `iss` is not `client.jwt.issuer`.
    #[error("the JWT's issuer is not client.jwt.issuer")]
    Issuer,
    /// `aud` does not name `client.jwt.audience`.
    #[error("the JWT's audience is not client.jwt.audience")]
    Audience,
    /// A required claim is missing or of the wrong type.
    #[error("the JWT has no {0} claim{hint}", hint = if .0 == "exp" { "" } else { " (client.jwt.username_claim)" })]
    MissingClaim(String),
}

/// Whether a token has a JWT's shape (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

/// Verifies `token`; returns the username claim as written.
pub fn verify(token: &str, cfg: &JwtConfig) -> Result<String, JwtError> {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = cfg.leeway.as_secs();
    v.validate_nbf = true;
    v.validate_aud = cfg.audience.is_some();
    if let Some(aud) = &cfg.audience {
        v.set_audience(&[aud]);
    }
    if let Some(iss) = &cfg.issuer {
        v.set_issuer(&[iss]);
    }
    // Config secrets are never empty, the one case the key refuses.
    let key = DecodingKey::from_secret(cfg.secret.expose().as_bytes())
        .map_err(|_| JwtError::Signature)?;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => JwtError::Signature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => JwtError::Algorithm,
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidIssuer => JwtError::Issuer,
            ErrorKind::InvalidAudience => JwtError::Audience,
            ErrorKind::MissingRequiredClaim(c) => JwtError::MissingClaim(c.clone()),
            ErrorKind::InvalidClaimFormat(c) => JwtError::MissingClaim(c.clone()),
            _ => JwtError::Malformed,
        })?
        .claims;
    claims
        .get(&cfg.username_claim)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| JwtError::MissingClaim(cfg.username_claim.clone()))
}

/// Signs claims with HS256 (tests, and backends written in Rust).
pub fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).expect("a non-empty HS256 secret"),
    )
    .expect("HS256 signs any JSON claims")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    use serde_json::json;
    use std::time::Duration;

    pub(super) fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn cfg() -> JwtConfig {
        JwtConfig {
            secret: Secret::new("k"),
            issuer: Some("app".into()),
            audience: Some("chat".into()),
            username_claim: "sub".into(),
            leeway: Duration::ZERO,
        }
    }

    #[test]
    fn valid_expired_forged_and_misaddressed() {
        let later = now() + 300;
        let table: [(Value, &str, Result<&str, JwtError>); 7] = [
            (
                json!({"sub": "alice", "exp": later, "iss": "app", "aud": ["x", "chat"]}),
                "k",
                Ok("alice"),
            ),
            (
                json!({"sub": "alice", "exp": now() - 10, "iss": "app", "aud": "chat"}),
                "k",
                Err(JwtError::Expired),
            ),
            (
                json!({"sub": "alice", "exp": later, "nbf": later, "iss": "app", "aud": "chat"}),
                "k",
                Err(JwtError::NotYetValid),
            ),
            (
                json!({"sub": "alice", "exp": later, "iss": "app", "aud": "chat"}),
                "other",
                Err(JwtError::Signature),
            ),
            (
                json!({"sub": "alice", "exp": later, "iss": "app", "aud": "else"}),
                "k",
                Err(JwtError::Audience),
            ),
            (
                json!({"sub": "alice", "exp": later, "iss": "else", "aud": "chat"}),
                "k",
                Err(JwtError::Issuer),
            ),
            (
                json!({"sub": "alice", "iss": "app", "aud": "chat"}),
                "k",
                Err(JwtError::MissingClaim("exp".into())),
            ),
        ];
        for (claims, secret, want) in table {
            let token = sign(&claims, secret);
            assert!(looks_like_jwt(&token));
            assert_eq!(verify(&token, &cfg()), want.map(str::to_string), "{claims}");
        }
    }

    #[test]
    fn the_username_claim_is_configurable_and_leeway_allows_skew() {
        let abp = sign(
            &json!({"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": "bob", "exp": now() + 300, "iss": "app", "aud": "chat"}),
            "k",
        );
        assert_eq!(
            verify(&abp, &cfg()),
            Err(JwtError::MissingClaim("sub".into()))
        );
        let c = JwtConfig {
            username_claim: "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name".into(),
            ..cfg()
        };
        assert_eq!(verify(&abp, &c).unwrap(), "bob");
        let just_expired = sign(
            &json!({"sub": "a", "exp": now() - 10, "iss": "app", "aud": "chat"}),
            "k",
        );
        let skew = JwtConfig {
            leeway: Duration::from_secs(60),
            ..cfg()
        };
        assert_eq!(verify(&just_expired, &skew).unwrap(), "a");
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"a","exp":{}}}"#, now() + 300));
        for header in [r#"{"alg":"none"}"#, r#"{"alg":"HS512","typ":"JWT"}"#] {
            let token = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(header));
            assert!(verify(&token, &cfg()).is_err(), "{header}");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::tests::now;
    use super::*;
    use crate::config::Secret;
    use crate::testing::json_value;
    use proptest::prelude::*;
    use serde_json::json;
    use std::time::Duration;

    fn cfg() -> JwtConfig {
        JwtConfig {
            secret: Secret::new("k"),
            issuer: None,
            audience: None,
            username_claim: "sub".into(),
            leeway: Duration::ZERO,
        }
    }

    proptest! {
        /// Any token text: an error, never a panic; and only a token signed
        /// with the secret ever passes.
        #[test]
        fn arbitrary_tokens_are_refused(parts in proptest::collection::vec("[A-Za-z0-9_=+/-]{0,40}", 0..5), raw in "\\PC{0,80}") {
            prop_assert!(verify(&parts.join("."), &cfg()).is_err());
            prop_assert!(verify(&raw, &cfg()).is_err());
        }

        /// Signed tokens with any claims pass exactly when `exp` is a
        /// number well in the future and the username claim a string.
        #[test]
        fn signed_claims_pass_only_when_complete(
            claims in json_value(),
            sub in json_value(),
            exp in prop_oneof![
                (0u64..4_000_000_000).prop_map(|n| json!(n)),
                Just(json!(now() + 3600)),
                json_value(),
            ],
        ) {
            let mut c = match claims {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            c.insert("sub".into(), sub.clone());
            c.insert("exp".into(), exp.clone());
            for k in ["nbf", "aud", "iss"] {
                c.remove(k);
            }
            let token = sign(&Value::Object(c), "k");
            // A second either side of now is left out: the clock moves.
            let at = now();
            let e = exp.as_u64();
            prop_assume!(e.is_none_or(|e| e.abs_diff(at) > 2));
            let ok = e.is_some_and(|e| e > at) && sub.is_string();
            prop_assert_eq!(verify(&token, &cfg()).is_ok(), ok);
            // One flipped signature byte and it never passes.
            let mut forged = token.into_bytes();
            let last = forged.len() - 2;
            forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
            prop_assert!(verify(&String::from_utf8(forged).unwrap(), &cfg()).is_err());
        }
    }
}
