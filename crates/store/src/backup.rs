//! Online backups of the database, and restoring one in place of the database.
//!
//! A backup is a directory with two files:
//!
//! - `ravelin.db`: a consistent copy of the database as of one moment, taken while the
//!   server keeps serving writes (see the `copy` module), encrypted like the database
//!   with the master key or with a key given for the backup. It is a single file in the
//!   rollback journal mode.
//! - `manifest.json`: what a restore checks the copy against, written last, so a
//!   backup without it is incomplete. It never contains a key.
//!
//! ```json
//! {
//!   "format": "ravelin-backup",
//!   "format_version": 1,
//!   "created_at": "2026-01-31T12:00:00Z",
//!   "ravelin_version": "0.1.0",
//!   "schema_version": 3,
//!   "last_seq": 1234,
//!   "row_counts": { "collections": 2, "records": 1000, "...": 0 },
//!   "database": { "file": "ravelin.db", "bytes": 4194304, "sha256": "…" }
//! }
//! ```
//!
//! [`restore`] checks the manifest's SHA-256 and size, that the key opens the copy,
//! `PRAGMA cipher_integrity_check` and `PRAGMA integrity_check`, and the row counts,
//! all before it writes anything next to the database. It then copies the backup into
//! `D.restoring` under the data directory's master key, links the current database to
//! a name that keeps it aside, and renames the copy over `D`. The rename is atomic, so
//! a crash leaves either the old database or the restored one at `D`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::copy::{
    check_copy, check_with_progress, copy_snapshot, meta_value, open_keyed, release_wal,
    remove_durably, rename_durably, sha256_file, sync_file, sync_parent, table_counts, with_suffix,
    Progress,
};
use crate::db::{IntegrityCheck, StoreError, SCHEMA_VERSION};
use crate::key::MasterKey;

/// The database file's name inside a backup directory.
pub const BACKUP_DATABASE_FILE: &str = "ravelin.db";
/// The manifest's name inside a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The `format` field of every manifest.
pub const FORMAT: &str = "ravelin-backup";
/// The manifest format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The suffix of the copy that [`restore`] renames over the database.
pub const RESTORE_SUFFIX: &str = ".restoring";
/// The largest manifest [`read_manifest`] accepts.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// The manifest of a backup. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub ravelin_version: String,
    pub schema_version: i64,
    /// The sequence number of the last record write in the copy.
    pub last_seq: i64,
    /// Rows of each table of the copy, by table name.
    pub row_counts: BTreeMap<String, i64>,
    pub database: DatabaseFile,
}

/// The database file of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFile {
    /// Its name inside the backup directory: always [`BACKUP_DATABASE_FILE`].
    pub file: String,
    pub bytes: u64,
    /// SHA-256 of the file, lowercase hexadecimal.
    pub sha256: String,
}

/// The outcome of [`restore`].
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    /// The new name of the database that the backup replaced, if there was one.
    pub replaced: Option<PathBuf>,
}

/// An error making, checking or restoring a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the backup destination {path} already exists and is not an empty directory; choose a new path")]
    DestinationExists { path: PathBuf },
    #[error("{path} is not a Ravelin backup: {detail}")]
    NotABackup { path: PathBuf, detail: String },
    #[error("the key does not open the backup {path}; give the key it was made with (the master key at the time, or the key given with --backup-key-file)")]
    WrongBackupKey { path: PathBuf },
    #[error("the backup {path} is damaged: {detail}; nothing was replaced")]
    Damaged { path: PathBuf, detail: String },
    #[error("the backup {path} has schema version {found}, newer than this build supports ({supported}); restore it with a newer Ravelin")]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("the database {path} does not open with the data directory's master key, so it cannot be set aside safely; move {path} and any {path}-wal and {path}-shm out of the way yourself, then restore again")]
    CurrentDatabaseUnreadable { path: PathBuf },
    #[error(
        "{path}-wal exists without its database {path}; move it out of the way, then restore again"
    )]
    OrphanWal { path: PathBuf },
}

/// Copies the database at `database`, opened with `key`, into the new backup directory
/// `destination`, encrypted with `backup_key`, and writes its manifest. Runs beside a
/// serving server. On failure the partial backup is removed.
pub fn create_backup(
    database: &Path,
    key: &MasterKey,
    destination: &Path,
    backup_key: &MasterKey,
    progress: &mut dyn FnMut(Progress),
) -> Result<Manifest, BackupError> {
    let source = open_keyed(database, key, true)?;
    create_destination(destination)?;
    let written = write_backup(&source, destination, backup_key, progress);
    if written.is_err() {
        let _ = fs::remove_file(destination.join(MANIFEST_FILE));
        let _ = fs::remove_file(destination.join(BACKUP_DATABASE_FILE));
        let _ = fs::remove_dir(destination);
    }
    written
}

