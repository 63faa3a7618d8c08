//! `ravelin audit verify`: checks the hash chain of an audit log file.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::process::ExitCode;

use server::audit::{self, VerifyError};

/// Exit status when the chain has a break.
const EXIT_BROKEN: u8 = 1;
/// Exit status when the file cannot be opened or read. Clap also exits with 2 on a
/// usage error.
const EXIT_UNREADABLE: u8 = 2;

/// Verifies the audit log at `path` and prints the result.
///
/// An intact chain prints `OK: N records, last hash H` on standard output. A break
/// prints `FILE: record R (line L): REASON` on standard error. Returns the exit status:
/// 0 for an intact chain, [`EXIT_BROKEN`] or [`EXIT_UNREADABLE`].
pub fn verify_file(path: &Path) -> ExitCode {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("error: cannot open audit log {}: {error}", path.display());
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };

    match audit::verify(BufReader::new(file)) {
        Ok(summary) => {
            println!(
                "OK: {} records, last hash {}",
                summary.records, summary.last_hash
            );
            ExitCode::SUCCESS
        }
        Err(VerifyError::Break(broken)) => {
            eprintln!("{}: {broken}", path.display());
            ExitCode::from(EXIT_BROKEN)
        }
        Err(VerifyError::Read { line, source }) => {
            eprintln!(
                "error: cannot read audit log {} at line {line}: {source}",
                path.display()
            );
            ExitCode::from(EXIT_UNREADABLE)
        }
    }
}
