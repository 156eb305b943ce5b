//! Rocket.Chat tokens at rest in Redis: sealed with AES-256-GCM under a key
//! derived from `cluster.secret`, bound to the user they belong to (a
//! sealed token copied into another user's record does not open), and
//! compared by a keyed fingerprint so a store script can tell "the same
//! token" without ever holding it in plain text.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce};
use base64::{engine::general_purpose::STANDARD_NO_PAD, Engine as _};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

/// The shortest `cluster.secret` taken.
pub(crate) const MIN_SECRET: usize = 32;

/// Seals and opens tokens with one secret.
pub(crate) struct Seal {
    cipher: Aes256Gcm,
    fingerprint_key: [u8; 32],
}

/// Why a sealed token did not open.
#[derive(Debug, thiserror::Error)]
#[error("a sealed token does not open with this cluster.secret (another secret, or tampered)")]
pub(crate) struct Unsealed;

fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

impl Seal {
    /// Keys for `secret` (one for sealing, one for fingerprints). The secret
    /// must be at least [`MIN_SECRET`] bytes: the keys are derived without
    /// stretching, so it has to be random, not a passphrase (a dump of Redis
    /// would let a short one be guessed offline).
    pub(crate) fn new(secret: &[u8]) -> Result<Seal, String> {
        if secret.len() < MIN_SECRET {
            return Err(format!(
                "cluster.secret must be at least {MIN_SECRET} random bytes (it has {}); e.g. openssl rand -base64 48",
                secret.len()
            ));
        }
        let key = derive(secret, b"imrelay cluster: token sealing v1");
        Ok(Seal {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)),
            fingerprint_key: derive(secret, b"imrelay cluster: token fingerprint v1"),
        })
    }

    /// `token`, sealed for `username`: base64 of a fresh nonce and the
    /// ciphertext with its tag.
    pub(crate) fn seal(&self, username: &str, token: &str) -> String {
        let nonce: [u8; 12] = rand::rng().random();
        let payload = Payload {
            msg: token.as_bytes(),
            aad: username.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("AES-GCM seals any message under 64 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        STANDARD_NO_PAD.encode(out)
    }

    /// The token `seal` sealed for `username`.
    pub(crate) fn open(&self, username: &str, sealed: &str) -> Result<String, Unsealed> {
        let bytes = STANDARD_NO_PAD.decode(sealed).map_err(|_| Unsealed)?;
        if bytes.len() < 12 + 16 {
            return Err(Unsealed);
        }
        let (nonce, body) = bytes.split_at(12);
        let payload = Payload {
            msg: body,
            aad: username.as_bytes(),
        };
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| Unsealed)?;
        String::from_utf8(plain).map_err(|_| Unsealed)
    }

    /// A fingerprint of `token` that says nothing of it without the secret.
    pub(crate) fn fingerprint(&self, token: &str) -> String {
        hex::encode(derive(&self.fingerprint_key, token.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_token_opens_only_for_its_user_with_its_secret() {
        let seal = Seal::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let sealed = seal.seal("alice", "rc-token-1");
        assert!(!sealed.contains("rc-token-1"));
        assert_ne!(
            sealed,
            seal.seal("alice", "rc-token-1"),
            "a fresh nonce each time"
        );
        assert_eq!(seal.open("alice", &sealed).unwrap(), "rc-token-1");
        assert!(seal.open("bob", &sealed).is_err(), "bound to its user");
        let other = Seal::new(b"another secret, just as long....").unwrap();
        assert!(other.open("alice", &sealed).is_err(), "another secret");
        let mut tampered = STANDARD_NO_PAD.decode(&sealed).unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(seal
            .open("alice", &STANDARD_NO_PAD.encode(tampered))
            .is_err());
        assert!(seal.open("alice", "not base64 !").is_err());
        assert!(seal.open("alice", "").is_err());
    }

    #[test]
    fn a_short_secret_is_refused() {
        let e = Seal::new(b"hunter2").err().unwrap();
        assert!(e.contains("at least 32"), "{e}");
    }

    #[test]
    fn fingerprints_tell_tokens_apart_and_depend_on_the_secret() {
        let seal = Seal::new(b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(seal.fingerprint("t1"), seal.fingerprint("t1"));
        assert_ne!(seal.fingerprint("t1"), seal.fingerprint("t2"));
        let other = Seal::new(b"another secret, just as long....").unwrap();
        assert_ne!(seal.fingerprint("t1"), other.fingerprint("t1"));
        assert!(!seal.fingerprint("t1").contains("t1"));
    }
}
