//! Removal and compaction.
//!
//! [`Hnsw::remove`] marks a slot deleted and repairs the neighbour lists that link to
//! it, so the live graph keeps its quality as slots are deleted. The deleted slot
//! keeps its vector and lists, because links that the repair cannot find may still
//! lead a search to it. [`Hnsw::compacted`] rebuilds the index from the live slots
//! once [`Hnsw::needs_compaction`] reports that enough slots are deleted.

use super::search::sort_nearest_first;
use super::{Hnsw, SplitMix64};

/// The minimum number of deleted slots before [`Hnsw::needs_compaction`] reports true.
pub const COMPACTION_MIN_DELETED: usize = 1000;

/// The fraction of all slots, deleted ones included, that must be deleted before
/// [`Hnsw::needs_compaction`] reports true, as a numerator over
/// [`COMPACTION_FRACTION_DENOMINATOR`]: one quarter.
pub const COMPACTION_FRACTION_NUMERATOR: usize = 1;

/// See [`COMPACTION_FRACTION_NUMERATOR`].
pub const COMPACTION_FRACTION_DENOMINATOR: usize = 4;

impl Hnsw {
    /// Marks a slot deleted, so searches no longer return it, and repairs the graph
    /// around it. A slot that is out of range or already deleted is left alone.
    ///
    /// On every level of the slot, each live neighbour that links back to it drops
    /// the link and re-selects its list with the neighbour-selection heuristic, from
    /// its remaining neighbours plus the removed slot's live neighbours. The nearest
    /// candidates that the heuristic pruned then fill the list up to its capacity,
    /// so repairs do not thin the graph. If the slot
    /// was the entry point, the entry point moves to a live slot of the highest
    /// level that has one.
    ///
    /// NOTE: the repair finds the slots that link to the removed one only through
    /// the removed slot's own lists. Links are mostly but not always mutual, because
    /// a full list drops links when the heuristic re-selects it, so a few live
    /// slots may keep a link to a deleted slot. Searches walk through such links and
    /// never return the deleted slot.
    pub fn remove(&mut self, slot: u32) {
        match self.deleted.get_mut(slot as usize) {
            Some(deleted) if !*deleted => *deleted = true,
            _ => return,
        }
        self.deleted_count += 1;

        for level in 0..=self.graph.level(slot) {
            self.repair_level(slot, level);
        }
        if self.graph.entry() == Some(slot) {
            self.move_entry_point();
        }
    }

    /// Removes the links to `removed` from its live neighbours on `level` and
    /// re-selects their lists.
    fn repair_level(&mut self, removed: u32, level: usize) {
        let removed_neighbours = self.graph.neighbours(removed, level).to_vec();
        let mut candidates: Vec<(f32, u32)> = Vec::new();
        for &neighbour in &removed_neighbours {
            if self.deleted[neighbour as usize] {
                continue;
            }
            let current = self.graph.neighbours(neighbour, level);
            if !current.contains(&removed) {
                continue;
            }

            // Every slot on the removed slot's level-`level` list has a list on that
            // level, so the merged candidates keep the upper-level invariant.
            let base = self.vector(neighbour).to_vec();
            candidates.clear();
            let merged = current.iter().chain(&removed_neighbours);
            for &candidate in merged {
                let usable = candidate != neighbour
                    && !self.deleted[candidate as usize]
                    && !candidates.iter().any(|&(_, kept)| kept == candidate);
                if usable {
                    candidates.push((self.distance_to(&base, candidate), candidate));
                }
            }
            sort_nearest_first(&mut candidates);
            // The heuristic alone thins the lists. With 2,000 random 24-dimensional
            // vectors, half of them removed and ef 100, it reached a recall@10 of
            // 0.996 in the l2 space, against 1.0 with this fill and without repair.
            let capacity = self.graph.capacity(level);
            let mut selected = self.select_neighbours(&candidates, capacity);
            for &(_, candidate) in &candidates {
                if selected.len() >= capacity {
                    break;
                }
                if !selected.contains(&candidate) {
                    selected.push(candidate);
                }
            }
            self.graph.set_neighbours(neighbour, level, &selected);
        }
    }

    /// Moves the entry point to the lowest-numbered live slot of the highest level
    /// that has a live slot, and sets the maximum level to that level. With no live
    /// slot left, the entry point stays where it is, so searches return nothing.
    ///
    /// NOTE: this scans every slot, so deleting the entry point costs O(slots).
    /// Only the entry point's removal pays it, one slot in each removal sequence.
    fn move_entry_point(&mut self) {
        let mut best: Option<(usize, u32)> = None;
        for slot in 0..self.slots() as u32 {
            if self.deleted[slot as usize] {
                continue;
            }
            let level = self.graph.level(slot);
            if best.is_none_or(|(best_level, _)| level > best_level) {
                best = Some((level, slot));
            }
        }
        if let Some((level, slot)) = best {
            self.graph.set_entry(slot, level);
        }
    }

    /// Reports whether enough slots are deleted that the owner should replace the
    /// index with [`Hnsw::compacted`]: at least [`COMPACTION_MIN_DELETED`] deleted
    /// slots, making up at least a quarter of all slots.
    ///
    /// The numbers are an estimate, not a measurement. A compaction costs about one
    /// insert per live slot. When a quarter of the slots are deleted, there are
    /// three live slots per delete since the last compaction, so each delete pays
    /// for about three inserts. The deleted slots then take at most a third of the
    /// memory and search work of the live ones. Below 1,000 deleted slots the waste
    /// is under 8 MB even at 1,536 dimensions (a vector, its int8 copy and its
    /// level-0 list per slot), too little to rebuild small indexes over and over.
    pub fn needs_compaction(&self) -> bool {
        self.deleted_count >= COMPACTION_MIN_DELETED
            && self.deleted_count * COMPACTION_FRACTION_DENOMINATOR
                >= self.slots() * COMPACTION_FRACTION_NUMERATOR
    }

    /// Builds a new index from the live slots, inserted in slot order with the same
    /// parameters, seed and distance kernels. Returns it with the mapping from each
    /// old slot to its new slot, `None` for a deleted slot.
    pub fn compacted(&self) -> (Hnsw, Vec<Option<u32>>) {
        let mut compacted = empty_like(self);
        let mut mapping = Vec::with_capacity(self.slots());
        for slot in 0..self.slots() as u32 {
            if self.deleted[slot as usize] {
                mapping.push(None);
            } else {
                mapping.push(Some(compacted.insert_prepared(self.vector(slot))));
            }
        }
        (compacted, mapping)
    }
}

/// Returns an empty index with the parameters and kernels of `index` and a
/// level-assignment generator reset to the seed.
fn empty_like(index: &Hnsw) -> Hnsw {
    let mut empty = Hnsw::new(index.dimension, index.space, index.params);
    empty.exact = index.exact;
    empty.code_kernel = index.code_kernel;
    empty.rng = SplitMix64(index.params.seed);
    empty
}

#[cfg(test)]
mod tests;
