//! Tests of the audit log: the record format, the writer, and breaks that `verify`
//! must find at the right record.

use std::io::{self, Cursor, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::record::{sha256_hex, OrderedMembers};
use super::*;

fn event(index: usize) -> AuditEvent<'static> {
    const PRINCIPALS: [&str; 3] = ["alice", "", "spiffe://example.org/svc"];
    AuditEvent {
        principal: PRINCIPALS[index % 3],
        fingerprint: (index % 3 != 1)
            .then_some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
        peer: "192.0.2.7:50412",
        route: if index.is_multiple_of(2) {
            "records.query"
        } else {
            "collections.create"
        },
        action: (index % 3 != 1).then_some(if index.is_multiple_of(2) {
            "read"
        } else {
            "write"
        }),
        tenant: Some("default_tenant"),
        database: (index % 4 != 3).then_some("default_database"),
        collection: (index.is_multiple_of(2)).then_some("notes"),
        outcome: match index % 3 {
            0 => Outcome::Allowed,
            1 => Outcome::Unauthenticated,
            _ => Outcome::Denied,
        },
        status: match index % 3 {
            0 => 200,
            1 => 401,
            _ => 403,
        },
        request_id: "4b1c6a52-2f0e-4c55-9d1e-0d6f7f7c2a11",
    }
}

/// Writes `count` records to a new log and returns the file's bytes.
fn log_bytes(count: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    for index in 0..count {
        log.append(&event(index), false).unwrap();
    }
    drop(log);
    std::fs::read(&path).unwrap()
}

fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|&byte| byte == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn verify_bytes(bytes: &[u8]) -> Result<VerifySummary, VerifyError> {
    verify(Cursor::new(bytes))
}

fn expect_break(bytes: &[u8], record: u64) -> VerifyBreak {
    match verify_bytes(bytes) {
        Err(VerifyError::Break(broken)) => {
            assert_eq!(broken.record, record, "wrong record: {broken}");
            assert_eq!(broken.line, record, "wrong line: {broken}");
            broken
        }
        other => panic!("expected a break at record {record}, got {other:?}"),
    }
}

/// Rewrites a record line with its members in the same order, after replacing the
/// value of member `name` with `change(value)`.
fn rewrite_member(line: &[u8], name: &str, change: impl Fn(&Value) -> Value) -> Vec<u8> {
    let text = std::str::from_utf8(line).unwrap().trim_end_matches('\n');
    let members: OrderedMembers = serde_json::from_str(text).unwrap();
    let parts: Vec<String> = members
        .0
        .iter()
        .map(|(key, value)| {
            let value = if key == name {
                change(value)
            } else {
                value.clone()
            };
            format!("{}:{}", Value::from(key.as_str()), value)
        })
        .collect();
    format!("{{{}}}\n", parts.join(",")).into_bytes()
}

/// Returns a different value of the same shape, so the check that fails is the
/// chain's, not the member's type.
fn altered(name: &str, value: &Value) -> Value {
    match value {
        Value::Number(number) => Value::from(number.as_u64().unwrap() + 1),
        Value::String(text) if name == "outcome" => Value::from(if text == "denied" {
            "allowed"
        } else {
            "denied"
        }),
        Value::String(text) if text.is_empty() => Value::from("mallory"),
        Value::String(text) => {
            let mut chars: Vec<char> = text.chars().collect();
            let last = chars.len() - 1;
            chars[last] = if chars[last] == '1' { '2' } else { '1' };
            Value::from(chars.into_iter().collect::<String>())
        }
        other => panic!("unexpected member value {other}"),
    }
}

#[test]
fn intact_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    for index in 0..7 {
        log.append(&event(index), index.is_multiple_of(2)).unwrap();
    }

    let summary = verify_bytes(&std::fs::read(&path).unwrap()).unwrap();

    assert_eq!(summary.records, 7);
    assert_eq!(summary.last_hash, log.head().hash);
    assert_eq!(log.head().seq, 7);
}

#[test]
fn empty_log_verifies() {
    let summary = verify_bytes(b"").unwrap();

    assert_eq!(summary.records, 0);
    assert_eq!(summary.last_hash, FIRST_PREV);
}

