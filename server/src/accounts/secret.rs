//! Secrets: random tokens and codes, their hashes, and password hashes.
//!
//! Tokens carry 256 random bits, so a plain SHA-256 of them is enough to store: nobody can
//! guess one. Passwords are chosen by people, so they are hashed with argon2id.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};

/// The operating system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("no randomness available: {0}")]
pub struct RandomError(String);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
    Ok(bytes)
}

/// A fresh token: 256 random bits, as 64 hex digits.
pub fn random_token() -> Result<String, RandomError> {
    Ok(hex(&random_bytes::<32>()?))
}

/// Letters and digits that cannot be mistaken for one another when read aloud or typed.
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// A one-time enrollment code, `XXXXX-XXXXX` (50 bits: enough for a code that expires, is used
/// once, and whose guesses are rate-limited).
pub fn random_code() -> Result<String, RandomError> {
    let bytes = random_bytes::<10>()?;
    let chars: String = bytes.iter().map(|b| CODE_ALPHABET[usize::from(*b) % CODE_ALPHABET.len()] as char).collect();
    Ok(format!("{}-{}", &chars[..5], &chars[5..]))
}

/// A code as people may type it: upper case, without spaces or dashes.
pub fn normalize_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

/// A one-time password for a new staff account (must be changed at first sign-in).
pub fn random_password() -> Result<String, RandomError> {
    let bytes = random_bytes::<16>()?;
    Ok(bytes.iter().map(|b| CODE_ALPHABET[usize::from(*b) % CODE_ALPHABET.len()] as char).collect())
}

/// The stored form of a token or code.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// An argon2id hash of `password`, in PHC form.
pub fn hash_password(password: &str) -> Result<String, RandomError> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| RandomError(e.to_string()))
}

/// Whether `password` matches the stored hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_codes_and_passwords() {
        let a = random_token().expect("random");
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_token().expect("random"));
        assert_eq!(hash_token(&a), hash_token(&a));
        let code = random_code().expect("random");
        assert_eq!(code.len(), 11);
        assert_eq!(normalize_code(&code.to_lowercase().replace('-', " ")), code.replace('-', ""));
        let hash = hash_password("mật khẩu dài").expect("hashed");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("mật khẩu dài", &hash));
        assert!(!verify_password("mật khẩu sai", &hash));
        assert!(!verify_password("x", "not a hash"));
    }
}
