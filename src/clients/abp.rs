//! ABP's `enc_auth_token` (`docs/protocol/signalr.md` §7.2): the access token
//! encrypted by `SimpleStringCipher`: AES-256-CBC, PKCS7, key =
//! PBKDF2-HMAC-SHA1(passphrase, salt "hgt!16kl", 1000 rounds), IV
//! "jkE49230Tf093b42", base64.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::{engine::general_purpose::STANDARD, Engine as _};

const SALT: &[u8] = b"hgt!16kl";
const IV: &[u8; 16] = b"jkE49230Tf093b42";

fn key(passphrase: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(passphrase.as_bytes(), SALT, 1000, &mut key);
    key
}

/// Why an `enc_auth_token` was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AbpError {
    /// Not base64 at all.
    #[error("enc_auth_token is not base64")]
    NotBase64,
    /// Encrypted with another passphrase, or not by ABP.
    #[error("enc_auth_token does not decrypt with client.abp_passphrase")]
    WrongKey,
    /// Decrypted, but not to text.
    #[error("enc_auth_token decrypts to binary")]
    NotText,
}

/// Decrypts an `enc_auth_token` (already URL-decoded).
pub fn decrypt(token: &str, passphrase: &str) -> Result<String, AbpError> {
    let mut data = STANDARD
        .decode(token.trim())
        .map_err(|_| AbpError::NotBase64)?;
    let plain = cbc::Decryptor::<aes::Aes256>::new(&key(passphrase).into(), IV.into())
        .decrypt_padded_mut::<Pkcs7>(&mut data)
        .map_err(|_| AbpError::WrongKey)?;
    String::from_utf8(plain.to_vec()).map_err(|_| AbpError::NotText)
}

/// Encrypts like ABP's `SimpleStringCipher.Encrypt` (tests, tools).
pub fn encrypt(plain: &str, passphrase: &str) -> String {
    let ct = cbc::Encryptor::<aes::Aes256>::new(&key(passphrase).into(), IV.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plain.as_bytes());
    STANDARD.encode(ct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_vector() {
        // signalr.md §7.2 (computed with Python/openssl from ABP's parameters).
        let enc = "wNYmO41/48SHNstaLVXxHBdSZd8+6Lm0IhQ8U76mPQ4=";
        assert_eq!(
            decrypt(enc, "gsKxGZ012HLL3MI5").unwrap(),
            "eyJhbGciOiJIUzI1NiJ9.test.sig"
        );
        assert_eq!(
            encrypt("eyJhbGciOiJIUzI1NiJ9.test.sig", "gsKxGZ012HLL3MI5"),
            enc
        );
        assert_eq!(decrypt(enc, "wrong-passphrase"), Err(AbpError::WrongKey));
        assert_eq!(decrypt("%%%", "x"), Err(AbpError::NotBase64));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any `enc_auth_token`: an error or text, never a panic; what was
        /// encrypted comes back.
        #[test]
        fn tokens_decrypt_or_fail_cleanly(raw in "[A-Za-z0-9+/=]{0,90}", plain in "\\PC{0,40}") {
            let _ = decrypt(&raw, "pass");
            prop_assert_eq!(decrypt(&encrypt(&plain, "pass"), "pass").unwrap(), plain);
        }
    }
}
