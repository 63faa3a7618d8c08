//! Whole-database operations that backups, restore and key rotation share: copying a
//! consistent snapshot into a new encrypted file, checking a copy, and the file
//! system steps that make a replacement durable.
//!
//! A copy goes through SQLite's online backup API page by page. The source connection
//! keeps one read transaction open for the whole copy. So in WAL mode the copy is the
//! snapshot of the moment it started, other processes keep committing meanwhile, and
//! the backup never restarts. SQLCipher decrypts each page with the source key and the
//! destination connection encrypts it with its own key, so one copy can also change the
//! key. The finished copy is switched to the rollback journal, so it is a single
//! self-contained file with no `-wal` or `-shm` beside it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::db::{apply_key, check_integrity, IntegrityCheck, StoreError};
use crate::key::MasterKey;

/// The work that a [`Progress`] report counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Copying database pages into a new file.
    Copy,
    /// Computing the SHA-256 of a database file.
    Hash,
    /// Checking every page's HMAC and the b-trees. SQLite reports nothing while it
    /// checks, so this task is reported only when it starts and when it ends.
    Check,
}

/// A progress report of a long operation, in bytes of the database file.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub task: Task,
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// Pages copied per step of the backup API: 4 MiB with SQLCipher's 4 KiB pages.
const PAGES_PER_STEP: i32 = 1024;
/// How long a copy waits in all for a destination that reports busy.
const MAX_BUSY_WAIT: Duration = Duration::from_secs(30);
const BUSY_PAUSE: Duration = Duration::from_millis(10);
const HASH_BUFFER_BYTES: usize = 1 << 20;

/// Opens an existing database and checks `key` by reading a page. A read-only
/// connection neither creates nor changes a file.
pub(crate) fn open_keyed(
    path: &Path,
    key: &MasterKey,
    read_only: bool,
) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing {
            path: path.to_path_buf(),
        });
    }
    let access = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let connection = Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    apply_key(&connection, key, path)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    Ok(connection)
}

/// Copies the database that `source` reads into a new file at `destination`, keyed
/// with `key`, as of one read transaction. The file must not exist. On failure the
/// partial file is removed.
pub(crate) fn copy_snapshot(
    source: &Connection,
    destination: &Path,
    key: &MasterKey,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), StoreError> {
    // Mode 0600 from the start, and never over an existing file.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(destination)
        .map_err(|source| StoreError::Io {
            action: "create",
            path: destination.to_path_buf(),
            source,
        })?;
    let copied = copy_into(source, destination, key, progress);
    if copied.is_err() {
        let _ = fs::remove_file(destination);
    }
    copied
}

fn copy_into(
    source: &Connection,
    destination: &Path,
    key: &MasterKey,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), StoreError> {
    let mut target = Connection::open_with_flags(
        destination,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    apply_key(&target, key, destination)?;
    target.pragma_update(None, "synchronous", "FULL")?;

    if !source.is_autocommit() {
        return Err(StoreError::BadValue(
            "a snapshot copy needs a source connection outside any transaction".into(),
        ));
    }
    let page_bytes = page_size(source)?;
    // The read transaction starts with the first read, and pins the snapshot that
    // every step of the copy reads.
    source.execute_batch("BEGIN DEFERRED")?;
    let copied = source
        .query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        .map_err(StoreError::from)
        .and_then(|()| step_backup(source, &mut target, page_bytes, progress));
    let ended = source.execute_batch("COMMIT");
    copied?;
    ended?;

    let mode: String = target.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(StoreError::Corrupt {
            path: destination.to_path_buf(),
            detail: format!("cannot switch the copy to the rollback journal (it is {mode})"),
        });
    }
    target.close().map_err(|(_, error)| error)?;

    sync_file(destination)?;
    sync_parent(destination)
}

fn step_backup(
    source: &Connection,
    target: &mut Connection,
    page_bytes: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), StoreError> {
    let backup = Backup::new(source, target)?;
    let mut busy_since: Option<Instant> = None;
    loop {
        let step = backup.step(PAGES_PER_STEP)?;
        let state = backup.progress();
        let total = u64::try_from(state.pagecount).unwrap_or(0);
        let remaining = u64::try_from(state.remaining).unwrap_or(0);
        progress(Progress {
            task: Task::Copy,
            done_bytes: total.saturating_sub(remaining) * page_bytes,
            total_bytes: total * page_bytes,
        });
        match step {
            StepResult::Done => return Ok(()),
            StepResult::More => busy_since = None,
            StepResult::Busy | StepResult::Locked => {
                let since = *busy_since.get_or_insert_with(Instant::now);
                if since.elapsed() > MAX_BUSY_WAIT {
                    return Err(StoreError::BadValue(format!(
                        "the copy made no progress for {} s because a database was busy",
                        MAX_BUSY_WAIT.as_secs()
                    )));
                }
                std::thread::sleep(BUSY_PAUSE);
            }
            // `StepResult` is non-exhaustive; the backup API has no other results.
            _ => {
                return Err(StoreError::BadValue(
                    "unexpected result from the backup API".into(),
                ))
            }
        }
    }
}

