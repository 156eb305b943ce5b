//! JWTs signed by the backend (HS256 with a shared secret) as client
//! credentials, so an app can hand its existing access token to the
//! browser. Only HS256 is accepted (never `none`), `exp` is required.

use crate::config::JwtConfig;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Whether a token has a JWT's shape (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

/// Verifies `token` at `now` (Unix seconds); returns the username claim.
pub fn verify(token: &str, cfg: &JwtConfig, now: u64) -> Result<String, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT".into());
    };
    let header: Value = decode_json(h).map_err(|e| format!("bad JWT header: {e}"))?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err("only HS256 JWTs are accepted".into());
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "bad JWT signature encoding")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(cfg.secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&sig)
        .map_err(|_| "JWT signature does not match (client.jwt.secret)")?;
    let claims: Value = decode_json(p).map_err(|e| format!("bad JWT payload: {e}"))?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or("the JWT has no exp")?;
    if now >= exp {
        return Err("the JWT has expired".into());
    }
    if claims
        .get("nbf")
        .and_then(Value::as_u64)
        .is_some_and(|nbf| now < nbf)
    {
        return Err("the JWT is not valid yet (nbf)".into());
    }
    if let Some(iss) = &cfg.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(iss) {
            return Err("the JWT's issuer is not client.jwt.issuer".into());
        }
    }
    if let Some(aud) = &cfg.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == aud,
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(aud)),
            _ => false,
        };
        if !ok {
            return Err("the JWT's audience is not client.jwt.audience".into());
        }
    }
    claims
        .get(&cfg.username_claim)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "the JWT has no {} claim (client.jwt.username_claim)",
                cfg.username_claim
            )
        })
}

fn decode_json(part: &str) -> Result<Value, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Signs claims (tests, and backends written in Rust).
pub fn sign(claims: &Value, secret: &str) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{h}.{p}").as_bytes());
    format!(
        "{h}.{p}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use serde_json::json;

    fn cfg() -> JwtConfig {
        JwtConfig {
            secret: Secret::new("k"),
            issuer: Some("app".into()),
            audience: Some("chat".into()),
            username_claim: "sub".into(),
        }
    }

    #[test]
    fn valid_expired_forged_and_misaddressed() {
        let good = sign(
            &json!({"sub": "alice", "exp": 2000, "iss": "app", "aud": ["x", "chat"]}),
            "k",
        );
        assert!(looks_like_jwt(&good));
        assert_eq!(verify(&good, &cfg(), 1000).unwrap(), "alice");
        assert!(verify(&good, &cfg(), 2000).unwrap_err().contains("expired"));
        let forged = sign(
            &json!({"sub": "alice", "exp": 2000, "iss": "app", "aud": "chat"}),
            "other",
        );
        assert!(verify(&forged, &cfg(), 1000)
            .unwrap_err()
            .contains("signature"));
        let aud = sign(
            &json!({"sub": "alice", "exp": 2000, "iss": "app", "aud": "else"}),
            "k",
        );
        assert!(verify(&aud, &cfg(), 1000).unwrap_err().contains("audience"));
        let no_exp = sign(&json!({"sub": "alice", "iss": "app", "aud": "chat"}), "k");
        assert!(verify(&no_exp, &cfg(), 1000).unwrap_err().contains("exp"));
        let abp = sign(
            &json!({"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": "bob", "exp": 2000, "iss": "app", "aud": "chat"}),
            "k",
        );
        assert!(verify(&abp, &cfg(), 1000)
            .unwrap_err()
            .contains("sub claim"));
        let c = JwtConfig {
            username_claim: "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name".into(),
            ..cfg()
        };
        assert_eq!(verify(&abp, &c, 1000).unwrap(), "bob");
        // alg none is refused even with a valid-looking payload.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"a","exp":9999}"#)
        );
        assert!(verify(&none, &cfg(), 1000).unwrap_err().contains("HS256"));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::config::Secret;
    use crate::testing::json_value;
    use proptest::prelude::*;
    use serde_json::json;

    fn cfg() -> JwtConfig {
        JwtConfig {
            secret: Secret::new("k"),
            issuer: None,
            audience: None,
            username_claim: "sub".into(),
        }
    }

    proptest! {
        /// Any token text: an error, never a panic; and only a token signed
        /// with the secret ever passes.
        #[test]
        fn arbitrary_tokens_are_refused(parts in proptest::collection::vec("[A-Za-z0-9_=+/-]{0,40}", 0..5), raw in "\\PC{0,80}") {
            prop_assert!(verify(&parts.join("."), &cfg(), 1000).is_err());
            prop_assert!(verify(&raw, &cfg(), 1000).is_err());
        }

        /// Signed tokens with any claims pass exactly when `exp` is a
        /// future number and the username claim a string.
        #[test]
        fn signed_claims_pass_only_when_complete(claims in json_value(), sub in json_value(), exp in prop_oneof![any::<u64>().prop_map(|n| json!(n)), json_value()]) {
            let mut c = match claims {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            c.insert("sub".into(), sub.clone());
            c.insert("exp".into(), exp.clone());
            c.remove("nbf");
            let token = sign(&serde_json::Value::Object(c), "k");
            let ok = exp.as_u64().is_some_and(|e| e > 1000) && sub.is_string();
            prop_assert_eq!(verify(&token, &cfg(), 1000).is_ok(), ok);
            // One flipped signature byte and it never passes.
            let mut forged = token.into_bytes();
            let last = forged.len() - 2;
            forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
            prop_assert!(verify(&String::from_utf8(forged).unwrap(), &cfg(), 1000).is_err());
        }
    }
}
