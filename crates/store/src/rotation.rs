//! Master key rotation: re-encrypting the database with a new key, crash-safe.
//!
//! SQLCipher's `PRAGMA rekey` rewrites every page of the live file in one transaction.
//! In WAL mode those pages first land in the log under the new key while the database
//! file keeps pages under the old one, so what a crash in the middle leaves depends on
//! SQLCipher internals. The release notes of SQLCipher 5.0.0-beta.1 list rekey for
//! WAL databases with concurrent connections as new, and this build bundles 4.6.1.
//! Instead, the rotation writes a complete copy under the new key beside the database
//! and replaces the database with one `rename(2)`. Each file on disk is then entirely
//! under one key, and the rename is the single commit point.
//!
//! With the key in a file `K` (for example `master.key`) and the database `D`
//! (`db/ravelin.db`), [`rotate`] takes these steps, flushing each file and its
//! directory before the next step:
//!
//! 1. Write the new key to `K.new`.
//! 2. Copy `D` into `D.rotating`, encrypted with the new key.
//! 3. Check the copy: the new key opens it, every page's HMAC and SQLite's integrity
//!    check pass, and every table has as many rows as in `D`.
//! 4. Checkpoint `D` and switch it to the rollback journal, so no `D-wal` remains that
//!    would be replayed into the replacement.
//! 5. Save the old key as `K.old`, replacing the one an earlier rotation saved.
//! 6. Rename `D.rotating` to `D`: from here on the database opens with the new key.
//! 7. Rename `K.new` to `K`.
//!
//! While `K.new` exists, a rotation is pending and [`recover`] settles it. If the new
//! key opens `D`, step 6 happened and recovery finishes step 7. Otherwise the old key
//! opens `D` and recovery removes `D.rotating` and `K.new`. So after a crash at any
//! point, the database opens with exactly one of the two keys, and the key files show
//! which. The server runs [`recover`] at startup, and `ravelin key rotate` before it
//! starts.
//!
//! When the key comes from a file descriptor there are no key files to update. The
//! steps are the same without 1, 5 and 7. After a crash the database opens with the
//! old key before step 6 and with the new key from then on.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::copy::{
    check_copy, copy_snapshot, open_keyed, release_wal, remove_durably, rename_durably,
    sync_parent, table_counts, with_suffix, Progress,
};
use crate::db::{IntegrityCheck, StoreError};
use crate::key::{KeyError, MasterKey};

/// The suffix of the re-encrypted copy that replaces the database.
pub const COPY_SUFFIX: &str = ".rotating";

/// The master key file and the two files that rotation keeps beside it.
#[derive(Clone, Debug)]
pub struct KeyFiles {
    current: PathBuf,
}

impl KeyFiles {
    /// Names the key files that belong to the master key file `current`.
    pub fn new(current: impl Into<PathBuf>) -> Self {
        KeyFiles {
            current: current.into(),
        }
    }

    /// Returns the master key file, which the server reads.
    pub fn current(&self) -> &Path {
        &self.current
    }

    /// Returns the file of a pending rotation's new key, `K.new`.
    pub fn pending(&self) -> PathBuf {
        with_suffix(&self.current, ".new")
    }

    /// Returns the file of the key before the last rotation, `K.old`. Backups made
    /// before that rotation need it.
    pub fn previous(&self) -> PathBuf {
        with_suffix(&self.current, ".old")
    }
}

/// The steps of [`rotate`], in order. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationStep {
    PendingKeyWritten,
    CopyWritten,
    CopyVerified,
    DatabaseReleased,
    PreviousKeySaved,
    DatabaseReplaced,
    KeyFileReplaced,
}

impl RotationStep {
    /// Every step, in order.
    pub const ALL: [RotationStep; 7] = [
        RotationStep::PendingKeyWritten,
        RotationStep::CopyWritten,
        RotationStep::CopyVerified,
        RotationStep::DatabaseReleased,
        RotationStep::PreviousKeySaved,
        RotationStep::DatabaseReplaced,
        RotationStep::KeyFileReplaced,
    ];
}

/// The outcome of [`recover`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// No rotation was pending.
    NothingPending,
    /// The database already opened with the pending key, so the pending key became
    /// the master key file.
    Completed,
    /// The database still opened with the master key, so the pending key and the
    /// partial copy were removed.
    RolledBack,
    /// A copy that no pending rotation refers to was removed.
    RemovedStaleCopy,
}

