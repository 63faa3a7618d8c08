//! Tenants, databases, collections and records over the encrypted store.
//!
//! The engine keeps the whole catalog and every collection's records in memory, loaded
//! from the store at startup, and writes through: a write request becomes one store
//! transaction, and only after it commits does the in-memory state change. A failed
//! write therefore leaves both the disk and memory as they were, and a crash loses
//! nothing that was acknowledged.
//!
//! Locks are taken in one order: the upkeep pass, then the catalog, then a
//! collection's writer lock, then its records, then the store. Gets and queries take
//! only read locks, so they run in parallel with each other. A write holds its
//! collection's writer lock throughout, but takes the records' write lock only in
//! steps of a few milliseconds, so queries are never held up for a whole batch. Index
//! upkeep does its long work with no lock held and takes each lock only for short
//! steps, so neither writes nor queries wait for a build or a checkpoint.
//!
//! - [`Engine`]: the operations the API routes call, in `catalog` and `records`.
//! - `state`: the in-memory catalog and record sets, and loading them at startup.
//! - `vectors`: each collection's HNSW index and its checkpoint format. Queries over
//!   more candidate vectors than `Limits::exact_scan_max_vector_bytes` search it;
//!   smaller ones scan exactly.
//! - `upkeep`: building, compacting and checkpointing the indexes in the background.
//! - `stats`: totals over the whole engine, for monitoring.

mod catalog;
mod records;
mod state;
mod stats;
mod upkeep;
mod vectors;

use std::sync::Arc;

use api::error::ApiError;
use api::Limits;
use parking_lot::{Mutex, RwLock};
use store::{Store, StoreError};

use crate::state::Catalog;

pub use catalog::TenantInfo;
pub use stats::EngineStats;
pub use upkeep::{
    IndexInfo, Pass, UpkeepHook, UpkeepReport, UpkeepStep, UpkeepWorker, CHECKPOINT_CHANGES,
    CHECKPOINT_COPY_SLOTS, CHECKPOINT_FRACTION, CHECKPOINT_INTERVAL, REBUILD_COPY_RECORDS,
};

/// The default tenant and database that exist in every data directory.
pub const DEFAULT_TENANT: &str = "default_tenant";
pub const DEFAULT_DATABASE: &str = "default_database";
/// The id of the default database, as in Chroma.
pub const DEFAULT_DATABASE_ID: &str = "00000000-0000-0000-0000-000000000000";

/// The database engine. Cheap to share: wrap it in an `Arc`.
pub struct Engine {
    store: Mutex<Store>,
    catalog: RwLock<Catalog>,
    limits: Arc<Limits>,
    /// Held for a whole pass of index upkeep, so passes never overlap.
    upkeep_pass: Mutex<()>,
    upkeep_hook: RwLock<Option<UpkeepHook>>,
}

/// An error opening the engine.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored data is damaged: {0}")]
    Damaged(String),
}

impl Engine {
    /// Loads the catalog and every record from the store. Creates the default tenant and
    /// database in a new store.
    pub fn open(mut store: Store, limits: Limits) -> Result<Engine, OpenError> {
        let mut snapshot = store.load_catalog()?;
        if snapshot.tenants.is_empty() {
            store.reset(DEFAULT_TENANT, (DEFAULT_DATABASE_ID, DEFAULT_DATABASE))?;
            snapshot = store.load_catalog()?;
        }
        let catalog = Catalog::load(&store, snapshot, limits.exact_scan_max_vector_bytes)?;
        Ok(Engine {
            store: Mutex::new(store),
            catalog: RwLock::new(catalog),
            limits: Arc::new(limits),
            upkeep_pass: Mutex::new(()),
            upkeep_hook: RwLock::new(None),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Deletes everything and recreates the default tenant and database. The caller
    /// checks that reset is enabled and allowed.
    pub fn reset(&self) -> Result<(), ApiError> {
        let mut catalog = self.catalog.write();

        // A writer that passed its check before this mark finds its collection gone
        // in the store, or commits before the reset deletes it.
        for collection in catalog.collections.values() {
            collection.records.mark_deleted();
        }
        let mut store = self.store.lock();
        let reset = store.reset(DEFAULT_TENANT, (DEFAULT_DATABASE_ID, DEFAULT_DATABASE));

        // Reload whether or not the reset committed, so memory matches the disk.
        let snapshot = store.load_catalog().map_err(internal)?;
        *catalog = Catalog::load(&store, snapshot, self.limits.exact_scan_max_vector_bytes)
            .map_err(|error| internal(error.to_string()))?;
        reset.map_err(internal)
    }
}

/// Logs a store failure and returns a 500 whose message reveals nothing of the
/// database: no SQL, no file paths.
pub(crate) fn internal(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "storage operation failed");
    ApiError::internal("Internal error: the storage operation failed; the server log has details")
}