#[test]
fn record_layout_is_documented_format() {
    let bytes = log_bytes(1);
    let text = std::str::from_utf8(&bytes).unwrap();
    let line = text.strip_suffix('\n').unwrap();

    assert!(line.starts_with("{\"seq\":1,\"time\":\""), "{line}");
    assert!(
        line.contains(
            "\"principal\":\"alice\",\"fingerprint\":\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\",\
             \"peer\":\"192.0.2.7:50412\",\"route\":\"records.query\",\"action\":\"read\",\
             \"tenant\":\"default_tenant\",\"database\":\"default_database\",\"collection\":\"notes\",\
             \"outcome\":\"allowed\",\"status\":200,\"request_id\":\"4b1c6a52-2f0e-4c55-9d1e-0d6f7f7c2a11\",\
             \"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"hash\":\""
        ),
        "{line}"
    );

    let (hashed, hash_member) = line.split_at(line.len() - 75);
    assert!(hash_member.starts_with(",\"hash\":\""), "{hash_member}");
    assert!(hash_member.ends_with("\"}"), "{hash_member}");
    assert_eq!(&hash_member[9..73], sha256_hex(hashed.as_bytes()));
}

#[test]
fn time_is_rfc3339_utc_millis() {
    let bytes = log_bytes(1);
    let members: OrderedMembers =
        serde_json::from_slice(bytes.strip_suffix(b"\n").unwrap()).unwrap();
    let time = members.0[1].1.as_str().unwrap();

    assert_eq!(members.0[1].0, "time");
    assert_eq!(time.len(), 24, "{time}");
    assert!(time.ends_with('Z'), "{time}");
    assert_eq!(&time[19..20], ".", "{time}");
    let parsed = time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339);
    assert!(parsed.is_ok(), "{time}: {parsed:?}");
}

#[test]
fn empty_options_are_omitted() {
    let bytes = log_bytes(2);
    let second = std::str::from_utf8(&lines(&bytes)[1]).unwrap().to_string();

    assert!(second.contains("\"principal\":\"\""), "{second}");
    assert!(!second.contains("\"fingerprint\":"), "{second}");
    assert!(!second.contains("\"action\":"), "{second}");
    assert!(!second.contains("\"collection\":"), "{second}");
    assert!(
        second.contains("\"outcome\":\"unauthenticated\""),
        "{second}"
    );
}

#[test]
fn rewrite_member_keeps_unchanged_line() {
    let bytes = log_bytes(3);
    for line in lines(&bytes) {
        assert_eq!(rewrite_member(&line, "", |value| value.clone()), line);
    }
}

#[test]
fn edited_member_breaks_at_record() {
    let count = 5;
    let original = lines(&log_bytes(count));
    for position in [0, 2, count - 1] {
        let text = std::str::from_utf8(&original[position]).unwrap().trim_end();
        let members: OrderedMembers = serde_json::from_str(text).unwrap();
        for (name, _) in &members.0 {
            let mut edited = original.clone();
            edited[position] =
                rewrite_member(&original[position], name, |value| altered(name, value));
            assert_ne!(edited[position], original[position], "{name}");

            let broken = expect_break(&edited.concat(), position as u64 + 1);

            assert!(!broken.reason.is_empty(), "{name}");
        }
    }
}

#[test]
fn edited_value_fails_hash() {
    let mut edited = lines(&log_bytes(3));
    edited[1] = rewrite_member(&edited[1], "status", |_| Value::from(200));

    let broken = expect_break(&edited.concat(), 2);

    assert_eq!(broken.reason, "hash does not match the record's contents");
}

#[test]
fn deleted_first_record_breaks_at_one() {
    let mut records = lines(&log_bytes(4));
    records.remove(0);

    let broken = expect_break(&records.concat(), 1);

    assert_eq!(broken.reason, "seq is 2, expected 1");
}

#[test]
fn deleted_middle_record_breaks_there() {
    let mut records = lines(&log_bytes(5));
    records.remove(2);

    let broken = expect_break(&records.concat(), 3);

    assert_eq!(broken.reason, "seq is 4, expected 3");
}

#[test]
fn swapped_records_break_at_first() {
    let mut records = lines(&log_bytes(5));
    records.swap(1, 3);

    let broken = expect_break(&records.concat(), 2);

    assert_eq!(broken.reason, "seq is 4, expected 2");
}

#[test]
fn duplicated_record_breaks_at_copy() {
    let mut records = lines(&log_bytes(5));
    let copy = records[2].clone();
    records.insert(3, copy);

    let broken = expect_break(&records.concat(), 4);

    assert_eq!(broken.reason, "seq is 3, expected 4");
}

