//! Identifiers and secrets in the formats Meteor's `Random` produces, so that
//! clients that sniff ids (length, alphabet) see what a real server sends.

use base64::{engine::general_purpose, Engine as _};
use rand::Rng;
use sha2::{Digest, Sha256};

/// Meteor's `Random.id()` alphabet: no 0, 1, I, O, l, o, V, U.
const UNMISTAKABLE: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";

/// A 17-character id, as for users, rooms, messages and DDP sessions.
pub fn random_id() -> String {
    let mut rng = rand::rng();
    (0..17)
        .map(|_| UNMISTAKABLE[rng.random_range(0..UNMISTAKABLE.len())] as char)
        .collect()
}

/// A login token as `Random.secret()` makes it: 43 url-safe base64 characters.
pub fn login_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database stores instead of the token (`Accounts._hashLoginToken`).
pub fn hash_login_token(token: &str) -> String {
    general_purpose::STANDARD.encode(Sha256::digest(token.as_bytes()))
}

/// Lowercase hex SHA-256, the password digest DDP clients send and the
/// `x-2fa-code` password fallback.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A six-digit email two-factor code.
pub fn email_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_meteor() {
        let id = random_id();
        assert_eq!(id.len(), 17);
        assert!(id.bytes().all(|b| UNMISTAKABLE.contains(&b)));
        let token = login_token();
        assert_eq!(token.len(), 43);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash_login_token("abc").len(), 44);
    }
}
