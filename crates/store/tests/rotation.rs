//! Master key rotation, including a crash after every step of the protocol.

#![allow(clippy::unwrap_used)] // Test helpers unwrap: a panic is a test failure.

mod common;

use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use common::{create_database, key, key_opens, record_ids};
use ravelin_store::rotation::{recover, rotate, KeyFiles, Recovery, RotationError, RotationStep};
use ravelin_store::{MasterKey, Store, StoreError};

const OLD: u8 = 0x11;
const NEW: u8 = 0x22;
const RECORDS: usize = 300;

struct DataDir {
    _dir: tempfile::TempDir,
    database: PathBuf,
    key_files: KeyFiles,
}

/// Creates a database of `RECORDS` records keyed with `OLD`, and a key file that
/// contains `OLD`.
fn data_dir() -> DataDir {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("ravelin.db");
    create_database(&database, &key(OLD), RECORDS);
    let key_files = KeyFiles::new(dir.path().join("master.key"));
    key(OLD).write_new_file(key_files.current()).unwrap();
    DataDir {
        _dir: dir,
        database,
        key_files,
    }
}

fn rotate_until(data: &DataDir, stop_after: Option<RotationStep>) -> Result<(), RotationError> {
    rotate(
        &data.database,
        Some(&data.key_files),
        &key(OLD),
        &key(NEW),
        &mut |_| {},
        &mut |step| {
            if Some(step) == stop_after {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
}

fn copy_path(database: &Path) -> PathBuf {
    PathBuf::from(format!("{}.rotating", database.display()))
}

fn key_in(path: &Path) -> MasterKey {
    MasterKey::read_file(path).unwrap()
}

/// Checks that the master key file opens the database with every record.
fn assert_settled(data: &DataDir) {
    assert!(!data.key_files.pending().exists());
    assert!(!copy_path(&data.database).exists());
    let store = Store::open(&data.database, &key_in(data.key_files.current())).unwrap();
    assert_eq!(record_ids(&store).len(), RECORDS);
    store.check_integrity().unwrap();
    assert!(store.read_checkpoint(common::COLLECTION).unwrap().is_some());
}

#[test]
fn rotation_round_trip() {
    let data = data_dir();
    rotate_until(&data, None).unwrap();

    assert!(key_in(data.key_files.current()).same_as(&key(NEW)));
    assert!(key_in(&data.key_files.previous()).same_as(&key(OLD)));
    assert!(key_opens(&data.database, NEW));
    assert!(!key_opens(&data.database, OLD));
    assert_eq!(
        recover(&data.database, Some(&data.key_files)).unwrap(),
        Recovery::NothingPending
    );
    assert_settled(&data);
}

#[test]
fn interrupted_rotation_settles_after_every_step() {
    for stop_after in RotationStep::ALL {
        let data = data_dir();
        let result = rotate_until(&data, Some(stop_after));
        assert!(
            matches!(result, Err(RotationError::Interrupted(step)) if step == stop_after),
            "{stop_after:?}: {result:?}"
        );

        // Exactly one key opens the database: the new one from the rename on.
        let committed = matches!(
            stop_after,
            RotationStep::DatabaseReplaced | RotationStep::KeyFileReplaced
        );
        assert_eq!(key_opens(&data.database, NEW), committed, "{stop_after:?}");
        assert_eq!(key_opens(&data.database, OLD), !committed, "{stop_after:?}");

        let expected = match stop_after {
            RotationStep::KeyFileReplaced => Recovery::NothingPending,
            RotationStep::DatabaseReplaced => Recovery::Completed,
            _ => Recovery::RolledBack,
        };
        let recovery = recover(&data.database, Some(&data.key_files)).unwrap();
        assert_eq!(recovery, expected, "{stop_after:?}");
        let current = if committed { NEW } else { OLD };
        assert!(
            key_in(data.key_files.current()).same_as(&key(current)),
            "{stop_after:?}"
        );
        assert_settled(&data);

        // The next rotation starts from a clean state.
        let next = key(0x33);
        rotate(
            &data.database,
            Some(&data.key_files),
            &key(current),
            &next,
            &mut |_| {},
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap();
        assert!(key_opens(&data.database, 0x33), "{stop_after:?}");
        assert_settled(&data);
    }
}

#[test]
fn partial_copy_removed_on_recovery() {
    let data = data_dir();
    let result = rotate_until(&data, Some(RotationStep::PendingKeyWritten));
    assert!(matches!(result, Err(RotationError::Interrupted(_))));
    // A crash in the middle of the copy leaves a truncated file.
    fs::write(copy_path(&data.database), b"SQLite format 3\0 partial").unwrap();

    let recovery = recover(&data.database, Some(&data.key_files)).unwrap();
    assert_eq!(recovery, Recovery::RolledBack);
    assert!(key_opens(&data.database, OLD));
    assert_settled(&data);
}

#[test]
fn rotation_without_key_files() {
    let data = data_dir();
    let result = rotate(
        &data.database,
        None,
        &key(OLD),
        &key(NEW),
        &mut |_| {},
        &mut |step| {
            if step == RotationStep::CopyVerified {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    assert!(matches!(result, Err(RotationError::Interrupted(_))));
    assert!(!data.key_files.pending().exists());
    assert!(key_opens(&data.database, OLD));
    assert_eq!(
        recover(&data.database, None).unwrap(),
        Recovery::RemovedStaleCopy
    );

    rotate(
        &data.database,
        None,
        &key(OLD),
        &key(NEW),
        &mut |_| {},
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap();
    assert!(key_opens(&data.database, NEW));
    assert!(!key_opens(&data.database, OLD));
    // The key file is not the rotation's to change without key files.
    assert!(key_in(data.key_files.current()).same_as(&key(OLD)));
    assert!(!data.key_files.previous().exists());
}

#[test]
fn same_key_rejected() {
    let data = data_dir();
    let result = rotate(
        &data.database,
        Some(&data.key_files),
        &key(OLD),
        &key(OLD),
        &mut |_| {},
        &mut |_| ControlFlow::Continue(()),
    );
    assert!(matches!(result, Err(RotationError::SameKey)), "{result:?}");
    assert!(!data.key_files.pending().exists());
}

#[test]
fn wrong_old_key_changes_nothing() {
    let data = data_dir();
    let before = fs::read(&data.database).unwrap();
    let result = rotate(
        &data.database,
        Some(&data.key_files),
        &key(0x44),
        &key(NEW),
        &mut |_| {},
        &mut |_| ControlFlow::Continue(()),
    );
    assert!(
        matches!(
            result,
            Err(RotationError::Store(StoreError::WrongKey { .. }))
        ),
        "{result:?}"
    );
    assert!(!data.key_files.pending().exists());
    assert!(!copy_path(&data.database).exists());
    assert_eq!(fs::read(&data.database).unwrap(), before);
}

#[test]
fn pending_rotation_blocks_a_new_one() {
    let data = data_dir();
    key(NEW).write_new_file(&data.key_files.pending()).unwrap();
    let result = rotate(
        &data.database,
        Some(&data.key_files),
        &key(OLD),
        &key(0x33),
        &mut |_| {},
        &mut |_| ControlFlow::Continue(()),
    );
    assert!(
        matches!(result, Err(RotationError::Pending { .. })),
        "{result:?}"
    );
}

#[test]
fn neither_key_opens_is_an_error() {
    let data = data_dir();
    fs::remove_file(data.key_files.current()).unwrap();
    key(0x55).write_new_file(data.key_files.current()).unwrap();
    key(0x66).write_new_file(&data.key_files.pending()).unwrap();

    let result = recover(&data.database, Some(&data.key_files));
    assert!(
        matches!(result, Err(RotationError::NeitherKeyOpens { .. })),
        "{result:?}"
    );
    // Nothing is removed when neither key opens the database.
    assert!(data.key_files.pending().exists());
    assert!(key_opens(&data.database, OLD));
}