fn write_backup(
    source: &rusqlite::Connection,
    destination: &Path,
    backup_key: &MasterKey,
    progress: &mut dyn FnMut(Progress),
) -> Result<Manifest, BackupError> {
    let copy = destination.join(BACKUP_DATABASE_FILE);
    copy_snapshot(source, &copy, backup_key, progress)?;

    let copied = open_keyed(&copy, backup_key, true)?;
    check_with_progress(&copied, &copy, IntegrityCheck::Full, progress)?;
    let row_counts = table_counts(&copied)?;
    let schema_version = meta_value(&copied, "schema_version")?.unwrap_or(0);
    let last_seq = meta_value(&copied, "last_seq")?.unwrap_or(0);
    drop(copied);

    let (sha256, bytes) = sha256_file(&copy, progress)?;
    let manifest = Manifest {
        format: FORMAT.to_string(),
        format_version: FORMAT_VERSION,
        created_at: now_rfc3339(),
        ravelin_version: env!("CARGO_PKG_VERSION").to_string(),
        schema_version,
        last_seq,
        row_counts,
        database: DatabaseFile {
            file: BACKUP_DATABASE_FILE.to_string(),
            bytes,
            sha256,
        },
    };
    write_manifest(destination, &manifest)?;
    Ok(manifest)
}

/// Checks a backup directory without changing anything: the manifest, the file's size
/// and SHA-256, that `backup_key` opens it, the page HMACs, SQLite's integrity check,
/// the schema version and the row counts.
pub fn verify_backup(
    source: &Path,
    backup_key: &MasterKey,
    progress: &mut dyn FnMut(Progress),
) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(source)?;
    let copy = source.join(&manifest.database.file);
    let damaged = |detail: String| BackupError::Damaged {
        path: source.to_path_buf(),
        detail,
    };

    let (sha256, bytes) = sha256_file(&copy, progress)?;
    if bytes != manifest.database.bytes {
        return Err(damaged(format!(
            "{} has {bytes} bytes, but the manifest records {}",
            copy.display(),
            manifest.database.bytes
        )));
    }
    if sha256 != manifest.database.sha256 {
        return Err(damaged(format!(
            "the SHA-256 of {} differs from the manifest's",
            copy.display()
        )));
    }

    let connection = match open_keyed(&copy, backup_key, true) {
        Ok(connection) => connection,
        Err(StoreError::WrongKey { .. }) => {
            return Err(BackupError::WrongBackupKey {
                path: source.to_path_buf(),
            })
        }
        Err(error) => return Err(error.into()),
    };
    check_with_progress(&connection, &copy, IntegrityCheck::Full, progress).map_err(|error| {
        match error {
            StoreError::Corrupt { detail, .. } => damaged(detail),
            // SQLite stops a check with this error when a page is unreadable.
            StoreError::Sqlite(error)
                if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) =>
            {
                damaged(error.to_string())
            }
            other => other.into(),
        }
    })?;
    let schema_version = meta_value(&connection, "schema_version")?.unwrap_or(0);
    if schema_version > SCHEMA_VERSION {
        return Err(BackupError::TooNew {
            path: source.to_path_buf(),
            found: schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    let row_counts = table_counts(&connection)?;
    if row_counts != manifest.row_counts || schema_version != manifest.schema_version {
        return Err(damaged(
            "its tables or schema version differ from the manifest".to_string(),
        ));
    }
    Ok(manifest)
}

/// Replaces the database at `database` with the backup in `source`, after
/// [`verify_backup`] passes. The restored database is encrypted with `key`, the data
/// directory's master key; `backup_key` opens the backup. An existing database must
/// open with `key`; it is kept beside the new one as `D.replaced-<time>`.
///
/// The caller has taken [`crate::DatabaseLock::for_replacement`].
pub fn restore(
    source: &Path,
    backup_key: &MasterKey,
    database: &Path,
    key: &MasterKey,
    progress: &mut dyn FnMut(Progress),
) -> Result<Restored, BackupError> {
    let manifest = verify_backup(source, backup_key, progress)?;

    // Check that the current database can be set aside before copying anything.
    let current = if database.exists() {
        match open_keyed(database, key, false) {
            Ok(connection) => Some(connection),
            Err(StoreError::WrongKey { .. }) => {
                return Err(BackupError::CurrentDatabaseUnreadable {
                    path: database.to_path_buf(),
                })
            }
            Err(error) => return Err(error.into()),
        }
    } else if with_suffix(database, "-wal").exists() {
        return Err(BackupError::OrphanWal {
            path: database.to_path_buf(),
        });
    } else {
        None
    };

    let staged = with_suffix(database, RESTORE_SUFFIX);
    remove_durably(&staged)?;
    let backup = open_keyed(&source.join(&manifest.database.file), backup_key, true)?;
    copy_snapshot(&backup, &staged, key, progress)?;
    drop(backup);
    let swapped = check_restored(&staged, key, &manifest, source, progress)
        .and_then(|()| swap_in(&staged, database, current));
    match swapped {
        Ok(replaced) => Ok(Restored { manifest, replaced }),
        Err(error) => {
            let _ = remove_durably(&staged);
            Err(error)
        }
    }
}

/// Removes the copy that an interrupted [`restore`] left beside the database; returns
/// whether there was one. The caller has taken a lock that keeps restores out.
pub fn discard_interrupted_restore(database: &Path) -> Result<bool, StoreError> {
    let staged = with_suffix(database, RESTORE_SUFFIX);
    if !staged.exists() {
        return Ok(false);
    }
    remove_durably(&staged)?;
    Ok(true)
}

/// Checks the restored copy against the manifest before it replaces anything.
fn check_restored(
    staged: &Path,
    key: &MasterKey,
    manifest: &Manifest,
    source: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), BackupError> {
    let expected = &manifest.row_counts;
    match check_copy(staged, key, IntegrityCheck::Quick, expected, progress)? {
        None => Ok(()),
        Some(mismatch) => Err(BackupError::Damaged {
            path: source.to_path_buf(),
            detail: format!("the restored copy differs from the manifest: {mismatch}"),
        }),
    }
}

/// Keeps the current database aside under a second name, then renames the checked
/// copy over it. Returns the name the old database keeps.
fn swap_in(
    staged: &Path,
    database: &Path,
    current: Option<rusqlite::Connection>,
) -> Result<Option<PathBuf>, BackupError> {
    let replaced = match current {
        Some(connection) => {
            release_wal(connection, database)?;
            let aside = keep_aside(database)?;
            sync_parent(&aside)?;
            Some(aside)
        }
        None => None,
    };
    rename_durably(staged, database)?;
    Ok(replaced)
}

/// Reads and checks the manifest of the backup directory `source`.
pub fn read_manifest(source: &Path) -> Result<Manifest, BackupError> {
    let not_a_backup = |detail: String| BackupError::NotABackup {
        path: source.to_path_buf(),
        detail,
    };
    let path = source.join(MANIFEST_FILE);
    let text = match read_bounded(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(not_a_backup(format!(
                "{} is missing, so the backup is incomplete or this is not a backup directory",
                path.display()
            )))
        }
        Err(error) => {
            return Err(not_a_backup(format!(
                "cannot read {}: {error}",
                path.display()
            )))
        }
    };
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|error| not_a_backup(format!("invalid {}: {error}", path.display())))?;
    if manifest.format != FORMAT {
        return Err(not_a_backup(format!(
            "the manifest's format is {:?}, expected {FORMAT:?}",
            manifest.format
        )));
    }
    if manifest.format_version != FORMAT_VERSION {
        return Err(not_a_backup(format!(
            "the manifest's format version is {}, and this build reads version {FORMAT_VERSION}",
            manifest.format_version
        )));
    }
    // The file name is the one fixed name, never a path the manifest could choose.
    if manifest.database.file != BACKUP_DATABASE_FILE {
        return Err(not_a_backup(format!(
            "the manifest names the database file {:?}, expected {BACKUP_DATABASE_FILE:?}",
            manifest.database.file
        )));
    }
    Ok(manifest)
}