#[test]
fn renumbered_record_fails_prev() {
    // Record 3 deleted, and the later ones renumbered with correct hashes: the
    // chain still breaks, because record 3's prev names the deleted record.
    let mut records = lines(&log_bytes(4));
    records.remove(2);
    let renumbered = rewrite_member(&records[2], "seq", |_| Value::from(3));
    let text = std::str::from_utf8(&renumbered).unwrap().trim_end();
    let hashed = &text[..text.len() - 75];
    records[2] = format!(
        "{hashed},\"hash\":\"{}\"}}\n",
        sha256_hex(hashed.as_bytes())
    )
    .into_bytes();

    let broken = expect_break(&records.concat(), 3);

    assert_eq!(broken.reason, "prev does not match the hash of record 2");
}

#[test]
fn truncated_last_line_breaks() {
    let bytes = log_bytes(4);

    let broken = expect_break(&bytes[..bytes.len() - 20], 4);
    assert!(broken.reason.contains("newline"), "{}", broken.reason);

    let broken = expect_break(&bytes[..bytes.len() - 1], 4);
    assert!(broken.reason.contains("newline"), "{}", broken.reason);
}

#[test]
fn overlong_line_breaks() {
    let mut bytes = log_bytes(2);
    bytes.extend(std::iter::repeat_n(b'a', MAX_LINE_BYTES + 1));
    bytes.push(b'\n');
    bytes.extend(log_bytes(1));

    let broken = expect_break(&bytes, 3);

    assert!(broken.reason.contains("longer than"), "{}", broken.reason);
}

#[test]
fn malformed_lines_break() {
    let valid = lines(&log_bytes(2));
    let cases: [(&[u8], &str); 7] = [
        (b"\n", "empty line"),
        (b"not json\n", "invalid JSON"),
        (b"[1,2]\n", "invalid JSON"),
        (b"{\"seq\":2}\n", "missing member time"),
        (b"\xff\xfe\n", "not valid UTF-8"),
        (b"{\"seq\":2,\"extra\":1}\n", "unknown member \"extra\""),
        (
            b"{\"seq\":2,\"\\u001b[2J\":1}\n",
            "unknown member \"\\u{1b}[2J\"",
        ),
    ];
    for (line, reason) in cases {
        let bytes = [valid[0].clone(), line.to_vec()].concat();

        let broken = expect_break(&bytes, 2);

        assert!(
            broken.reason.contains(reason),
            "{reason}: {}",
            broken.reason
        );
    }
}

#[test]
fn member_order_is_checked() {
    let record = std::str::from_utf8(&log_bytes(1)).unwrap().to_string();
    let swapped = record.replacen(
        "\"principal\":\"alice\",\"fingerprint\"",
        "\"fingerprint\"",
        1,
    );
    let swapped = swapped.replacen("\"peer\"", "\"principal\":\"alice\",\"peer\"", 1);
    assert_ne!(swapped, record);

    let broken = expect_break(swapped.as_bytes(), 1);

    assert_eq!(broken.reason, "member principal is out of order");
}

#[test]
fn spaced_hash_member_breaks() {
    let record = std::str::from_utf8(&log_bytes(1)).unwrap().to_string();
    let spaced = record.replacen(",\"hash\":", ", \"hash\":", 1);

    let broken = expect_break(spaced.as_bytes(), 1);

    assert!(
        broken.reason.contains("does not end with"),
        "{}",
        broken.reason
    );
}

#[test]
fn control_characters_stay_on_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    let awkward = AuditEvent {
        principal: "line\nbreak \"quoted\" \\ \u{0} é",
        ..event(0)
    };
    log.append(&awkward, false).unwrap();
    log.append(&event(1), false).unwrap();

    let bytes = std::fs::read(&path).unwrap();

    assert_eq!(lines(&bytes).len(), 2);
    assert_eq!(verify_bytes(&bytes).unwrap().records, 2);
}

#[test]
fn reopen_continues_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    for index in 0..3 {
        log.append(&event(index), false).unwrap();
    }
    let head = log.head();
    drop(log);

    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.head(), head);
    for index in 3..5 {
        log.append(&event(index), true).unwrap();
    }

    let summary = verify_bytes(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(summary.records, 5);
    assert_eq!(summary.last_hash, log.head().hash);
}

