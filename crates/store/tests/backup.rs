//! Online backups and restore: round trips, concurrent writes, wrong keys and damage.

#![allow(clippy::unwrap_used)] // Test helpers unwrap: a panic is a test failure.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{create_database, file_contains, key, key_opens, record_ids, write_records};
use ravelin_store::backup::{
    create_backup, read_manifest, restore, verify_backup, BackupError, BACKUP_DATABASE_FILE,
    FORMAT, FORMAT_VERSION, MANIFEST_FILE,
};
use ravelin_store::{Store, Task};

const MASTER: u8 = 0x11;
const RECORDS: usize = 400;

fn restoring_path(database: &Path) -> PathBuf {
    PathBuf::from(format!("{}.restoring", database.display()))
}

/// Returns every file name in `dir` that starts with `prefix`.
fn names_starting(dir: &Path, prefix: &str) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

#[test]
fn backup_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("source.db");
    let _server = create_database(&database, &key(MASTER), RECORDS);
    let backup = dir.path().join("backup");

    let mut tasks = Vec::new();
    let manifest = create_backup(&database, &key(MASTER), &backup, &key(MASTER), &mut |p| {
        if tasks.last() != Some(&p.task) {
            tasks.push(p.task);
        }
    })
    .unwrap();
    assert_eq!(tasks, [Task::Copy, Task::Check, Task::Hash]);

    assert_eq!(manifest.format, FORMAT);
    assert_eq!(manifest.format_version, FORMAT_VERSION);
    assert_eq!(manifest.schema_version, 3);
    assert_eq!(manifest.row_counts["records"], RECORDS as i64);
    assert_eq!(manifest.row_counts["collections"], 1);
    assert_eq!(manifest.row_counts["index_checkpoints"], 1);
    assert_eq!(manifest.last_seq, 1);
    assert_eq!(read_manifest(&backup).unwrap(), manifest);
    let copy = backup.join(BACKUP_DATABASE_FILE);
    assert_eq!(fs::metadata(&copy).unwrap().len(), manifest.database.bytes);

    // Encrypted: no plaintext, and only the key opens it. The manifest contains no key.
    assert!(!file_contains(&copy, b"plaintext-document-00007"));
    assert!(!file_contains(&copy, b"record-00007"));
    assert!(key_opens(&copy, MASTER));
    assert!(!file_contains(&backup.join(MANIFEST_FILE), b"1111111111"));

    let restored = dir.path().join("restored.db");
    let outcome = restore(&backup, &key(MASTER), &restored, &key(MASTER), &mut |_| {}).unwrap();
    assert!(outcome.replaced.is_none());
    let store = Store::open(&restored, &key(MASTER)).unwrap();
    assert_eq!(record_ids(&store).len(), RECORDS);
    let checkpoint = store.read_checkpoint(common::COLLECTION).unwrap().unwrap();
    assert_eq!(checkpoint.bytes, b"index checkpoint bytes");
    assert!(!restoring_path(&restored).exists());
}

#[test]
fn backup_is_the_snapshot_while_writes_continue() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("source.db");
    let mut server = create_database(&database, &key(MASTER), RECORDS);
    // Large enough for several copy steps of 4 MiB.
    const SNAPSHOT: usize = 60_000;
    write_records(&mut server, RECORDS..SNAPSHOT);

    // The "server" connection writes a batch at every progress report of the copy.
    let mut next = SNAPSHOT;
    let backup = dir.path().join("backup");
    let manifest = create_backup(&database, &key(MASTER), &backup, &key(MASTER), &mut |p| {
        if p.task == Task::Copy {
            write_records(&mut server, next..next + 10);
            next += 10;
        }
    })
    .unwrap();
    assert!(
        next >= SNAPSHOT + 20,
        "the copy took only {} steps",
        (next - SNAPSHOT) / 10
    );

    assert_eq!(manifest.row_counts["records"], SNAPSHOT as i64);
    let restored = dir.path().join("restored.db");
    restore(&backup, &key(MASTER), &restored, &key(MASTER), &mut |_| {}).unwrap();
    let store = Store::open(&restored, &key(MASTER)).unwrap();
    let ids = record_ids(&store);
    assert_eq!(ids.len(), SNAPSHOT);
    assert_eq!(ids[SNAPSHOT - 1], format!("record-{:05}", SNAPSHOT - 1));
    assert_eq!(record_ids(&server).len(), next);
}

#[test]
fn backup_key_differs_from_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("source.db");
    drop(create_database(&database, &key(MASTER), RECORDS));
    let backup = dir.path().join("backup");
    create_backup(&database, &key(MASTER), &backup, &key(0x22), &mut |_| {}).unwrap();
    let copy = backup.join(BACKUP_DATABASE_FILE);
    assert!(key_opens(&copy, 0x22));
    assert!(!key_opens(&copy, MASTER));

    // Restore over an existing database with another master key.
    let target = dir.path().join("target.db");
    let mut other = create_database(&target, &key(0x33), 0);
    write_records(&mut other, 0..5);
    drop(other);
    let outcome = restore(&backup, &key(0x22), &target, &key(0x33), &mut |_| {}).unwrap();

    assert!(key_opens(&target, 0x33));
    let store = Store::open(&target, &key(0x33)).unwrap();
    assert_eq!(record_ids(&store).len(), RECORDS);
    let aside = outcome.replaced.unwrap();
    let kept = Store::open(&aside, &key(0x33)).unwrap();
    assert_eq!(record_ids(&kept).len(), 5);
}

