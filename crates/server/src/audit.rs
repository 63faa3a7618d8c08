//! The tamper-evident audit log: one JSON line per authorization decision, allowed or
//! denied, each line carrying the SHA-256 of the line before it.
//!
//! [`AuditLog`] appends records to a file and [`verify`] checks a whole file and reports
//! the first record that breaks the chain. `ravelin audit verify FILE` runs [`verify`].
//!
//! # Record format
//!
//! The file is JSON Lines: each record is one line of UTF-8 JSON ended by a single
//! `\n`, and every line is a record. A record is a JSON object with no whitespace
//! between tokens. Its members appear in this order, and the optional ones are left
//! out when they have no value:
//!
//! | member        | JSON type | presence | value |
//! |---------------|-----------|----------|-------|
//! | `seq`         | integer   | always   | 1 for the first record, then one more than the record before |
//! | `time`        | string    | always   | when the record was appended, UTC, RFC 3339 with milliseconds: `2025-06-01T12:34:56.789Z` |
//! | `principal`   | string    | always   | the client's principal, empty when it was not authenticated |
//! | `fingerprint` | string    | optional | lowercase hex SHA-256 of the client certificate |
//! | `peer`        | string    | always   | the client's socket address |
//! | `route`       | string    | always   | a fixed route name such as `records.query` |
//! | `action`      | string    | optional | the grant the route needs: `read`, `write` or `admin` |
//! | `tenant`      | string    | optional | the tenant the request names |
//! | `database`    | string    | optional | the database the request names |
//! | `collection`  | string    | optional | the collection the request names |
//! | `outcome`     | string    | always   | `allowed`, `denied` or `unauthenticated` |
//! | `status`      | integer   | always   | the HTTP status of the response, 0 to 65535 |
//! | `request_id`  | string    | always   | the request's id |
//! | `prev`        | string    | always   | the `hash` of the previous record, 64 zeros in the first record |
//! | `hash`        | string    | always   | 64 lowercase hex digits, described below |
//!
//! `hash` is the SHA-256 of the line's bytes from the opening `{` up to, and not
//! including, the `,"hash":` that starts the last member. In other words, the line
//! ends with `,"hash":"` followed by 64 hex digits and `"}`, and those 75 bytes are the
//! only ones not hashed. Strings are escaped as `serde_json` writes them: `"`, `\` and
//! control characters are escaped, and other characters are written as UTF-8. So a
//! value can never end a line early. A line may be at most [`MAX_LINE_BYTES`] bytes long,
//! not counting its newline.
//!
//! Records never contain tokens, embeddings, documents or metadata. The file is
//! created with mode 0600, and `open` does not change the mode of an existing file.
//!
//! # What the chain detects
//!
//! [`verify`] reports an edited, inserted, deleted, reordered or repeated record at the
//! first position where the chain no longer holds, and a last line that is incomplete.
//! It cannot detect, from the file alone:
//!
//! - records removed from the end of the file, because what remains is a valid chain;
//! - records added at the end, or every record from some point to the end rewritten,
//!   with `seq`, `prev` and `hash` recomputed. The hashes use no secret key, so anyone
//!   who can write the file can do this.
//!
//! [`verify`] returns the record count and last hash so that an operator can compare
//! them with a copy kept elsewhere. That comparison reveals records removed from the
//! end and rewrites of records the copy covers, but not records forged after the copy.
//!
//! The submodules are `record`, which encodes and checks one line, `log`, which
//! appends to a file, and `verify`, which checks a whole file.

mod log;
mod record;
mod verify;

#[cfg(test)]
mod tests;

use serde::{Serialize, Serializer};

pub use log::{AuditError, AuditLog, ChainHead};
pub use verify::{verify, VerifyBreak, VerifyError, VerifySummary};

/// Maximum length of one record line in bytes, not counting its newline. [`AuditLog`]
/// rejects longer records and [`verify`] reports a longer line as a break.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The `prev` of the first record.
pub const FIRST_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The result of an authorization decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The policy granted the request.
    Allowed,
    /// The client was authenticated but the policy has no grant for the request.
    Denied,
    /// The client has no usable identity.
    Unauthenticated,
}

impl Outcome {
    /// Returns the name written in the `outcome` member.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Unauthenticated => "unauthenticated",
        }
    }

    fn from_name(name: &str) -> Option<Outcome> {
        [Outcome::Allowed, Outcome::Denied, Outcome::Unauthenticated]
            .into_iter()
            .find(|outcome| outcome.as_str() == name)
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One authorization decision, as the request path reports it. [`AuditLog::append`]
/// adds `seq`, `time`, `prev` and `hash`.
///
/// Only identifiers go here: never a token, embedding, document or metadata value.
#[derive(Debug, Clone, Copy)]
pub struct AuditEvent<'a> {
    /// The client's principal, or the empty string when it was not authenticated.
    pub principal: &'a str,
    /// Lowercase hex SHA-256 of the client certificate in DER form.
    pub fingerprint: Option<&'a str>,
    /// The client's socket address, such as `192.0.2.7:50412`.
    pub peer: &'a str,
    /// A fixed route name such as `records.query`, never text from the request.
    pub route: &'a str,
    /// The grant the route needs: `read`, `write` or `admin`.
    pub action: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub database: Option<&'a str>,
    pub collection: Option<&'a str>,
    pub outcome: Outcome,
    /// The HTTP status of the response.
    pub status: u16,
    pub request_id: &'a str,
}
