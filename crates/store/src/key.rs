//! The master key: 256 random bits, stored as 64 hexadecimal characters.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::{Zeroize, Zeroizing};

/// The length of the master key in bytes.
pub const KEY_BYTES: usize = 32;

/// A 256-bit key that keys the SQLCipher database. Its bytes are wiped on drop and it
/// never appears in `Debug` output.
pub struct MasterKey {
    bytes: [u8; KEY_BYTES],
}

/// An error reading or writing a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("master key file {path} does not exist")]
    Missing { path: PathBuf },
    #[error("cannot read master key file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write master key file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("master key file {path} is malformed: expected 64 hexadecimal characters (256 bits)")]
    Malformed { path: PathBuf },
    #[error(
        "master key file {path} is open to other users (mode {mode:o}); run `chmod 400 {path}` (or 440 at most for a file owned by root)"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("cannot read the master key from file descriptor {fd}")]
    ReadDescriptor { fd: i32, source: io::Error },
    #[error("the master key read from file descriptor {fd} is malformed: expected 64 hexadecimal characters (256 bits), optionally followed by a newline, then end of file")]
    MalformedDescriptor { fd: i32 },
    #[error("cannot read random bytes for a new master key: {0}")]
    Random(String),
}

impl MasterKey {
    /// Wraps raw key bytes, for example from a random source.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        MasterKey { bytes }
    }

    /// Generates a key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(|error| KeyError::Random(error.to_string()))?;
        let key = MasterKey { bytes };
        bytes.zeroize();
        Ok(key)
    }

    /// Reads a key of 64 hexadecimal characters, optionally followed by a newline, from
    /// an open file descriptor `fd` until end of file, so the writer of a pipe must close
    /// its end. Closing the descriptor is up to the caller, which owns `file`.
    pub fn read_descriptor(file: &mut fs::File, fd: i32) -> Result<Self, KeyError> {
        // One byte more than the longest valid input, so longer input is detected
        // without reading an unbounded amount.
        const MAX_INPUT: u64 = (KEY_BYTES * 2 + 3) as u64;
        let mut text = Zeroizing::new(Vec::with_capacity(MAX_INPUT as usize));
        file.take(MAX_INPUT)
            .read_to_end(&mut text)
            .map_err(|source| KeyError::ReadDescriptor { fd, source })?;
        std::str::from_utf8(&text)
            .ok()
            .and_then(|text| Self::parse_hex(text.trim_end_matches(['\n', '\r'])))
            .ok_or(KeyError::MalformedDescriptor { fd })
    }

    /// Reads a key file of 64 hexadecimal characters, optionally followed by a newline.
    /// The file must give no access to others and none to its group, except that a
    /// file owned by root may be readable by its group. That exception is how a
    /// Kubernetes Secret volume reaches a non-root process: with the pod's `fsGroup`
    /// set, the kubelet makes each file root-owned with group read access whatever
    /// `defaultMode` sets. PostgreSQL accepts its TLS key under the same rule.
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let metadata = match fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(KeyError::Missing {
                    path: path.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(KeyError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let mode = metadata.permissions().mode() & 0o777;
        let root_group_read = metadata.uid() == 0 && mode & 0o037 == 0;
        if mode & 0o077 != 0 && !root_group_read {
            return Err(KeyError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }

        let text = Zeroizing::new(fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?);
        Self::parse_hex(text.trim_end_matches(['\n', '\r'])).ok_or_else(|| KeyError::Malformed {
            path: path.to_path_buf(),
        })
    }

    /// Writes the key to a new file with mode 0400. Fails if the file exists, so a
    /// key is never overwritten.
    pub fn write_new_file(&self, path: &Path) -> Result<(), KeyError> {
        let write_error = |source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(path)
            .map_err(write_error)?;
        let mut text = Zeroizing::new(self.to_hex());
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        Ok(())
    }

    /// Returns the key as SQLCipher's raw-key literal, `x'<64 hex>'`, which skips the
    /// passphrase key derivation because the key is already 256 random bits.
    pub fn sqlcipher_literal(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("x'{}'", self.to_hex().as_str()))
    }

    /// Returns whether two keys are equal, comparing every byte without an early exit.
    pub fn same_as(&self, other: &MasterKey) -> bool {
        let difference = self
            .bytes
            .iter()
            .zip(other.bytes.iter())
            .fold(0u8, |difference, (a, b)| difference | (a ^ b));
        difference == 0
    }

    fn to_hex(&self) -> Zeroizing<String> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = Zeroizing::new(String::with_capacity(KEY_BYTES * 2));
        for byte in self.bytes {
            text.push(char::from(DIGITS[usize::from(byte >> 4)]));
            text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        text
    }

    fn parse_hex(text: &str) -> Option<Self> {
        let digits = text.as_bytes();
        if digits.len() != KEY_BYTES * 2 {
            return None;
        }
        let mut bytes = [0u8; KEY_BYTES];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            *byte = u8::try_from(high * 16 + low).ok()?;
        }
        Some(MasterKey { bytes })
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let key = MasterKey::from_bytes([7; KEY_BYTES]);
        key.write_new_file(&path).unwrap();

        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        let read = MasterKey::read_file(&path).unwrap();
        assert_eq!(read.bytes, key.bytes);
    }

    #[test]
    fn key_file_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKey::from_bytes([1; KEY_BYTES])
            .write_new_file(&path)
            .unwrap();
        assert!(MasterKey::from_bytes([2; KEY_BYTES])
            .write_new_file(&path)
            .is_err());
        assert_eq!(MasterKey::read_file(&path).unwrap().bytes, [1; KEY_BYTES]);
    }

    #[test]
    fn malformed_key_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, "abc\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(matches!(
            MasterKey::read_file(&path),
            Err(KeyError::Malformed { .. })
        ));
    }

    #[test]
    fn group_readable_key_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, "00".repeat(KEY_BYTES)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::read_file(&path),
            Err(KeyError::TooOpen { .. })
        ));
    }

    #[test]
    fn key_read_from_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        fs::write(&path, format!("{}\n", "ab".repeat(KEY_BYTES))).unwrap();
        let mut file = fs::File::open(&path).unwrap();
        let key = MasterKey::read_descriptor(&mut file, 3).unwrap();
        assert_eq!(key.bytes, [0xab; KEY_BYTES]);
    }

    #[test]
    fn long_descriptor_input_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        fs::write(&path, "ab".repeat(KEY_BYTES + 1)).unwrap();
        let mut file = fs::File::open(&path).unwrap();
        let result = MasterKey::read_descriptor(&mut file, 3);
        assert!(matches!(
            result,
            Err(KeyError::MalformedDescriptor { fd: 3 })
        ));
    }

    #[test]
    fn generated_keys_differ() {
        let first = MasterKey::generate().unwrap();
        let second = MasterKey::generate().unwrap();
        assert!(!first.same_as(&second));
        assert!(first.same_as(&first));
    }

    #[test]
    fn group_writable_key_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, "00".repeat(KEY_BYTES)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o460)).unwrap();
        assert!(matches!(
            MasterKey::read_file(&path),
            Err(KeyError::TooOpen { .. })
        ));
    }

    /// A root-owned file readable by its group is accepted, as a Kubernetes Secret
    /// mounted with `fsGroup` is; owned by anyone else it is rejected.
    #[test]
    fn group_readable_key_depends_on_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, "00".repeat(KEY_BYTES)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o440)).unwrap();
        let owned_by_root = fs::metadata(&path).unwrap().uid() == 0;
        let result = MasterKey::read_file(&path);
        if owned_by_root {
            assert!(result.is_ok(), "{result:?}");
        } else {
            assert!(
                matches!(result, Err(KeyError::TooOpen { .. })),
                "{result:?}"
            );
        }
    }

    #[test]
    fn debug_hides_key() {
        let key = MasterKey::from_bytes([0xab; KEY_BYTES]);
        assert!(!format!("{key:?}").contains("ab"));
    }
}
