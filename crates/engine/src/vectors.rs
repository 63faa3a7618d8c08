//! The approximate-nearest-neighbour index of one collection's records.
//!
//! Every record with an embedding has a slot in the collection's HNSW index once the
//! collection is large enough to need one. Each slot maps to the position of its
//! record. A writer inserts new slots hidden, publishes them together with the records
//! of its batch, and removes replaced slots afterwards, so no query result contains half a
//! batch. [`VectorIndex::checkpoint`] writes the index with that mapping, so a restart
//! loads the graph instead of rebuilding it.
//!
//! # Checkpoint layout, version 1
//!
//! All integers are little-endian.
//!
//! | Field      | Type              | Meaning                                          |
//! |------------|-------------------|--------------------------------------------------|
//! | magic      | 8 bytes           | `RAVVIDX` followed by a zero byte                |
//! | version    | u32               | 1                                                |
//! | slot_count | u64               | number of slots, deleted ones included           |
//! | positions  | slot_count × i64  | record position of each slot, -1 for none        |
//! | graph      | rest of the input | [`Hnsw::checkpoint`] of the index                |
//!
//! A slot has a position exactly when the graph has it live, and no two slots share
//! a position; [`VectorIndex::restore`] rejects input that breaks either rule.

use std::collections::{BTreeMap, HashSet};

use api::config::HnswConfiguration;
use index::hnsw::{Hnsw, HnswParams};
use index::Space;

use crate::state::Record;

/// The seed of every collection's level assignment, so a collection built from the
/// same writes has the same graph.
const LEVEL_SEED: u64 = 0x7261_7665_6c69_6e00;

const MAGIC: [u8; 8] = *b"RAVVIDX\0";
const FORMAT_VERSION: u32 = 1;
/// Stored for a slot without a record.
const NO_POSITION: i64 = -1;

/// An HNSW index with the record position of every slot.
pub(crate) struct VectorIndex {
    hnsw: Hnsw,
    /// Slot to record position; `None` for a slot whose record is gone or not yet
    /// published.
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

    /// Builds an index over `records` in position order and returns it with each
    /// record's slot, in the same order.
    pub fn build<'a>(
        dimension: usize,
        space: Space,
        configuration: &HnswConfiguration,
        records: impl Iterator<Item = (i64, &'a [f32])>,
    ) -> (VectorIndex, Vec<(i64, u32)>) {
        let mut index = VectorIndex::new(dimension, space, configuration);
        let slots = records
            .map(|(position, embedding)| {
                let slot = index.insert_hidden(embedding);
                index.publish(slot, position);
                (position, slot)
            })
            .collect();
        (index, slots)
    }

    /// Returns the number of live slots.
    pub fn len(&self) -> usize {
        self.hnsw.len()
    }

    /// Returns the number of slots, deleted ones included.
    pub fn slots(&self) -> usize {
        self.hnsw.slots()
    }

    pub fn dimension(&self) -> usize {
        self.hnsw.dimension()
    }

    pub fn space(&self) -> Space {
        self.hnsw.space()
    }

    /// Adds an embedding whose slot searches do not return until [`Self::publish`].
    pub fn insert_hidden(&mut self, embedding: &[f32]) -> u32 {
        let slot = self.hnsw.insert(embedding);
        let index = slot as usize;
        if self.positions.len() <= index {
            self.positions.resize(index + 1, None);
        }
        slot
    }

    /// Lets searches return `slot` as the record at `position`.
    pub fn publish(&mut self, slot: u32, position: i64) {
        if let Some(entry) = self.positions.get_mut(slot as usize) {
            *entry = Some(position);
        }
    }

    /// Stops searches from returning `slot`, which [`Self::remove`] later deletes from
    /// the graph. Until then, searches still walk through it.
    pub fn hide(&mut self, slot: u32) {
        if let Some(entry) = self.positions.get_mut(slot as usize) {
            *entry = None;
        }
    }

