//! Encoding one record line and checking it.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::log::AuditError;
use super::{AuditEvent, Outcome, MAX_LINE_BYTES};

/// Length of a SHA-256 digest in hex digits.
const HASH_HEX_LEN: usize = 64;

/// The members of a record before `hash`, in the order they are written.
#[derive(Serialize)]
struct RecordBody<'a> {
    seq: u64,
    time: &'a str,
    principal: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<&'a str>,
    peer: &'a str,
    route: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    collection: Option<&'a str>,
    outcome: Outcome,
    status: u16,
    request_id: &'a str,
    prev: &'a str,
}

pub(super) struct EncodedRecord {
    /// The whole line including its newline.
    pub(super) line: Vec<u8>,
    pub(super) hash: String,
}

/// Encodes the record line, newline included, and returns it with its `hash`. A line
/// longer than [`MAX_LINE_BYTES`] is rejected.
pub(super) fn encode_record(
    seq: u64,
    time: &str,
    event: &AuditEvent<'_>,
    prev: &str,
) -> Result<EncodedRecord, AuditError> {
    let body = RecordBody {
        seq,
        time,
        principal: event.principal,
        fingerprint: event.fingerprint,
        peer: event.peer,
        route: event.route,
        action: event.action,
        tenant: event.tenant,
        database: event.database,
        collection: event.collection,
        outcome: event.outcome,
        status: event.status,
        request_id: event.request_id,
        prev,
    };
    let mut line =
        serde_json::to_vec(&body).map_err(|error| AuditError::Encode(error.to_string()))?;

    // The hash covers the object without its closing brace, then the hash member and
    // the brace are appended.
    if line.pop() != Some(b'}') {
        return Err(AuditError::Encode(
            "serde_json output does not end with }".to_string(),
        ));
    }
    let hash = sha256_hex(&line);
    line.extend_from_slice(b",\"hash\":\"");
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}");
    if line.len() > MAX_LINE_BYTES {
        return Err(AuditError::RecordTooLong { bytes: line.len() });
    }
    line.push(b'\n');

    Ok(EncodedRecord { line, hash })
}

/// The chain members of a record that passed [`check_record`].
pub(super) struct CheckedRecord {
    pub(super) seq: u64,
    pub(super) prev: String,
    pub(super) hash: String,
}

#[derive(Clone, Copy)]
enum MemberKind {
    Seq,
    Text,
    Outcome,
    Status,
    Hash,
}

struct MemberSpec {
    name: &'static str,
    required: bool,
    kind: MemberKind,
}

const fn member(name: &'static str, required: bool, kind: MemberKind) -> MemberSpec {
    MemberSpec {
        name,
        required,
        kind,
    }
}

/// The members of a record in the order they must appear. Keep in step with
/// [`RecordBody`], the table in the `audit` module documentation and docs/audit.md.
const MEMBERS: [MemberSpec; 15] = [
    member("seq", true, MemberKind::Seq),
    member("time", true, MemberKind::Text),
    member("principal", true, MemberKind::Text),
    member("fingerprint", false, MemberKind::Text),
    member("peer", true, MemberKind::Text),
    member("route", true, MemberKind::Text),
    member("action", false, MemberKind::Text),
    member("tenant", false, MemberKind::Text),
    member("database", false, MemberKind::Text),
    member("collection", false, MemberKind::Text),
    member("outcome", true, MemberKind::Outcome),
    member("status", true, MemberKind::Status),
    member("request_id", true, MemberKind::Text),
    member("prev", true, MemberKind::Hash),
    member("hash", true, MemberKind::Hash),
];

