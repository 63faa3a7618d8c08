//! Literal environment values that look like secrets.
//!
//! An `env` entry with a literal `value` is a secret in the manifest, in every copy of
//! it, and in the pod spec, which anyone allowed to read the workload can read.
//! `valueFrom` (a `secretKeyRef`, for one) is never flagged. A literal value is
//! flagged when:
//!
//! - the variable name has a secret word. `PASSWORD`, `PASSWD`, `PASSPHRASE`,
//!   `SECRET`, `CREDENTIAL` and `APIKEY` count anywhere in it. `KEY`, `TOKEN`, `PASS`,
//!   `PWD`, `CREDS` and `AUTH` count as whole words between `_`, `-` or `.`, so
//!   `TOKENIZERS_PARALLELISM` is not flagged, and the whole name `PWD` does not count.
//!   A name whose last word shows that it refers to the secret rather than contains
//!   it (`FILE`, `PATH`, `DIR`, `NAME`, `ID`, `URL`, `TYPE`, `HEADER` and the like) is
//!   not flagged, nor is a value that is empty, a boolean or a short number; or
//! - the value itself looks like a secret, whatever the name: a PEM private key, a
//!   JSON Web Token, an AWS access key id, a GitHub, GitLab or Slack token, or 64 or
//!   more hexadecimal digits (a raw 256-bit key such as Ravelin's master key) that
//!   are not a digest written as `sha256:...` or `sha512:...`. Shorter hexadecimal
//!   strings are too often commit or build ids to count.

use std::sync::LazyLock;

use regex::Regex;

/// Words that mark a name anywhere in it.
const SECRET_SUBSTRINGS: [&str; 6] = [
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "SECRET",
    "CREDENTIAL",
    "APIKEY",
];

/// Words that mark a name only as whole words.
const SECRET_WORDS: [&str; 6] = ["KEY", "TOKEN", "PASS", "PWD", "CREDS", "AUTH"];

/// Last words of names that refer to a secret without holding it.
const REFERENCE_SUFFIXES: [&str; 16] = [
    "FILE", "FILES", "PATH", "DIR", "NAME", "ID", "URL", "URI", "ENDPOINT", "TYPE", "PROVIDER",
    "HEADER", "ENABLED", "TTL", "EXPIRY", "LENGTH",
];

static SECRET_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.",
        r"|\b(AKIA|ASIA)[0-9A-Z]{16}\b",
        r"|\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}",
        r"|\bgithub_pat_[A-Za-z0-9_]{30,}",
        r"|\bglpat-[A-Za-z0-9_-]{20,}",
        r"|\bxox[abposr]-[A-Za-z0-9-]{10,}",
        r"|\b[0-9a-fA-F]{64,}\b",
    ))
    .expect("valid secret value regex")
});

/// Image and content digests, which are public and long enough to look like keys.
static DIGEST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(sha256|sha384|sha512):[0-9a-fA-F]+").expect("valid digest regex")
});

/// The reason a literal environment value counts as a secret.
#[derive(Debug, PartialEq, Eq)]
pub enum SecretReason {
    Name,
    Value,
}

/// Returns why the variable `name` with literal `value` looks like a secret, or `None`.
pub fn literal_secret(name: &str, value: &str) -> Option<SecretReason> {
    if SECRET_VALUE.is_match(&DIGEST.replace_all(value, "")) {
        return Some(SecretReason::Value);
    }
    (name_holds_secret(name) && !is_trivial(value)).then_some(SecretReason::Name)
}

fn name_holds_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    if upper == "PWD" {
        return false;
    }
    let words: Vec<&str> = upper
        .split(['_', '-', '.'])
        .filter(|word| !word.is_empty())
        .collect();
    if words
        .last()
        .is_some_and(|last| REFERENCE_SUFFIXES.contains(last))
    {
        return false;
    }
    SECRET_SUBSTRINGS.iter().any(|word| upper.contains(word))
        || words.iter().any(|word| SECRET_WORDS.contains(word))
}

/// Returns whether a value is too plain to be a secret: empty, a boolean or a number
/// of at most six digits.
fn is_trivial(value: &str) -> bool {
    let value = value.trim();
    value.is_empty()
        || ["true", "false", "yes", "no", "on", "off"]
            .contains(&value.to_ascii_lowercase().as_str())
        || (value.len() <= 6 && value.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for name in [
            "POSTGRES_PASSWORD",
            "QDRANT__SERVICE__API_KEY",
            "CHROMA_SERVER_AUTHN_CREDENTIALS",
            "AUTH_TOKEN",
            "api-key",
            "OPENAI_APIKEY",
            "MASTER_KEY",
            "client_secret",
        ] {
            assert_eq!(
                literal_secret(name, "hunter2hunter2"),
                Some(SecretReason::Name),
                "{name}"
            );
        }
    }

    #[test]
    fn harmless_names() {
        for name in [
            "TOKENIZERS_PARALLELISM",
            "RAVELIN_KEY_FILE",
            "SECRET_NAME",
            "AWS_ACCESS_KEY_ID",
            "CHROMA_AUTH_TOKEN_TRANSPORT_HEADER",
            "KEYSPACE",
            "PWD",
            "LOG_LEVEL",
        ] {
            assert_eq!(literal_secret(name, "hunter2hunter2"), None, "{name}");
        }
    }

    #[test]
    fn trivial_values_are_not_secrets() {
        for value in ["", "true", "Off", "8080"] {
            assert_eq!(literal_secret("API_TOKEN", value), None, "{value}");
        }
    }

    #[test]
    fn secret_values_under_any_name() {
        let hex_key = "0123456789abcdef".repeat(4);
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        for value in [
            "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----",
            "-----BEGIN EC PRIVATE KEY-----",
            jwt,
            "AKIAABCDEFGHIJKLMNOP",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "glpat-abcdefghijklmnopqrst",
            "xoxb-1234567890-abcdef",
            hex_key.as_str(),
        ] {
            assert_eq!(
                literal_secret("SETTING", value),
                Some(SecretReason::Value),
                "{value}"
            );
        }
        assert_eq!(literal_secret("SETTING", "abc123"), None);
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(literal_secret("GIT_COMMIT", commit), None);
        let digest = format!("registry.example.com/app@sha256:{hex_key}");
        assert_eq!(literal_secret("IMAGE", &digest), None);
    }
}