/// Runs [`check_integrity`] on the database at `path`, reporting [`Task::Check`]
/// before and after.
pub(crate) fn check_with_progress(
    connection: &Connection,
    path: &Path,
    check: IntegrityCheck,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), StoreError> {
    let total_bytes = fs::metadata(path)
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    progress(Progress {
        task: Task::Check,
        done_bytes: 0,
        total_bytes,
    });
    check_integrity(connection, path, check)?;
    progress(Progress {
        task: Task::Check,
        done_bytes: total_bytes,
        total_bytes,
    });
    Ok(())
}

/// A table whose row count in a copy differs from the expected count.
#[derive(Debug)]
pub(crate) struct CountMismatch {
    table: String,
    expected: Option<i64>,
    found: Option<i64>,
}

impl std::fmt::Display for CountMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = |count: Option<i64>| match count {
            Some(count) => format!("{count} rows"),
            None => "no such table".to_string(),
        };
        write!(
            f,
            "table {} has {} instead of {}",
            self.table,
            rows(self.found),
            rows(self.expected)
        )
    }
}

/// Opens the copy at `path` with `key`, runs `check` on it and compares its row
/// counts with `expected`. Returns the first table whose count differs, if any.
pub(crate) fn check_copy(
    path: &Path,
    key: &MasterKey,
    check: IntegrityCheck,
    expected: &BTreeMap<String, i64>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Option<CountMismatch>, StoreError> {
    let copied = open_keyed(path, key, true)?;
    check_with_progress(&copied, path, check, progress)?;
    let found = table_counts(&copied)?;
    let mismatch = expected
        .keys()
        .chain(found.keys())
        .find(|table| expected.get(*table) != found.get(*table))
        .map(|table| CountMismatch {
            table: table.clone(),
            expected: expected.get(table).copied(),
            found: found.get(table).copied(),
        });
    Ok(mismatch)
}

/// Returns the page size in bytes. SQLCipher returns `PRAGMA page_size` as text
/// (column `cipher_page_size`), plain SQLite as an integer.
fn page_size(connection: &Connection) -> Result<u64, StoreError> {
    let value: rusqlite::types::Value =
        connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    let size = match value {
        rusqlite::types::Value::Integer(size) => u64::try_from(size).ok(),
        rusqlite::types::Value::Text(text) => text.trim().parse().ok(),
        _ => None,
    };
    size.ok_or_else(|| StoreError::BadValue("PRAGMA page_size returned no size".into()))
}

/// Counts the rows of every table, by name. Two copies of a database have the same
/// counts, so this checks that a copy is complete.
pub(crate) fn table_counts(connection: &Connection) -> Result<BTreeMap<String, i64>, StoreError> {
    let names: Vec<String> = connection
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
             ORDER BY name",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut counts = BTreeMap::new();
    for name in names {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let count: i64 =
            connection.query_row(&format!("SELECT count(*) FROM {quoted}"), [], |row| {
                row.get(0)
            })?;
        counts.insert(name, count);
    }
    Ok(counts)
}

/// Reads an integer from the `meta` table of a Ravelin database.
pub(crate) fn meta_value(connection: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    use rusqlite::OptionalExtension;
    Ok(connection
        .query_row("SELECT value FROM meta WHERE key = ?1", [name], |row| {
            row.get(0)
        })
        .optional()?)
}

/// Moves every committed page out of the write-ahead log into the database file and
/// switches it to the rollback journal, then closes `connection`. Afterwards the
/// database is the single file at `path`, which can be renamed or replaced without
/// a `-wal` file that belongs to another version of it.
pub(crate) fn release_wal(connection: Connection, path: &Path) -> Result<(), StoreError> {
    let in_use = || StoreError::InUse {
        path: path.to_path_buf(),
    };
    // Returns (busy, frames in the log, frames checkpointed).
    let (busy, _, _): (i64, i64, i64) =
        connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    if busy != 0 {
        return Err(in_use());
    }
    let mode: String = connection
        .query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))
        .map_err(|error| match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                in_use()
            }
            _ => error.into(),
        })?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(in_use());
    }
    connection.close().map_err(|(_, error)| error)?;

    let wal = with_suffix(path, "-wal");
    if wal.exists() {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("{} still exists after a checkpoint", wal.display()),
        });
    }
    Ok(())
}

/// Returns `path` with `suffix` appended to its file name: `ravelin.db` and `-wal`
/// give `ravelin.db-wal`.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Computes the SHA-256 of a file as lowercase hexadecimal, with its length.
pub(crate) fn sha256_file(
    path: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<(String, u64), StoreError> {
    let io_error = |source| StoreError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let total_bytes = file.metadata().map_err(io_error)?.len();
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; HASH_BUFFER_BYTES];
    let mut done_bytes = 0u64;
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(io_error(error)),
        };
        context.update(&buffer[..read]);
        done_bytes += read as u64;
        progress(Progress {
            task: Task::Hash,
            done_bytes,
            total_bytes,
        });
    }
    let digest = context.finish();
    let hex = digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok((hex, done_bytes))
}

/// Flushes a file's data and metadata to the disk.
pub(crate) fn sync_file(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|source| StoreError::Io {
            action: "flush",
            path: path.to_path_buf(),
            source,
        })
}

