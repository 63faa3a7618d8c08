//! Appending records to an audit log file.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use time::format_description::BorrowedFormatItem;
use time::OffsetDateTime;

use super::record::{check_record, encode_record};
use super::{AuditEvent, FIRST_PREV, MAX_LINE_BYTES};

/// The `time` format: RFC 3339 in UTC with exactly three fractional digits.
const TIME_FORMAT: &[BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

/// An error opening or appending to an audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("cannot open audit log {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error(
        "audit log {path} is locked because another process, or another AuditLog in this \
         one, has it open; stop that writer or use another file"
    )]
    Locked { path: PathBuf },
    #[error(
        "cannot continue audit log {path}: {problem}. Move the file aside, keeping it as \
         evidence, to start a new log"
    )]
    Damaged { path: PathBuf, problem: String },
    #[error("cannot write to audit log {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("audit record was written to {path} but syncing it to disk failed: {source}")]
    Sync { path: PathBuf, source: io::Error },
    #[error(
        "audit log {path} may end in a partly written record after a failed write, so no \
         more records are appended; reopen it to check its last line"
    )]
    Unusable { path: PathBuf },
    #[error(
        "audit log {path} has reached the maximum seq; move the file aside to start a new log"
    )]
    SeqExhausted { path: PathBuf },
    #[error("audit record is {bytes} bytes long, over the maximum of {MAX_LINE_BYTES}")]
    RecordTooLong { bytes: usize },
    #[error("cannot encode audit record: {0}")]
    Encode(String),
}

/// The last record of a chain: its `seq`, or 0 for an empty log, and its `hash`, or
/// [`FIRST_PREV`] for an empty log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

/// An append-only audit log file.
///
/// The file is locked with an exclusive advisory lock (`flock` on Linux) while the
/// `AuditLog` exists, so a second `open` of the same file fails instead of
/// interleaving two chains. Appends from several threads are serialized by a mutex.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    state: Mutex<LogState>,
    /// A second handle on the file, synced outside the lock, so appends of other
    /// requests go on while one waits for the disk. Syncing either handle flushes
    /// every record written so far.
    sync_handle: File,
}

#[derive(Debug)]
struct LogState {
    file: File,
    /// File length in bytes after the last complete record.
    len: u64,
    head: ChainHead,
    /// Set when a failed write could not be undone.
    unusable: bool,
}

impl AuditLog {
    /// Opens the log at `path` for appending, creating it with mode 0600 if it is
    /// missing. The parent directory must exist.
    ///
    /// The chain continues from the last line, which must be a complete record with a
    /// correct `hash`. Only that line is read, so earlier damage goes unnoticed until
    /// [`verify`](super::verify) runs. A file that does not end with a newline, or
    /// whose last line is not a valid record, is rejected with [`AuditError::Damaged`].
    pub fn open(path: impl AsRef<Path>) -> Result<AuditLog, AuditError> {
        let path = path.as_ref().to_path_buf();
        let open_error = |source| AuditError::Open {
            path: path.clone(),
            source,
        };

        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(open_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(AuditError::Locked { path }),
            Err(TryLockError::Error(source)) => return Err(open_error(source)),
        }

        let len = file.metadata().map_err(open_error)?.len();
        let head = match read_last_line(&mut file, len).map_err(open_error)? {
            LastLine::Empty => ChainHead {
                seq: 0,
                hash: FIRST_PREV.to_string(),
            },
            LastLine::Damaged(problem) => return Err(AuditError::Damaged { path, problem }),
            LastLine::Line(line) => match check_record(&line) {
                Ok(record) => ChainHead {
                    seq: record.seq,
                    hash: record.hash,
                },
                Err(reason) => {
                    return Err(AuditError::Damaged {
                        path,
                        problem: format!("its last line is not a valid record: {reason}"),
                    })
                }
            },
        };

        let sync_handle = file.try_clone().map_err(open_error)?;
        Ok(AuditLog {
            path,
            sync_handle,
            state: Mutex::new(LogState {
                file,
                len,
                head,
                unusable: false,
            }),
        })
    }

