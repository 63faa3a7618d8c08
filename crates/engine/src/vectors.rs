//! The approximate-nearest-neighbour index of one collection's records.
//!
//! Every record with an embedding has a slot in the collection's HNSW index. Writes
//! keep the index in step with the records under the collection's write lock, and
//! queries read it under the read lock. A query whose candidates hold at most
//! `Limits::exact_scan_max_vector_bytes` of vectors scans them exactly instead, and so
//! does a filtered search that the graph cannot fill.

use std::collections::BTreeMap;

use api::config::HnswConfiguration;
use index::hnsw::{Hnsw, HnswParams};
use index::Space;

use crate::state::Record;

/// The seed of every collection's level assignment, so a collection built from the
/// same writes has the same graph.
const LEVEL_SEED: u64 = 0x7261_7665_6c69_6e00;

/// An HNSW index with the record position of every slot.
pub(crate) struct VectorIndex {
    hnsw: Hnsw,
    /// Slot to record position; `None` for a slot whose record is gone.
    positions: Vec<Option<i64>>,
}

impl VectorIndex {
    pub fn new(dimension: usize, space: Space, configuration: &HnswConfiguration) -> VectorIndex {
        let params = HnswParams {
            max_neighbors: usize::try_from(configuration.max_neighbors).unwrap_or(16),
            ef_construction: usize::try_from(configuration.ef_construction).unwrap_or(100),
            seed: LEVEL_SEED,
        };
        VectorIndex {
            hnsw: Hnsw::new(dimension, space, params),
            positions: Vec::new(),
        }
    }

    /// Adds a record's embedding; returns its slot.
    pub fn insert(&mut self, position: i64, embedding: &[f32]) -> u32 {
        let slot = self.hnsw.insert(embedding);
        let index = slot as usize;
        if self.positions.len() <= index {
            self.positions.resize(index + 1, None);
        }
        self.positions[index] = Some(position);
        slot
    }

    pub fn remove(&mut self, slot: u32) {
        self.hnsw.remove(slot);
        if let Some(position) = self.positions.get_mut(slot as usize) {
            *position = None;
        }
    }

    /// Rebuilds the index without deleted slots once enough have accumulated, and
    /// gives each record its new slot.
    pub fn compact_if_needed(&mut self, records: &mut BTreeMap<i64, Record>) {
        if !self.hnsw.needs_compaction() {
            return;
        }
        let (compacted, mapping) = self.hnsw.compacted();
        let mut positions = vec![None; compacted.slots()];
        for record in records.values_mut() {
            record.slot = record
                .slot
                .and_then(|slot| mapping.get(slot as usize).copied().flatten());
        }
        for (position, record) in records.iter() {
            if let Some(slot) = record.slot {
                if let Some(entry) = positions.get_mut(slot as usize) {
                    *entry = Some(*position);
                }
            }
        }
        tracing::debug!(
            removed = self.hnsw.slots() - compacted.slots(),
            slots = compacted.slots(),
            "compacted a collection's vector index"
        );
        self.hnsw = compacted;
        self.positions = positions;
    }

    /// Returns the record positions nearest the query with their exact distances,
    /// nearest first. `allow` restricts the result to positions it accepts.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        allow: Option<&dyn Fn(i64) -> bool>,
    ) -> Vec<(i64, f32)> {
        let positions = &self.positions;
        let position_of = |slot: u32| positions.get(slot as usize).copied().flatten();
        let allow_slot = |slot: u32| match (position_of(slot), allow) {
            (Some(position), Some(allow)) => allow(position),
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.hnsw
            .search(query, k, ef, Some(&allow_slot))
            .into_iter()
            .filter_map(|neighbour| position_of(neighbour.handle).map(|p| (p, neighbour.distance)))
            .collect()
    }
}