/// Flushes the directory that contains `path`, so that a file created, renamed or
/// removed there survives a power loss.
pub(crate) fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    sync_file(parent)
}

/// Renames `from` to `to`, replacing `to` atomically, and flushes the directory.
pub(crate) fn rename_durably(from: &Path, to: &Path) -> Result<(), StoreError> {
    fs::rename(from, to).map_err(|source| StoreError::Io {
        action: "rename to its final name",
        path: from.to_path_buf(),
        source,
    })?;
    sync_parent(to)
}

/// Removes a file if it exists and flushes the directory.
pub(crate) fn remove_durably(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Io {
            action: "remove",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KEY_BYTES;

    fn database_with_rows(path: &Path, key: &MasterKey, rows: usize) -> Connection {
        fs::File::create(path).unwrap();
        let connection = open_keyed(path, key, false).unwrap();
        let mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        connection
            .execute_batch("CREATE TABLE t (x TEXT NOT NULL); BEGIN")
            .unwrap();
        for i in 0..rows {
            connection
                .execute(
                    "INSERT INTO t VALUES (?1)",
                    [format!("plaintext-{i:05}-{}", "x".repeat(300))],
                )
                .unwrap();
        }
        connection.execute_batch("COMMIT").unwrap();
        connection
    }

    #[test]
    fn copy_is_the_snapshot_despite_writes() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_bytes([1; KEY_BYTES]);
        let copy_key = MasterKey::from_bytes([2; KEY_BYTES]);
        let path = dir.path().join("source.db");
        let writer = database_with_rows(&path, &key, 20_000);
        let reader = open_keyed(&path, &key, true).unwrap();

        // Every progress report inserts a row through another connection, so the
        // copy runs while the source changes.
        let copy = dir.path().join("copy.db");
        let mut reports = 0;
        copy_snapshot(&reader, &copy, &copy_key, &mut |report| {
            assert_eq!(report.task, Task::Copy);
            assert!(report.done_bytes <= report.total_bytes);
            reports += 1;
            writer
                .execute("INSERT INTO t VALUES ('written during the copy')", [])
                .unwrap();
        })
        .unwrap();
        assert!(reports > 1, "{reports} progress reports");

        assert!(!with_suffix(&copy, "-wal").exists());
        let copied = open_keyed(&copy, &copy_key, true).unwrap();
        check_integrity(&copied, &copy, IntegrityCheck::Full).unwrap();
        assert_eq!(table_counts(&copied).unwrap()["t"], 20_000);
        let source_rows: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(source_rows, 20_000 + reports);
    }

    #[test]
    fn copy_is_encrypted_with_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_bytes([1; KEY_BYTES]);
        let copy_key = MasterKey::from_bytes([2; KEY_BYTES]);
        let path = dir.path().join("source.db");
        let source = database_with_rows(&path, &key, 10);
        let copy = dir.path().join("copy.db");
        copy_snapshot(&source, &copy, &copy_key, &mut |_| {}).unwrap();

        let bytes = fs::read(&copy).unwrap();
        let needle = b"plaintext-00003";
        assert!(!bytes.windows(needle.len()).any(|window| window == needle));
        assert!(matches!(
            open_keyed(&copy, &key, true),
            Err(StoreError::WrongKey { .. })
        ));
        assert!(open_keyed(&copy, &copy_key, true).is_ok());
    }

    #[test]
    fn copy_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_bytes([1; KEY_BYTES]);
        let source = database_with_rows(&dir.path().join("source.db"), &key, 1);
        let copy = dir.path().join("copy.db");
        fs::write(&copy, b"keep").unwrap();
        assert!(copy_snapshot(&source, &copy, &key, &mut |_| {}).is_err());
        assert_eq!(fs::read(&copy).unwrap(), b"keep");
    }

    #[test]
    fn release_wal_leaves_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_bytes([1; KEY_BYTES]);
        let path = dir.path().join("source.db");
        let connection = database_with_rows(&path, &key, 100);
        assert!(with_suffix(&path, "-wal").exists());
        release_wal(connection, &path).unwrap();
        assert!(!with_suffix(&path, "-wal").exists());
        assert!(!with_suffix(&path, "-shm").exists());
        let reopened = open_keyed(&path, &key, true).unwrap();
        assert_eq!(table_counts(&reopened).unwrap()["t"], 100);
    }

    #[test]
    fn release_wal_waits_for_readers() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_bytes([1; KEY_BYTES]);
        let path = dir.path().join("source.db");
        let connection = database_with_rows(&path, &key, 100);
        let reader = open_keyed(&path, &key, true).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        reader
            .query_row("SELECT count(*) FROM t", [], |_| Ok(()))
            .unwrap();
        let result = release_wal(connection, &path);
        assert!(
            matches!(result, Err(StoreError::InUse { .. })),
            "{:?}",
            result.err()
        );
    }

    #[test]
    fn sha256_of_known_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").unwrap();
        let (hex, bytes) = sha256_file(&path, &mut |_| {}).unwrap();
        assert_eq!(bytes, 3);
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
