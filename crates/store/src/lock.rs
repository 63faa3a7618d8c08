//! Advisory locks that keep the server, backups, key rotation and restore apart.
//!
//! Two lock files sit next to the database, and each process holds its locks with
//! `flock(2)` until it exits, so a killed process never leaves a stale lock:
//!
//! | Holder | `ravelin.lock` | `backup.lock` |
//! | --- | --- | --- |
//! | `ravelin serve` | exclusive | none |
//! | `ravelin backup` | none | shared |
//! | `ravelin key rotate`, `ravelin restore` | exclusive | exclusive |
//!
//! So a backup runs while the server serves, several backups can run at once, and
//! rotation and restore, which replace the database file, run only when nothing else
//! has it open. The lock files stay empty and are never removed, so taking a lock
//! changes no file once they exist. A process that finds a lock taken names the
//! holder from `/proc/locks`.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The lock file of the server, key rotation and restore.
pub const DATABASE_LOCK_FILE: &str = "ravelin.lock";
/// The lock file that backups share.
pub const BACKUP_LOCK_FILE: &str = "backup.lock";

/// The maximum length, in characters, of a command line quoted in an error message.
const MAX_COMMAND_CHARS: usize = 120;

/// Locks held on a database directory; dropping the value releases them.
#[derive(Debug)]
pub struct DatabaseLock {
    _files: Vec<File>,
}

/// An error taking a lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the database in {dir} is in use by {holder}; stop it and run the command again")]
    Held { dir: PathBuf, holder: String },
    #[error("cannot lock {path}")]
    Io { path: PathBuf, source: io::Error },
}

impl DatabaseLock {
    /// Takes the lock of a running server: fails while another server, a key rotation
    /// or a restore holds the database in `dir`.
    pub fn for_server(dir: &Path) -> Result<Self, LockError> {
        let file = lock(dir, DATABASE_LOCK_FILE, Mode::Exclusive)?;
        Ok(DatabaseLock { _files: vec![file] })
    }

    /// Takes the locks of a command that replaces the database file: fails while a
    /// server, a backup, a key rotation or a restore holds the database in `dir`.
    pub fn for_replacement(dir: &Path) -> Result<Self, LockError> {
        let database = lock(dir, DATABASE_LOCK_FILE, Mode::Exclusive)?;
        let backup = lock(dir, BACKUP_LOCK_FILE, Mode::Exclusive)?;
        Ok(DatabaseLock {
            _files: vec![database, backup],
        })
    }

    /// Takes a backup's shared lock: fails while a key rotation or a restore is
    /// replacing the database in `dir`.
    pub fn for_backup(dir: &Path) -> Result<Self, LockError> {
        let file = lock(dir, BACKUP_LOCK_FILE, Mode::Shared)?;
        Ok(DatabaseLock { _files: vec![file] })
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Shared,
    Exclusive,
}

fn lock(dir: &Path, name: &str, mode: Mode) -> Result<File, LockError> {
    let path = dir.join(name);
    let io_error = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_error)?;
    let locked = match mode {
        Mode::Shared => file.try_lock_shared(),
        Mode::Exclusive => file.try_lock(),
    };
    match locked {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(LockError::Held {
            dir: dir.to_path_buf(),
            holder: describe_holder(&file),
        }),
        Err(TryLockError::Error(source)) => Err(io_error(source)),
    }
}

/// Describes the process that has a `flock` on `file`, from `/proc/locks` and that
/// process's `/proc/PID/cmdline`, or generically when Linux does not name it.
fn describe_holder(file: &File) -> String {
    let generic =
        || "another Ravelin process (a server, backup, key rotation or restore)".to_string();
    let Ok(metadata) = file.metadata() else {
        return generic();
    };
    let Ok(locks) = fs::read_to_string("/proc/locks") else {
        return generic();
    };
    let device = metadata.dev();
    // Linux prints the device as hexadecimal major:minor, then the decimal inode.
    let major = ((device >> 8) & 0xfff) | ((device >> 32) & !0xfff);
    let minor = (device & 0xff) | ((device >> 12) & !0xff);
    let file_id = format!("{major:02x}:{minor:02x}:{}", metadata.ino());

    // A line reads `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`; lines with
    // `->` are processes waiting for the lock, not holding it.
    let holder = locks
        .lines()
        .filter(|line| !line.contains("->"))
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.len() >= 6 && fields[1] == "FLOCK" && fields[5] == file_id)
        .and_then(|fields| fields[4].parse::<u32>().ok());
    match holder {
        Some(pid) => match command_line(pid) {
            Some(command) => format!("process {pid} (`{command}`)"),
            None => format!("process {pid}"),
        },
        None => generic(),
    }
}

/// Returns the command line of a process, shortened for a message.
fn command_line(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = raw
        .split(|&byte| byte == 0)
        .filter(|word| !word.is_empty())
        .map(|word| String::from_utf8_lossy(word).into_owned())
        .collect();
    let mut command = words.join(" ");
    if command.chars().any(char::is_control) || command.is_empty() {
        return None;
    }
    if command.chars().count() > MAX_COMMAND_CHARS {
        command = command.chars().take(MAX_COMMAND_CHARS).collect::<String>() + "…";
    }
    Some(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_server_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let _server = DatabaseLock::for_server(dir.path()).unwrap();
        let error = DatabaseLock::for_server(dir.path()).unwrap_err();
        let message = error.to_string();
        // The holder is this test process.
        let expected = format!("is in use by process {} (`", std::process::id());
        assert!(message.contains(&expected), "{message}");
    }

    #[test]
    fn locking_leaves_files_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        drop(DatabaseLock::for_replacement(dir.path()).unwrap());
        let before = fs::metadata(dir.path().join(DATABASE_LOCK_FILE)).unwrap();
        drop(DatabaseLock::for_server(dir.path()).unwrap());
        drop(DatabaseLock::for_backup(dir.path()).unwrap());
        for name in [DATABASE_LOCK_FILE, BACKUP_LOCK_FILE] {
            assert_eq!(fs::read(dir.path().join(name)).unwrap(), b"");
        }
        let after = fs::metadata(dir.path().join(DATABASE_LOCK_FILE)).unwrap();
        assert_eq!(before.modified().unwrap(), after.modified().unwrap());
    }

    #[test]
    fn replacement_waits_for_server_and_backup() {
        let dir = tempfile::tempdir().unwrap();
        let server = DatabaseLock::for_server(dir.path()).unwrap();
        assert!(DatabaseLock::for_replacement(dir.path()).is_err());
        drop(server);

        let backup = DatabaseLock::for_backup(dir.path()).unwrap();
        let second_backup = DatabaseLock::for_backup(dir.path()).unwrap();
        assert!(DatabaseLock::for_replacement(dir.path()).is_err());
        drop(backup);
        drop(second_backup);

        let _restore = DatabaseLock::for_replacement(dir.path()).unwrap();
        assert!(DatabaseLock::for_backup(dir.path()).is_err());
        assert!(DatabaseLock::for_server(dir.path()).is_err());
    }

    #[test]
    fn backup_runs_beside_server() {
        let dir = tempfile::tempdir().unwrap();
        let _server = DatabaseLock::for_server(dir.path()).unwrap();
        assert!(DatabaseLock::for_backup(dir.path()).is_ok());
    }
}
