//! Name rules for tenants, databases and collections, and collection id parsing.

use uuid::Uuid;

use crate::error::ApiError;
use crate::metadata::printable;

const MIN_NAME_CHARS: usize = 3;
const MAX_NAME_CHARS: usize = 512;

/// Checks Chroma's name rule: 3 to 512 characters from `[a-zA-Z0-9._-]`, starting and
/// ending with a letter or digit, without `..`, and not an IPv4 address. `what` is
/// "collection", "database" or "tenant".
pub fn validate_name(what: &str, name: &str) -> Result<(), ApiError> {
    let valid_length = (MIN_NAME_CHARS..=MAX_NAME_CHARS).contains(&name.len());
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let valid_ends = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());

    if !(valid_length && valid_chars && valid_ends) {
        return Err(ApiError::invalid(format!(
            "Expected a name containing 3-512 characters from [a-zA-Z0-9._-], starting and ending with a character in [a-zA-Z0-9]. Got {what} name: [{}]",
            printable(name)
        )));
    }
    if name.contains("..") {
        return Err(ApiError::invalid(format!(
            "Expected {what} name to not contain two consecutive periods (..). Got {what} name: [{}]",
            printable(name)
        )));
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(ApiError::invalid(format!(
            "Expected {what} name to not be a valid IPv4 address. Got {what} name: [{}]",
            printable(name)
        )));
    }
    Ok(())
}

/// Parses a collection id from a path segment.
pub fn parse_collection_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(text).map_err(|_| {
        ApiError::invalid(format!(
            "Collection ID is not a valid UUIDv4: [{}]",
            printable(text)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_accepted() {
        for name in ["abc", "a.b-c_d", "A1b", &"x".repeat(512)] {
            assert!(validate_name("collection", name).is_ok(), "{name}");
        }
    }

    #[test]
    fn invalid_names_rejected() {
        let long = "x".repeat(513);
        for name in [
            "..",
            "a/b",
            "%2e%2e%2f",
            "ab",
            "a\0b",
            ".abc",
            "abc.",
            "ab c",
            &long,
            "é12",
        ] {
            let error = validate_name("collection", name).unwrap_err();
            assert_eq!(error.status(), 400, "{name:?}");
        }
    }

    #[test]
    fn collection_ids_parsed() {
        assert!(parse_collection_id("6f1a7b36-0d3f-4c1e-9d53-3c4b7d1f2a10").is_ok());
        for text in ["", "'", "*", "6f1a7b36", &"a".repeat(10_000)] {
            assert!(parse_collection_id(text).is_err());
        }
    }
}
