//! Bearer tokens: the token file and the check of a presented token.
//!
//! A token reads `rvl_<id>_<secret>`: `id` is 16 lowercase hexadecimal characters that
//! name the token in listings and revocations, and `secret` is 64 lowercase hexadecimal
//! characters (256 random bits). The token file keeps, per token, its id, principal,
//! creation and expiry times, whether it is revoked, and the SHA-256 of the whole token,
//! never the token itself. A token with 256 random bits cannot be guessed, so a fast
//! hash is enough. Hashes are compared in time that does not depend on where they
//! differ.
//!
//! ```toml
//! [[token]]
//! id = "5f0c2a9e7b1d3c48"
//! principal = "spiffe://example.org/etl"
//! sha256 = "…64 hexadecimal characters…"
//! created_unix = 1796428800
//! expires_unix = 1799020800
//! revoked = false
//! ```
//!
//! This module does no I/O: callers read and write the file and pass the time.

use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

/// The prefix of every token.
pub const TOKEN_PREFIX: &str = "rvl_";
/// Hexadecimal characters in a token id.
pub const ID_CHARS: usize = 16;
/// Hexadecimal characters in a token secret.
pub const SECRET_CHARS: usize = 64;
/// The length of a whole token.
pub const TOKEN_CHARS: usize = TOKEN_PREFIX.len() + ID_CHARS + 1 + SECRET_CHARS;

/// One stored token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub id: String,
    pub principal: String,
    /// SHA-256 of the whole token, lowercase hexadecimal.
    pub sha256: String,
    pub created_unix: i64,
    pub expires_unix: i64,
    #[serde(default)]
    pub revoked: bool,
}

/// The token file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    #[serde(default)]
    pub token: Vec<TokenRecord>,
}

/// The reason a presented token is refused. The messages go back to the client, so
/// they never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed: expected rvl_ followed by 16 and 64 lowercase hexadecimal characters")]
    Malformed,
    #[error("the token is not known to this server")]
    Unknown,
    #[error("the token has been revoked")]
    Revoked,
    #[error("the token has expired")]
    Expired,
}

