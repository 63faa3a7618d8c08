//! The encrypted on-disk store: one SQLCipher database per data directory.
//!
//! SQLCipher encrypts every page of the database file and its write-ahead log with
//! AES-256 and authenticates each page with an HMAC, so nothing a client wrote is
//! readable from the disk without the master key. The journal is a WAL with
//! `synchronous=FULL`: a transaction that returned is on disk and survives a crash or a
//! power loss. Every write request of the API is one transaction, so a batch is either
//! wholly present after a crash or wholly absent.
//!
//! - [`key`]: the 256-bit master key and its file format.
//! - [`Store`]: opening, schema migration, and the reads and writes the engine uses.
//! - [`backup`]: online backups with a manifest, and restoring one.
//! - [`rotation`]: re-encrypting the database with a new master key, crash-safe.
//! - [`DatabaseLock`]: the lock files that keep the server, backups, rotation and
//!   restore from getting in each other's way.
//!
//! The store keeps metadata, configurations and schemas as JSON text that the engine
//! encodes and decodes, so this crate does not depend on the API's types. File names on
//! disk are fixed constants and never derived from client input.

pub mod backup;
mod copy;
mod db;
pub mod key;
mod lock;
pub mod rotation;

pub use copy::{Progress, Task};
pub use db::{
    Checkpoint, CollectionRow, DatabaseRow, RecordRow, RecordWrite, Snapshot, StagedCheckpoint,
    Store, StoreError, TenantRow,
};
pub use key::{KeyError, MasterKey};
pub use lock::{DatabaseLock, LockError, BACKUP_LOCK_FILE, DATABASE_LOCK_FILE};