#[test]
fn wrong_key_at_restore_replaces_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("source.db");
    drop(create_database(&database, &key(MASTER), RECORDS));
    let backup = dir.path().join("backup");
    create_backup(&database, &key(MASTER), &backup, &key(MASTER), &mut |_| {}).unwrap();

    let target = dir.path().join("target.db");
    drop(create_database(&target, &key(0x33), 3));
    let before = fs::read(&target).unwrap();
    let error = restore(&backup, &key(0x44), &target, &key(0x33), &mut |_| {}).unwrap_err();

    assert!(
        matches!(error, BackupError::WrongBackupKey { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("key does not open the backup"),
        "{message}"
    );
    assert!(message.contains("--backup-key-file"), "{message}");
    assert_eq!(fs::read(&target).unwrap(), before);
    assert!(!restoring_path(&target).exists());
    assert!(names_starting(dir.path(), "target.db.replaced").is_empty());
}

#[test]
fn damaged_backup_replaces_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("source.db");
    drop(create_database(&database, &key(MASTER), RECORDS));
    let backup = dir.path().join("backup");
    create_backup(&database, &key(MASTER), &backup, &key(MASTER), &mut |_| {}).unwrap();
    let copy = backup.join(BACKUP_DATABASE_FILE);
    let mut bytes = fs::read(&copy).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&copy, bytes).unwrap();

    let target = dir.path().join("target.db");
    drop(create_database(&target, &key(MASTER), 3));
    let before = fs::read(&target).unwrap();
    let error = restore(&backup, &key(MASTER), &target, &key(MASTER), &mut |_| {}).unwrap_err();
    assert!(matches!(error, BackupError::Damaged { .. }), "{error:?}");
    assert!(error.to_string().contains("SHA-256"), "{error}");
    assert_eq!(fs::read(&target).unwrap(), before);
    assert!(!restoring_path(&target).exists());
}

#[test]
fn damage_behind_a_matching_manifest_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("source.db");
    drop(create_database(&database, &key(MASTER), RECORDS));
    let backup = dir.path().join("backup");
    let mut manifest =
        create_backup(&database, &key(MASTER), &backup, &key(MASTER), &mut |_| {}).unwrap();

    // Change a page and write a manifest that matches the changed file, as an
    // attacker without the key could: the page HMAC still fails.
    let copy = backup.join(BACKUP_DATABASE_FILE);
    let mut bytes = fs::read(&copy).unwrap();
    let last_page = bytes.len() - 4096;
    bytes[last_page + 100] ^= 0x01;
    fs::write(&copy, &bytes).unwrap();
    manifest.database.sha256 = ring::digest::digest(&ring::digest::SHA256, &bytes)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    fs::write(
        backup.join(MANIFEST_FILE),
        serde_json::to_string(&manifest).unwrap(),
    )
    .unwrap();

    let error = verify_backup(&backup, &key(MASTER), &mut |_| {}).unwrap_err();
    assert!(matches!(error, BackupError::Damaged { .. }), "{error:?}");
}

#[test]
fn backup_without_manifest_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("source.db");
    drop(create_database(&database, &key(MASTER), 3));
    let backup = dir.path().join("backup");
    create_backup(&database, &key(MASTER), &backup, &key(MASTER), &mut |_| {}).unwrap();
    fs::remove_file(backup.join(MANIFEST_FILE)).unwrap();

    let error = verify_backup(&backup, &key(MASTER), &mut |_| {}).unwrap_err();
    assert!(matches!(error, BackupError::NotABackup { .. }), "{error:?}");
    assert!(error.to_string().contains("incomplete"), "{error}");
}

#[test]
fn backup_destination_must_be_new() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("source.db");
    drop(create_database(&database, &key(MASTER), 3));
    let backup = dir.path().join("backup");
    fs::create_dir(&backup).unwrap();
    fs::write(backup.join("keep"), b"keep").unwrap();

    let error =
        create_backup(&database, &key(MASTER), &backup, &key(MASTER), &mut |_| {}).unwrap_err();
    assert!(
        matches!(error, BackupError::DestinationExists { .. }),
        "{error:?}"
    );
    assert_eq!(fs::read(backup.join("keep")).unwrap(), b"keep");
}

#[test]
fn unreadable_current_database_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("source.db");
    drop(create_database(&database, &key(MASTER), 3));
    let backup = dir.path().join("backup");
    create_backup(&database, &key(MASTER), &backup, &key(MASTER), &mut |_| {}).unwrap();

    // The target database is under a key other than the one restore is given.
    let target = dir.path().join("target.db");
    drop(create_database(&target, &key(0x33), 3));
    let before = fs::read(&target).unwrap();
    let error = restore(&backup, &key(MASTER), &target, &key(MASTER), &mut |_| {}).unwrap_err();
    assert!(
        matches!(error, BackupError::CurrentDatabaseUnreadable { .. }),
        "{error:?}"
    );
    assert_eq!(fs::read(&target).unwrap(), before);
    assert!(!restoring_path(&target).exists());
}