/// An error rotating the master key or recovering from an interrupted rotation.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the new master key is the same as the current one; give a different key, or none so that a new one is generated")]
    SameKey,
    #[error("a key rotation is pending ({pending} exists); run `ravelin key rotate` or start the server to settle it first")]
    Pending { pending: PathBuf },
    #[error("the database {database} opens with neither the master key in {current} nor the pending key in {pending}; find the key that encrypted it before changing any of these files")]
    NeitherKeyOpens {
        database: PathBuf,
        current: PathBuf,
        pending: PathBuf,
    },
    #[error("the re-encrypted copy {copy} differs from the database: {detail}")]
    CopyDiffers { copy: PathBuf, detail: String },
    #[error("the key rotation stopped after step {0:?}")]
    Interrupted(RotationStep),
}

/// Re-encrypts the database at `database` with `new_key`, following the protocol in
/// the module documentation. `old_key` must open the database. With `key_files`, the
/// new key ends in the master key file and the old one in `K.old`.
///
/// The caller has taken [`crate::DatabaseLock::for_replacement`] and has run
/// [`recover`].
/// `after_step` runs after each step; tests break there to leave the files as a crash
/// after that step would.
pub fn rotate(
    database: &Path,
    key_files: Option<&KeyFiles>,
    old_key: &MasterKey,
    new_key: &MasterKey,
    progress: &mut dyn FnMut(Progress),
    after_step: &mut dyn FnMut(RotationStep) -> ControlFlow<()>,
) -> Result<(), RotationError> {
    let mut step = |done: RotationStep| match after_step(done) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(RotationError::Interrupted(done)),
    };
    if new_key.same_as(old_key) {
        return Err(RotationError::SameKey);
    }
    if let Some(files) = key_files {
        if files.pending().exists() {
            return Err(RotationError::Pending {
                pending: files.pending(),
            });
        }
    }
    let copy = with_suffix(database, COPY_SUFFIX);
    remove_durably(&copy)?;
    let source = open_keyed(database, old_key, false)?;

    if let Some(files) = key_files {
        new_key.write_new_file(&files.pending())?;
        sync_parent(&files.pending())?;
    }
    step(RotationStep::PendingKeyWritten)?;

    copy_snapshot(&source, &copy, new_key, progress)?;
    step(RotationStep::CopyWritten)?;

    let expected = table_counts(&source)?;
    if let Some(mismatch) = check_copy(&copy, new_key, IntegrityCheck::Full, &expected, progress)? {
        return Err(RotationError::CopyDiffers {
            copy,
            detail: mismatch.to_string(),
        });
    }
    step(RotationStep::CopyVerified)?;

    release_wal(source, database)?;
    step(RotationStep::DatabaseReleased)?;

    if let Some(files) = key_files {
        let staged = with_suffix(&files.previous(), ".tmp");
        remove_durably(&staged)?;
        old_key.write_new_file(&staged)?;
        rename_durably(&staged, &files.previous())?;
    }
    step(RotationStep::PreviousKeySaved)?;

    rename_durably(&copy, database)?;
    step(RotationStep::DatabaseReplaced)?;

    if let Some(files) = key_files {
        rename_durably(&files.pending(), files.current())?;
    }
    step(RotationStep::KeyFileReplaced)?;
    Ok(())
}

/// Settles a rotation that a crash interrupted, as the module documentation
/// describes, and removes a copy that no pending rotation refers to. Without
/// `key_files` (a key from a file descriptor) only the copy is removed.
///
/// The caller has taken [`crate::DatabaseLock::for_server`] or
/// [`crate::DatabaseLock::for_replacement`]. Recovery never replaces the database.
pub fn recover(database: &Path, key_files: Option<&KeyFiles>) -> Result<Recovery, RotationError> {
    let copy = with_suffix(database, COPY_SUFFIX);
    let pending = key_files.map(KeyFiles::pending);
    let (Some(files), Some(pending)) = (key_files, pending.filter(|path| path.exists())) else {
        if copy.exists() {
            remove_durably(&copy)?;
            return Ok(Recovery::RemovedStaleCopy);
        }
        return Ok(Recovery::NothingPending);
    };

    let new_key = MasterKey::read_file(&pending)?;
    if key_opens(database, &new_key)? {
        remove_durably(&copy)?;
        rename_durably(&pending, files.current())?;
        return Ok(Recovery::Completed);
    }
    let current_key = MasterKey::read_file(files.current())?;
    if key_opens(database, &current_key)? {
        remove_durably(&copy)?;
        remove_durably(&pending)?;
        return Ok(Recovery::RolledBack);
    }
    Err(RotationError::NeitherKeyOpens {
        database: database.to_path_buf(),
        current: files.current().to_path_buf(),
        pending,
    })
}

/// Returns whether `key` opens the database, without writing to it.
fn key_opens(database: &Path, key: &MasterKey) -> Result<bool, StoreError> {
    match open_keyed(database, key, true) {
        Ok(_) => Ok(true),
        Err(StoreError::WrongKey { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}
