//! The approximate-nearest-neighbour index of one collection's records.
//!
//! Every record with an embedding has a slot in the collection's HNSW index once the
//! collection is large enough to need one. Each slot maps to the position of its
//! record. A writer inserts new slots hidden, publishes them together with the records
//! of its batch, and removes replaced slots afterwards, so no query result contains half a
//! batch. [`VectorIndex::begin_checkpoint`] writes the index with that mapping, so a
//! restart loads the graph instead of rebuilding it.
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

use std::collections::{BTreeMap, HashMap};

use api::config::HnswConfiguration;
use index::hnsw::{CheckpointWriteError, CheckpointWriter, Hnsw, HnswParams};
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
    /// Record position to its published slot, the inverse of `positions`.
    published: HashMap<i64, u32>,
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
            published: HashMap::new(),
        }
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

    /// Returns the published slot of the record at `position`.
    pub fn slot_of(&self, position: i64) -> Option<u32> {
        self.published.get(&position).copied()
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

    /// Lets searches return `slot` as the record at `position`. Returns the slot that
    /// the position had before, which searches no longer return and the caller
    /// deletes with [`Self::remove`].
    pub fn publish(&mut self, slot: u32, position: i64) -> Option<u32> {
        let entry = self.positions.get_mut(slot as usize)?;
        *entry = Some(position);
        let replaced = self.published.insert(position, slot)?;
        if replaced == slot {
            return None;
        }
        if let Some(entry) = self.positions.get_mut(replaced as usize) {
            *entry = None;
        }
        Some(replaced)
    }

    /// Stops searches from returning the record at `position`. Returns its slot, which
    /// the caller deletes with [`Self::remove`]. Until then, searches still walk
    /// through it.
    pub fn unpublish(&mut self, position: i64) -> Option<u32> {
        let slot = self.published.remove(&position)?;
        if let Some(entry) = self.positions.get_mut(slot as usize) {
            *entry = None;
        }
        Some(slot)
    }

    /// Deletes a slot from the graph and repairs its neighbours' lists.
    pub fn remove(&mut self, slot: u32) {
        self.hnsw.remove(slot);
        let Some(entry) = self.positions.get_mut(slot as usize) else {
            return;
        };
        if let Some(position) = entry.take() {
            if self.published.get(&position) == Some(&slot) {
                self.published.remove(&position);
            }
        }
    }

    pub fn needs_compaction(&self) -> bool {
        self.hnsw.needs_compaction()
    }

    /// Checks that the index has one live slot per record, published at the record's
    /// position and holding its embedding, and no other live slot. Returns the first
    /// disagreement found.
    pub fn verify(&self, records: &BTreeMap<i64, Record>) -> Result<(), String> {
        if self.hnsw.len() != records.len() || self.published.len() != records.len() {
            return Err(format!(
                "the index has {} live and {} published slots for {} records",
                self.hnsw.len(),
                self.published.len(),
                records.len()
            ));
        }
        for (position, record) in records {
            let Some(slot) = self.slot_of(*position) else {
                return Err(format!("the record at position {position} has no slot"));
            };
            if self.positions.get(slot as usize) != Some(&Some(*position)) {
                return Err(format!(
                    "slot {slot} of position {position} is published at another position"
                ));
            }
            if !self.hnsw.holds(slot, &record.embedding) {
                return Err(format!(
                    "slot {slot} does not hold the embedding of the record at position {position}"
                ));
            }
        }
        Ok(())
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

    /// Starts a checkpoint in the layout of the module documentation. This copies the
    /// position table and what inserts and removals change in the graph, about 150
    /// bytes per slot with M = 16, and leaves the vectors, which never change, for
    /// [`IndexCheckpoint::write_slots`].
    pub fn begin_checkpoint(&self) -> IndexCheckpoint {
        let mut bytes = Vec::with_capacity(20 + self.positions.len() * 8);
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(self.positions.len() as u64).to_le_bytes());
        for position in &self.positions {
            bytes.extend_from_slice(&position.unwrap_or(NO_POSITION).to_le_bytes());
        }
        IndexCheckpoint {
            writer: CheckpointWriter::new(self.hnsw.snapshot(), bytes),
        }
    }

    /// Rebuilds an index from the bytes of an [`IndexCheckpoint`]. Returns a description of
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
        let mut published = HashMap::with_capacity(hnsw.len());
        for (slot, raw) in bytes[header..positions_end].chunks_exact(8).enumerate() {
            let value = i64::from_le_bytes(raw.try_into().map_err(|_| "short position")?);
            let live = !hnsw.is_deleted(slot as u32);
            let position = match (value, live) {
                (NO_POSITION, false) => None,
                (position, true) if position >= 1 => {
                    if published.insert(position, slot as u32).is_some() {
                        return Err(format!("position {position} has more than one slot"));
                    }
                    Some(position)
                }
                (_, true) => return Err(format!("live slot {slot} has position {value}")),
                (_, false) => return Err(format!("deleted slot {slot} has position {value}")),
            };
            positions.push(position);
        }
        Ok(VectorIndex {
            hnsw,
            positions,
            published,
        })
    }
}

/// A checkpoint of a [`VectorIndex`] being written; see
/// [`VectorIndex::begin_checkpoint`].
pub(crate) struct IndexCheckpoint {
    writer: CheckpointWriter,
}

impl IndexCheckpoint {
    /// Returns whether every slot is written, so [`Self::finish`] can run.
    pub fn is_complete(&self) -> bool {
        self.writer.remaining_slots() == 0
    }

    /// Writes the next `count` slots with their vectors, which it reads from `index`:
    /// the index the checkpoint began from, in any later state.
    pub fn write_slots(
        &mut self,
        index: &VectorIndex,
        count: usize,
    ) -> Result<(), CheckpointWriteError> {
        self.writer.write_slots(&index.hnsw, count)
    }

    /// Returns the checkpoint's bytes once every slot is written.
    pub fn finish(self) -> Result<Vec<u8>, CheckpointWriteError> {
        self.writer.finish()
    }
}