/// An error in the token file.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error(transparent)]
    Syntax(#[from] toml::de::Error),
    #[error("token {index} has an invalid {field}")]
    Invalid { index: usize, field: &'static str },
    #[error("token id {0} appears twice")]
    Duplicate(String),
}

fn is_lower_hex(text: &str, length: usize) -> bool {
    text.len() == length
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// Returns the lowercase hexadecimal SHA-256 of a token.
pub fn token_hash(token: &str) -> String {
    hex(digest(&SHA256, token.as_bytes()).as_ref())
}

/// Encodes bytes as lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Returns the token made of `id` and `secret`, both lowercase hexadecimal.
pub fn format_token(id: &str, secret: &str) -> String {
    format!("{TOKEN_PREFIX}{id}_{secret}")
}

/// Returns the id of a well-formed token.
pub fn token_id(token: &str) -> Result<&str, TokenError> {
    let rest = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(TokenError::Malformed)?;
    let (id, secret) = rest.split_once('_').ok_or(TokenError::Malformed)?;
    if is_lower_hex(id, ID_CHARS) && is_lower_hex(secret, SECRET_CHARS) {
        Ok(id)
    } else {
        Err(TokenError::Malformed)
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn same_bytes(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    let difference = left
        .iter()
        .zip(right)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b));
    difference == 0
}

impl TokenFile {
    pub fn parse(text: &str) -> Result<TokenFile, TokenFileError> {
        let file: TokenFile = toml::from_str(text)?;
        let mut ids = std::collections::HashSet::new();
        for (index, record) in file.token.iter().enumerate() {
            let invalid = |field| TokenFileError::Invalid { index, field };
            if !is_lower_hex(&record.id, ID_CHARS) {
                return Err(invalid("id"));
            }
            if record.principal.is_empty() {
                return Err(invalid("principal"));
            }
            if !is_lower_hex(&record.sha256, 64) {
                return Err(invalid("sha256"));
            }
            if record.expires_unix < record.created_unix {
                return Err(invalid("expires_unix"));
            }
            if !ids.insert(record.id.as_str()) {
                return Err(TokenFileError::Duplicate(record.id.clone()));
            }
        }
        Ok(file)
    }

    /// Returns the file's TOML text.
    pub fn to_toml(&self) -> String {
        // toml fails only on values TOML cannot express, such as maps with keys that
        // are not strings; these records hold strings, integers and booleans.
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks a presented token at `now` (Unix seconds) and returns its principal.
    pub fn check(&self, token: &str, now: i64) -> Result<&str, TokenError> {
        let id = token_id(token)?;
        let record = self
            .token
            .iter()
            .find(|record| record.id == id)
            .ok_or(TokenError::Unknown)?;
        if !same_bytes(token_hash(token).as_bytes(), record.sha256.as_bytes()) {
            return Err(TokenError::Unknown);
        }
        if record.revoked {
            return Err(TokenError::Revoked);
        }
        if now >= record.expires_unix {
            return Err(TokenError::Expired);
        }
        Ok(&record.principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef";

    fn secret(fill: char) -> String {
        std::iter::repeat_n(fill, SECRET_CHARS).collect()
    }

    fn file_with(token: &str, revoked: bool) -> TokenFile {
        TokenFile {
            token: vec![TokenRecord {
                id: ID.into(),
                principal: "alice".into(),
                sha256: token_hash(token),
                created_unix: 100,
                expires_unix: 200,
                revoked,
            }],
        }
    }

    #[test]
    fn valid_token_names_its_principal() {
        let token = format_token(ID, &secret('a'));
        assert_eq!(token.len(), TOKEN_CHARS);
        let file = TokenFile::parse(&file_with(&token, false).to_toml()).unwrap();
        assert_eq!(file.check(&token, 150), Ok("alice"));
    }

    #[test]
    fn expired_revoked_and_unknown_tokens_refused() {
        let token = format_token(ID, &secret('a'));
        assert_eq!(
            file_with(&token, false).check(&token, 200),
            Err(TokenError::Expired)
        );
        assert_eq!(
            file_with(&token, true).check(&token, 150),
            Err(TokenError::Revoked)
        );
        let other_secret = format_token(ID, &secret('b'));
        assert_eq!(
            file_with(&token, false).check(&other_secret, 150),
            Err(TokenError::Unknown)
        );
        let other_id = format_token("fedcba9876543210", &secret('a'));
        assert_eq!(
            file_with(&token, false).check(&other_id, 150),
            Err(TokenError::Unknown)
        );
    }

    #[test]
    fn malformed_tokens_refused() {
        let file = file_with(&format_token(ID, &secret('a')), false);
        let long = "a".repeat(100_000);
        for token in [
            "",
            "rvl_",
            "Bearer x",
            long.as_str(),
            "rvl_0123456789ABCDEF_aaaa",
            "rvl_0123456789abcdéf_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert_eq!(
                file.check(token, 150),
                Err(TokenError::Malformed),
                "{token:.40}"
            );
        }
    }

    #[test]
    fn invalid_token_file_rejected() {
        assert!(TokenFile::parse("[[token]]\nid = \"x\"\n").is_err());
        let token = format_token(ID, &secret('a'));
        let mut file = file_with(&token, false);
        file.token.push(file.token[0].clone());
        assert!(matches!(
            TokenFile::parse(&file.to_toml()),
            Err(TokenFileError::Duplicate(_))
        ));
        assert!(TokenFile::parse("unknown = 1").is_err());
    }

    #[test]
    fn comparison_of_different_lengths_is_false() {
        assert!(!same_bytes(b"abc", b"abcd"));
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
    }
}
