//! Runs `ravelin audit verify` on audit logs written by `server::audit::AuditLog`.

#![allow(clippy::unwrap_used)] // Test helpers unwrap: a panic is a test failure.

use std::path::Path;
use std::process::{Command, Output};

use server::audit::{AuditEvent, AuditLog, Outcome};

fn event(status: u16) -> AuditEvent<'static> {
    AuditEvent {
        principal: "alice",
        fingerprint: None,
        peer: "192.0.2.7:50412",
        route: "records.query",
        action: Some("read"),
        tenant: Some("default_tenant"),
        database: Some("default_database"),
        collection: Some("notes"),
        outcome: if status == 200 {
            Outcome::Allowed
        } else {
            Outcome::Denied
        },
        status,
        request_id: "4b1c6a52-2f0e-4c55-9d1e-0d6f7f7c2a11",
    }
}

/// Writes three records to `path` and returns the last record's hash.
fn write_log(path: &Path) -> String {
    let log = AuditLog::open(path).unwrap();
    for status in [200, 403, 200] {
        log.append(&event(status), false).unwrap();
    }
    log.head().hash
}

fn run_verify(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ravelin"))
        .args(["audit", "verify"])
        .arg(path)
        .env_remove("RAVELIN_LOG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn verify_intact_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let last_hash = write_log(&path);

    let output = run_verify(&path);

    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!("OK: 3 records, last hash {last_hash}\n")
    );
    assert_eq!(text(&output.stderr), "");
}

#[test]
fn verify_edited_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path);
    let contents = std::fs::read_to_string(&path).unwrap();
    let edited = contents.replacen("\"status\":403", "\"status\":200", 1);
    assert_ne!(edited, contents);
    std::fs::write(&path, edited).unwrap();

    let output = run_verify(&path);

    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "");
    assert_eq!(
        text(&output.stderr),
        format!(
            "{}: record 2 (line 2): hash does not match the record's contents\n",
            path.display()
        )
    );
}

#[test]
fn verify_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.jsonl");

    let output = run_verify(&path);

    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("error: cannot open audit log"),
        "{stderr}"
    );
    assert!(stderr.contains("missing.jsonl"), "{stderr}");
}

#[test]
fn verify_directory_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();

    let output = run_verify(dir.path());

    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("error: cannot"), "{stderr}");
}