fn read_bounded(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    fs::File::open(path)?
        .take(MAX_MANIFEST_BYTES)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Creates the backup directory with mode 0700, or accepts an existing empty one.
fn create_destination(destination: &Path) -> Result<(), BackupError> {
    let exists = || BackupError::DestinationExists {
        path: destination.to_path_buf(),
    };
    match fs::DirBuilder::new().mode(0o700).create(destination) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            let mut entries = fs::read_dir(destination).map_err(|_| exists())?;
            if entries.next().is_some() {
                return Err(exists());
            }
        }
        Err(source) => {
            return Err(StoreError::Io {
                action: "create the backup directory",
                path: destination.to_path_buf(),
                source,
            }
            .into())
        }
    }
    sync_parent(destination)?;
    Ok(())
}

/// Writes the manifest through a temporary file and a rename, so a manifest is either
/// complete or absent.
fn write_manifest(destination: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let path = destination.join(MANIFEST_FILE);
    let staged = with_suffix(&path, ".tmp");
    let mut text = serde_json::to_string_pretty(manifest)
        .map_err(|error| StoreError::BadValue(format!("cannot encode the manifest: {error}")))?;
    text.push('\n');
    fs::write(&staged, text).map_err(|source| StoreError::Io {
        action: "write",
        path: staged.clone(),
        source,
    })?;
    sync_file(&staged)?;
    rename_durably(&staged, &path)?;
    Ok(())
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Links the database to a new name `D.replaced-<time>`, so it stays on disk after
/// the rename over `D`. Returns the new name.
fn keep_aside(database: &Path) -> Result<PathBuf, StoreError> {
    let stamp = compact_now();
    let mut last_error = None;
    // Two restores within one second get distinct names.
    for attempt in 1..=100 {
        let suffix = match attempt {
            1 => format!(".replaced-{stamp}"),
            _ => format!(".replaced-{stamp}-{attempt}"),
        };
        let aside = with_suffix(database, &suffix);
        match fs::hard_link(database, &aside) {
            Ok(()) => return Ok(aside),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => last_error = Some(error),
            Err(source) => {
                return Err(StoreError::Io {
                    action: "keep the current database aside as",
                    path: aside,
                    source,
                })
            }
        }
    }
    Err(StoreError::Io {
        action: "keep the current database aside beside",
        path: database.to_path_buf(),
        source: last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)),
    })
}

/// Formats the current UTC time as `20260131T120000Z`, for file names.
fn compact_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}