/// Checks one line without its newline: JSON shape, member order and types, and the
/// `hash` of the line. The error is the reason for a break.
pub(super) fn check_record(line: &[u8]) -> Result<CheckedRecord, String> {
    if line.is_empty() {
        return Err("empty line".to_string());
    }
    let text = std::str::from_utf8(line).map_err(|_| "line is not valid UTF-8".to_string())?;
    let members: OrderedMembers =
        serde_json::from_str(text).map_err(|error| format!("invalid JSON: {error}"))?;

    let mut seq = None;
    let mut prev = None;
    let mut hash = None;
    let mut next = 0;
    for (name, value) in &members.0 {
        let Some((index, spec)) = MEMBERS
            .iter()
            .enumerate()
            .skip(next)
            .find(|(_, spec)| spec.name == name.as_str())
        else {
            return Err(if MEMBERS.iter().any(|spec| spec.name == name.as_str()) {
                format!("member {name} is repeated or out of order")
            } else {
                // Debug formatting escapes control characters from the file.
                format!("unknown member {name:?}")
            });
        };
        if let Some(skipped) = MEMBERS
            .iter()
            .take(index)
            .skip(next)
            .find(|spec| spec.required)
        {
            return Err(missing_member(skipped.name, &members));
        }
        check_member_type(spec, value)?;
        match spec.name {
            "seq" => seq = value.as_u64(),
            "prev" => prev = value.as_str().map(str::to_string),
            "hash" => hash = value.as_str().map(str::to_string),
            _ => {}
        }
        next = index + 1;
    }
    if let Some(skipped) = MEMBERS.iter().skip(next).find(|spec| spec.required) {
        return Err(missing_member(skipped.name, &members));
    }
    let (Some(seq), Some(prev), Some(hash)) = (seq, prev, hash) else {
        return Err("missing member seq, prev or hash".to_string());
    };

    let hash_member = format!(",\"hash\":\"{hash}\"}}");
    let Some(hashed) = text.strip_suffix(&hash_member) else {
        return Err("the line does not end with ,\"hash\":\"<64 hex digits>\"}".to_string());
    };
    if sha256_hex(hashed.as_bytes()) != hash {
        return Err("hash does not match the record's contents".to_string());
    }

    Ok(CheckedRecord { seq, prev, hash })
}

/// Returns the break reason for a required member that is not at its position: out of
/// order when the record has it elsewhere, missing otherwise.
fn missing_member(name: &str, members: &OrderedMembers) -> String {
    if members.0.iter().any(|(key, _)| key == name) {
        format!("member {name} is out of order")
    } else {
        format!("missing member {name}")
    }
}

fn check_member_type(spec: &MemberSpec, value: &Value) -> Result<(), String> {
    let name = spec.name;
    let valid = match spec.kind {
        MemberKind::Seq => value.as_u64().is_some_and(|seq| seq >= 1),
        MemberKind::Text => value.is_string(),
        MemberKind::Outcome => value.as_str().and_then(Outcome::from_name).is_some(),
        MemberKind::Status => value
            .as_u64()
            .is_some_and(|status| status <= u64::from(u16::MAX)),
        MemberKind::Hash => value.as_str().is_some_and(is_hash_hex),
    };
    if valid {
        return Ok(());
    }
    Err(match spec.kind {
        MemberKind::Seq => format!("{name} is not a positive integer"),
        MemberKind::Text => format!("{name} is not a string"),
        MemberKind::Outcome => {
            format!("{name} is not \"allowed\", \"denied\" or \"unauthenticated\"")
        }
        MemberKind::Status => format!("{name} is not an integer from 0 to 65535"),
        MemberKind::Hash => format!("{name} is not 64 lowercase hex digits"),
    })
}

fn is_hash_hex(text: &str) -> bool {
    text.len() == HASH_HEX_LEN
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut hex = String::with_capacity(HASH_HEX_LEN);
    for byte in digest.as_ref() {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

/// A JSON object's members in the order they appear in the text, repeats included.
/// `serde_json::Map` sorts its keys unless the `preserve_order` feature is on.
pub(super) struct OrderedMembers(pub(super) Vec<(String, Value)>);

impl<'de> Deserialize<'de> for OrderedMembers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OrderedMembersVisitor)
    }
}

struct OrderedMembersVisitor;

impl<'de> Visitor<'de> for OrderedMembersVisitor {
    type Value = OrderedMembers;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedMembers, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Value>()? {
            members.push(member);
        }
        Ok(OrderedMembers(members))
    }
}
