//! Checking a whole audit log file.

use std::fmt;
use std::io::{self, BufRead, Read};

use super::record::check_record;
use super::{FIRST_PREV, MAX_LINE_BYTES};

/// The result of a [`verify`] that found no break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    /// Number of records in the file.
    pub records: u64,
    /// `hash` of the last record, or [`FIRST_PREV`] when the file is empty.
    pub last_hash: String,
}

/// The first place where a log file fails verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyBreak {
    /// 1-based position of the record in the file.
    pub record: u64,
    /// 1-based line number. Every line must be a record, so this equals `record`.
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for VerifyBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {} (line {}): {}",
            self.record, self.line, self.reason
        )
    }
}

/// A failed [`verify`]: either the chain is broken or the input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Break(VerifyBreak),
    #[error("cannot read line {line}: {source}")]
    Read { line: u64, source: io::Error },
}

/// Checks every record of a log and returns the record count and last hash, or the
/// first break.
///
/// Each line must be a record in the format of the module documentation, with a
/// correct `hash`. `seq` must count up from 1, and each `prev` must equal the `hash` of
/// the record before. The last line must end with a newline. No more than
/// [`MAX_LINE_BYTES`] + 1 bytes of a line are held in memory.
pub fn verify(mut reader: impl BufRead) -> Result<VerifySummary, VerifyError> {
    let mut buffer = Vec::new();
    let mut position: u64 = 0;
    let mut last_hash = FIRST_PREV.to_string();

    loop {
        buffer.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        let read = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut buffer)
            .map_err(|source| VerifyError::Read {
                line: position + 1,
                source,
            })?;
        if read == 0 {
            break;
        }
        position += 1;
        let broken = |reason: String| {
            VerifyError::Break(VerifyBreak {
                record: position,
                line: position,
                reason,
            })
        };

        let line = match buffer.strip_suffix(b"\n") {
            Some(line) => line,
            None if buffer.len() > MAX_LINE_BYTES => {
                return Err(broken(format!(
                    "line is longer than the maximum of {MAX_LINE_BYTES} bytes"
                )))
            }
            None => {
                return Err(broken(
                    "the last line does not end with a newline, so the record is incomplete"
                        .to_string(),
                ))
            }
        };
        let record = check_record(line).map_err(&broken)?;
        if record.seq != position {
            return Err(broken(format!(
                "seq is {}, expected {position}",
                record.seq
            )));
        }
        if record.prev != last_hash {
            let reason = if position == 1 {
                "prev of the first record is not 64 zeros".to_string()
            } else {
                format!("prev does not match the hash of record {}", position - 1)
            };
            return Err(broken(reason));
        }
        last_hash = record.hash;
    }

    Ok(VerifySummary {
        records: position,
        last_hash,
    })
}
