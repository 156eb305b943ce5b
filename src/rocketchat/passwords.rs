//! The password imrelay uses for a user: explicit from the backend, or by
//! policy (`derived` = HMAC-SHA256 of a server secret and the username,
//! unique per user and never stored; `default` = one shared password).

use crate::config::{PasswordPolicy, UsersConfig};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The password for `username`.
pub fn password_for(cfg: &UsersConfig, username: &str, explicit: Option<&str>) -> String {
    if let Some(p) = explicit {
        return p.to_string();
    }
    match cfg.password {
        PasswordPolicy::Derived => {
            let secret = cfg
                .password_secret
                .as_ref()
                .map(|s| s.expose())
                .unwrap_or_default();
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes any key length");
            mac.update(username.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        PasswordPolicy::Default => cfg
            .default_password
            .as_ref()
            .map(|s| s.expose().to_string())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn derived_is_hmac_sha256_hex() {
        let cfg = UsersConfig {
            password: PasswordPolicy::Derived,
            password_secret: Some(Secret::new("key")),
            default_password: None,
            reserved: vec![],
        };
        // RFC 4231-style check computed independently: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        assert_eq!(
            password_for(&cfg, "The quick brown fox jumps over the lazy dog", None),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        assert_ne!(
            password_for(&cfg, "alice", None),
            password_for(&cfg, "bob", None)
        );
        assert_eq!(password_for(&cfg, "alice", Some("given")), "given");
    }
}