    /// Deletes a slot from the graph and repairs its neighbours' lists.
    pub fn remove(&mut self, slot: u32) {
        self.hnsw.remove(slot);
        self.hide(slot);
    }

    pub fn needs_compaction(&self) -> bool {
        self.hnsw.needs_compaction()
    }

    /// Builds the index again without deleted slots. Returns it with the mapping
    /// from each old slot to its new one, for [`Self::renumber`].
    pub fn compacted(&self) -> (VectorIndex, Vec<Option<u32>>) {
        let (hnsw, mapping) = self.hnsw.compacted();
        let mut positions = vec![None; hnsw.slots()];
        for (old, new) in mapping.iter().enumerate() {
            if let (Some(new), Some(position)) = (new, self.positions.get(old).copied().flatten()) {
                positions[*new as usize] = Some(position);
            }
        }
        (VectorIndex { hnsw, positions }, mapping)
    }

    /// Gives every record the slot that `mapping` from [`Self::compacted`] assigns.
    pub fn renumber(records: &mut BTreeMap<i64, Record>, mapping: &[Option<u32>]) {
        for record in records.values_mut() {
            record.slot = record
                .slot
                .and_then(|slot| mapping.get(slot as usize).copied().flatten());
        }
    }

    /// Returns the live slots with their record positions.
    pub fn live_slots(&self) -> impl Iterator<Item = (u32, i64)> + '_ {
        self.positions
            .iter()
            .enumerate()
            .filter_map(|(slot, position)| position.map(|position| (slot as u32, position)))
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

    /// Serialises the index in the layout of the module documentation.
    pub fn checkpoint(&self) -> Vec<u8> {
        let graph = self.hnsw.checkpoint();
        let mut bytes = Vec::with_capacity(20 + self.positions.len() * 8 + graph.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(self.positions.len() as u64).to_le_bytes());
        for position in &self.positions {
            bytes.extend_from_slice(&position.unwrap_or(NO_POSITION).to_le_bytes());
        }
        bytes.extend_from_slice(&graph);
        bytes
    }

    /// Rebuilds an index from [`Self::checkpoint`] output. Returns a description of
    /// the first problem for input that is damaged or does not follow the layout.
    pub fn restore(bytes: &[u8]) -> Result<VectorIndex, String> {
        let header = MAGIC.len() + 4 + 8;
        if bytes.len() < header || bytes[..MAGIC.len()] != MAGIC {
            return Err("the checkpoint does not start with the index magic".into());
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| "short header")?);
        if version != FORMAT_VERSION {
            return Err(format!("unsupported checkpoint version {version}"));
        }
        let slot_count = u64::from_le_bytes(bytes[12..20].try_into().map_err(|_| "short header")?);
        let positions_end = usize::try_from(slot_count)
            .ok()
            .and_then(|count| count.checked_mul(8))
            .and_then(|length| length.checked_add(header))
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| format!("{slot_count} slots do not fit in the checkpoint"))?;
        let hnsw = Hnsw::restore(&bytes[positions_end..]).map_err(|error| error.to_string())?;
        if hnsw.slots() as u64 != slot_count {
            return Err(format!(
                "the graph has {} slots and the position table {slot_count}",
                hnsw.slots()
            ));
        }

        let mut positions = Vec::with_capacity(hnsw.slots());
        let mut seen = HashSet::with_capacity(hnsw.len());
        for (slot, raw) in bytes[header..positions_end].chunks_exact(8).enumerate() {
            let value = i64::from_le_bytes(raw.try_into().map_err(|_| "short position")?);
            let live = !hnsw.is_deleted(slot as u32);
            let position = match (value, live) {
                (NO_POSITION, false) => None,
                (position, true) if position >= 1 => {
                    if !seen.insert(position) {
                        return Err(format!("position {position} has more than one slot"));
                    }
                    Some(position)
                }
                (_, true) => return Err(format!("live slot {slot} has position {value}")),
                (_, false) => return Err(format!("deleted slot {slot} has position {value}")),
            };
            positions.push(position);
        }
        Ok(VectorIndex { hnsw, positions })
    }
}
