//! Taking ownership of a file descriptor the process inherited, such as one that
//! carries the master key (`--key-fd`).

// The one block turns a checked descriptor number into an owned descriptor.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The reason an inherited descriptor cannot be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptorError {
    #[error("descriptor {0} is standard input, output or error; use 3 or higher")]
    Standard(RawFd),
    #[error("file descriptor {0} is not open")]
    NotOpen(RawFd),
    #[error("cannot check that file descriptor {fd} is open through /proc/self/fd: {source}; /proc must be mounted")]
    Check { fd: RawFd, source: io::Error },
}

/// Takes ownership of the inherited descriptor `fd`, which is closed when the returned
/// file is dropped.
///
/// Call it only for a descriptor the process inherited, before the process opens any
/// file that stays open, and at most once per number: otherwise the drop could close
/// a descriptor that other code owns.
pub fn take_inherited(fd: RawFd) -> Result<File, DescriptorError> {
    if (0..3).contains(&fd) {
        return Err(DescriptorError::Standard(fd));
    }
    if fd < 0 {
        return Err(DescriptorError::NotOpen(fd));
    }
    // An open descriptor has an entry here. Taking ownership of a closed one would
    // let the drop close a number that a later open reuses.
    match std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")) {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(DescriptorError::NotOpen(fd))
        }
        Err(source) => return Err(DescriptorError::Check { fd, source }),
    }
    // SAFETY: `fd` is open (checked above) and is not 0, 1 or 2. The caller takes it
    // before opening any file that stays open, so it was inherited rather than opened
    // by this process, and no value in the process owns it: callers take each number
    // once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(File::from(owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_and_closed_descriptors_refused() {
        for fd in [0, 1, 2] {
            assert!(matches!(
                take_inherited(fd),
                Err(DescriptorError::Standard(_))
            ));
        }
        assert!(matches!(
            take_inherited(-1),
            Err(DescriptorError::NotOpen(_))
        ));
        // Far above any descriptor a test process has open.
        assert!(matches!(
            take_inherited(1_000_000),
            Err(DescriptorError::NotOpen(_))
        ));
    }
}
