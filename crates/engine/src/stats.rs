//! Totals over the whole engine, for monitoring.

use std::sync::Arc;

use crate::state::Records;
use crate::Engine;

/// Counts over every tenant, database and collection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    pub tenants: usize,
    pub databases: usize,
    pub collections: usize,
    pub records: usize,
    /// Collections that have an HNSW index. The others scan exactly.
    pub indexed_collections: usize,
    /// Slots in all the indexes, deleted ones included, which is what their memory
    /// use grows with.
    pub index_slots: usize,
    /// Slots in all the indexes that searches can return.
    pub index_live_slots: usize,
}

impl Engine {
    /// Counts the tenants, databases, collections, records and index slots.
    ///
    /// Takes read locks only: the catalog's while it lists the collections, then each
    /// collection's records in turn. So it never waits for a collection's writer or
    /// index upkeep, only for one short step of a write. Writes that land meanwhile
    /// may or may not be counted.
    pub fn stats(&self) -> EngineStats {
        let (mut stats, collections) = {
            let catalog = self.catalog.read();
            let stats = EngineStats {
                tenants: catalog.tenants.len(),
                databases: catalog.databases.len(),
                ..EngineStats::default()
            };
            let collections: Vec<Arc<Records>> = catalog
                .collections
                .values()
                .map(|entry| Arc::clone(&entry.records))
                .collect();
            (stats, collections)
        };

        for records in collections {
            if records.is_deleted() {
                continue;
            }
            let set = records.set.read();
            stats.collections += 1;
            stats.records += set.records.len();
            if let Some(vectors) = &set.vectors {
                stats.indexed_collections += 1;
                stats.index_slots += vectors.slots();
                stats.index_live_slots += vectors.len();
            }
        }
        stats
    }
}