    /// Appends one record for `event`, stamped with the current UTC time.
    ///
    /// The line is written with one `write_all`. With `durable`, the call returns only
    /// after `sync_data` has flushed the record to disk.
    ///
    /// After an error the chain still ends at the last complete record, so the next
    /// append continues it. A failed write is undone by truncating the file to its
    /// previous length. If that truncation also fails, this and every later append
    /// returns [`AuditError::Unusable`]. [`AuditError::Sync`] means the record is in the
    /// file and the chain includes it, but it may not be on disk yet.
    pub fn append(&self, event: &AuditEvent<'_>, durable: bool) -> Result<(), AuditError> {
        // The chain state changes only after a complete write, so it is consistent even
        // if a thread panicked while holding the lock.
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        if state.unusable {
            return Err(AuditError::Unusable {
                path: self.path.clone(),
            });
        }

        let Some(seq) = state.head.seq.checked_add(1) else {
            return Err(AuditError::SeqExhausted {
                path: self.path.clone(),
            });
        };
        let time = OffsetDateTime::now_utc()
            .format(TIME_FORMAT)
            .map_err(|error| AuditError::Encode(error.to_string()))?;
        let record = encode_record(seq, &time, event, &state.head.hash)?;

        if let Err(source) = state.file.write_all(&record.line) {
            if let Err(error) = state.file.set_len(state.len) {
                tracing::error!(
                    path = %self.path.display(), %error,
                    "cannot remove a partly written audit record; no more records will be appended"
                );
                state.unusable = true;
            }
            return Err(AuditError::Write {
                path: self.path.clone(),
                source,
            });
        }
        state.len += record.line.len() as u64;
        state.head = ChainHead {
            seq,
            hash: record.hash,
        };

        let flushed = state.file.flush();
        drop(guard);
        // The record is in the file; waiting for the disk needs no lock, and a sync
        // that another append started later covers this record too.
        let synced = if durable {
            flushed.and_then(|()| self.sync_handle.sync_data())
        } else {
            flushed
        };
        synced.map_err(|source| AuditError::Sync {
            path: self.path.clone(),
            source,
        })
    }

    /// Returns the `seq` and `hash` of the last record appended or read at open.
    pub fn head(&self) -> ChainHead {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.head.clone()
    }

    /// Returns the path the log was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

enum LastLine {
    Empty,
    Line(Vec<u8>),
    Damaged(String),
}

/// Reads the last line of a log of `len` bytes without its newline, reading at most
/// [`MAX_LINE_BYTES`] + 2 bytes from the end.
fn read_last_line(file: &mut File, len: u64) -> io::Result<LastLine> {
    if len == 0 {
        return Ok(LastLine::Empty);
    }

    // A last line of the maximum length, its newline and the newline that ends the
    // line before it.
    let tail_len = len.min(MAX_LINE_BYTES as u64 + 2);
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(len - tail_len))?;
    Read::take(&mut *file, tail_len).read_to_end(&mut tail)?;
    if tail.len() as u64 != tail_len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file became shorter while it was read",
        ));
    }

    let Some(without_newline) = tail.strip_suffix(b"\n") else {
        return Ok(LastLine::Damaged(
            "the file does not end with a newline, so its last record is incomplete".to_string(),
        ));
    };
    let start = match without_newline.iter().rposition(|&byte| byte == b'\n') {
        Some(newline) => newline + 1,
        None if tail_len == len => 0,
        None => {
            return Ok(LastLine::Damaged(format!(
                "its last line is longer than the maximum of {MAX_LINE_BYTES} bytes"
            )))
        }
    };
    Ok(LastLine::Line(
        without_newline.get(start..).unwrap_or_default().to_vec(),
    ))
}