#[test]
fn open_creates_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");

    let log = AuditLog::open(&path).unwrap();

    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    assert_eq!(
        log.head(),
        ChainHead {
            seq: 0,
            hash: FIRST_PREV.to_string()
        }
    );
}

#[test]
fn open_rejects_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("audit.jsonl");

    let result = AuditLog::open(&path);

    assert!(matches!(result, Err(AuditError::Open { .. })), "{result:?}");
}

#[test]
fn open_rejects_damaged_last_line() {
    let bytes = log_bytes(3);
    let mut edited = lines(&bytes);
    edited[2] = rewrite_member(&edited[2], "route", |_| Value::from("records.delete"));
    let mut long_line = bytes.clone();
    long_line.extend(std::iter::repeat_n(b'a', MAX_LINE_BYTES + 1));
    long_line.push(b'\n');
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "truncated",
            bytes[..bytes.len() - 10].to_vec(),
            "does not end with a newline",
        ),
        ("edited", edited.concat(), "hash does not match"),
        (
            "garbage",
            [bytes.clone(), b"garbage\n".to_vec()].concat(),
            "invalid JSON",
        ),
        (
            "blank",
            [bytes.clone(), b"\n".to_vec()].concat(),
            "empty line",
        ),
        ("long", long_line, "longer than"),
    ];

    for (name, contents, problem) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, &contents).unwrap();

        let error = match AuditLog::open(&path) {
            Err(error) => error,
            Ok(_) => panic!("{name}: open accepted a damaged log"),
        };

        assert!(
            matches!(error, AuditError::Damaged { .. }),
            "{name}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&path.display().to_string()),
            "{name}: {message}"
        );
        assert!(message.contains(problem), "{name}: {message}");
        assert!(message.contains("Move the file aside"), "{name}: {message}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            contents,
            "{name}: file changed"
        );
    }
}

#[test]
fn open_reads_only_last_line() {
    // Damage before the last line is for verify to find; open continues the chain.
    let mut records = lines(&log_bytes(3));
    records[0] = rewrite_member(&records[0], "status", |_| Value::from(500));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, records.concat()).unwrap();

    let log = AuditLog::open(&path).unwrap();

    assert_eq!(log.head().seq, 3);
}

#[test]
fn second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();

    let second = AuditLog::open(&path);
    assert!(
        matches!(second, Err(AuditError::Locked { .. })),
        "{second:?}"
    );

    drop(log);
    assert!(AuditLog::open(&path).is_ok());
}

#[test]
fn overlong_record_keeps_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    log.append(&event(0), false).unwrap();
    let principal = "p".repeat(MAX_LINE_BYTES);
    let oversized = AuditEvent {
        principal: &principal,
        ..event(1)
    };

    let result = log.append(&oversized, false);

    assert!(
        matches!(result, Err(AuditError::RecordTooLong { .. })),
        "{result:?}"
    );
    log.append(&event(2), false).unwrap();
    let summary = verify_bytes(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(summary.records, 2);
}

#[test]
fn failed_write_stops_appends() {
    // Writes to /dev/full fail with ENOSPC, and a character device cannot be
    // truncated, so the failed write cannot be undone.
    let path = Path::new("/dev/full");
    if !path.exists() {
        return;
    }
    let log = AuditLog::open(path).unwrap();

    let first = log.append(&event(0), false);
    let second = log.append(&event(1), false);

    assert!(matches!(first, Err(AuditError::Write { .. })), "{first:?}");
    assert!(
        matches!(second, Err(AuditError::Unusable { .. })),
        "{second:?}"
    );
    assert_eq!(log.head().seq, 0);
}

#[test]
fn concurrent_appends_form_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = Arc::new(AuditLog::open(&path).unwrap());

    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for index in 0..50 {
                    log.append(&event(thread + index), index.is_multiple_of(10))
                        .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }

    let summary = verify_bytes(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(summary.records, 400);
    assert_eq!(summary.last_hash, log.head().hash);
}

#[test]
fn read_error_is_not_break() {
    struct FailingReader;
    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("injected read failure"))
        }
    }

    let result = verify(io::BufReader::new(FailingReader));

    assert!(
        matches!(result, Err(VerifyError::Read { line: 1, .. })),
        "{result:?}"
    );
}
