//! A hierarchical navigable small-world graph (HNSW) for approximate nearest-neighbour
//! search, after Malkov and Yashunin, "Efficient and robust approximate nearest
//! neighbor search using Hierarchical Navigable Small World graphs" (2018).
//!
//! Every vector gets a slot, numbered from 0 in insertion order, and a random level
//! drawn from a geometric distribution seeded by [`HnswParams::seed`], so the same
//! inserts build the same graph. Level 0 contains every slot with up to `2 × M`
//! neighbours. Each higher level contains a thinning subset with up to `M`. A search
//! descends greedily from the entry point through the upper levels and then explores
//! level 0 with a candidate list of `ef` entries.
//!
//! Vectors of a cosine index are normalised on insert, so cosine distance becomes
//! `1 - dot`. Removal marks a slot as deleted and repairs the lists of its
//! neighbours. Searches walk through deleted slots that stale links still reach but
//! never return them, and the owner replaces the index with a compacted copy once too
//! many slots are deleted.
//!
//! Insertion computes exact f32 distances. A search walks the graph with distances
//! estimated from int8 copies of the vectors, which are a quarter of the size and so
//! miss the cache far less often. It then recomputes exact f32 distances for the `ef`
//! slots it found, skipping those that an error bound on the estimate rules out of
//! the `k` nearest, and returns the `k` nearest by exact distance. The copies add
//! about a quarter to the memory of the vectors. Past `MAX_EXACT_CODE_BYTES`
//! dimensions the index keeps no copies and searches with exact distances.
//!
//! - `graph`: the neighbour lists, one flat buffer for level 0.
//! - `search`: the layer search with a generation-stamped visited set and prefetching.
//! - `quantized`: the int8 codes and the distance estimates.
//! - `insert`: insertion with the neighbour-selection heuristic.
//! - `remove`: removal with neighbour repair, and compaction.
//! - `checkpoint`: [`Hnsw::checkpoint`] and [`Hnsw::restore`], the on-disk format.

mod checkpoint;
mod graph;
mod insert;
mod quantized;
mod remove;
mod search;

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::exact::Neighbour;
use crate::inverse_norm;
use crate::kernels::{CodeKernel, Kernels, MAX_EXACT_CODE_BYTES};
use crate::Space;

pub use self::checkpoint::{
    CheckpointError, CheckpointSnapshot, CheckpointWriteError, CheckpointWriter,
};
use self::graph::Graph;
use self::quantized::{Codes, QueryCode};
pub use self::remove::{
    COMPACTION_FRACTION_DENOMINATOR, COMPACTION_FRACTION_NUMERATOR, COMPACTION_MIN_DELETED,
};
use self::search::{
    key_distance, order_key, sort_nearest_first, ExactDistance, ExactScorer, LayerBuffers,
    QuantizedScorer, Scorer,
};

/// Construction parameters, with Chroma's names in the collection configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// `max_neighbors` (M): neighbours per slot on the upper levels; level 0 keeps
    /// twice as many.
    pub max_neighbors: usize,
    /// `ef_construction`: the candidate list size while inserting.
    pub ef_construction: usize,
    /// Seed of the level assignment.
    pub seed: u64,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            max_neighbors: 16,
            ef_construction: 100,
            seed: 0x5eed,
        }
    }
}

/// The source of [`Hnsw::id`].
static NEXT_INDEX_ID: AtomicU64 = AtomicU64::new(0);

/// An HNSW index over vectors of one dimension and space.
pub struct Hnsw {
    /// Differs between any two indexes of the process, so a [`CheckpointWriter`] can
    /// check that it reads vectors from the index its snapshot came from.
    id: u64,
    dimension: usize,
    space: Space,
    params: HnswParams,
    /// Slot `i`'s vector at `i * dimension`; normalised for the cosine space.
    vectors: Vec<f32>,
    /// Int8 copies of `vectors` for search-time traversal, or `None` when the
    /// dimension exceeds what the code kernel sums exactly in an i32.
    codes: Option<Codes>,
    exact: ExactDistance,
    code_kernel: CodeKernel,
    graph: Graph,
    deleted: Vec<bool>,
    deleted_count: usize,
    rng: SplitMix64,
    /// `1 / ln(M)`, the scale of the level distribution.
    level_scale: f64,
    /// Buffers reused across searches, one set per concurrent search.
    buffer_pool: Mutex<Vec<SearchBuffers>>,
}

/// Everything a search writes, kept between searches so a warm search allocates only
/// its result.
#[derive(Default)]
struct SearchBuffers {
    layer: LayerBuffers,
    /// The query as the index compares it (normalised for the cosine space).
    query: Vec<f32>,
    query_code: QueryCode,
    /// Entry points of a layer search and its results.
    entries: Vec<(f32, u32)>,
    found: Vec<(f32, u32)>,
    /// The `k` nearest exact distances while re-ranking, farthest on top.
    nearest: BinaryHeap<u64>,
}

impl Hnsw {
    /// Creates an empty index. M is clamped to `2..=MAX_NEIGHBORS` (1,024), so every
    /// index can be written to a checkpoint and restored.
    pub fn new(dimension: usize, space: Space, params: HnswParams) -> Hnsw {
        Hnsw::with_kernels(dimension, space, params, crate::kernels::kernels())
    }

    fn with_kernels(dimension: usize, space: Space, params: HnswParams, kernels: &Kernels) -> Hnsw {
        let max_neighbors = params.max_neighbors.clamp(2, checkpoint::MAX_NEIGHBORS);
        let params = HnswParams {
            max_neighbors,
            ef_construction: params.ef_construction.max(1),
            ..params
        };
        Hnsw {
            id: NEXT_INDEX_ID.fetch_add(1, Ordering::Relaxed),
            dimension,
            space,
            params,
            vectors: Vec::new(),
            codes: (dimension <= MAX_EXACT_CODE_BYTES).then(|| Codes::new(dimension)),
            exact: ExactDistance::new(space, kernels),
            code_kernel: kernels.dot_u8_i8,
            graph: Graph::new(max_neighbors),
            deleted: Vec::new(),
            deleted_count: 0,
            rng: SplitMix64(params.seed),
            level_scale: 1.0 / (max_neighbors as f64).ln(),
            buffer_pool: Mutex::new(Vec::new()),
        }
    }

    pub fn dimension(&self) -> usize {
        self.dimension
    }

    pub fn space(&self) -> Space {
        self.space
    }

    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Returns the number of slots, deleted ones included.
    pub fn slots(&self) -> usize {
        self.deleted.len()
    }

    /// Returns the number of slots that are not deleted.
    pub fn len(&self) -> usize {
        self.deleted.len() - self.deleted_count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn deleted_count(&self) -> usize {
        self.deleted_count
    }

    pub fn is_deleted(&self, slot: u32) -> bool {
        self.deleted.get(slot as usize).copied().unwrap_or(true)
    }

    /// Returns whether `slot` is live and stores `vector` as [`Hnsw::insert`] stored it
    /// (normalised for the cosine space).
    pub fn holds(&self, slot: u32, vector: &[f32]) -> bool {
        if self.is_deleted(slot) || vector.len() != self.dimension {
            return false;
        }
        let mut prepared = Vec::with_capacity(self.dimension);
        self.prepare(vector, &mut prepared);
        prepared == self.vector(slot)
    }

    /// Returns an estimate of the heap memory the index uses, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.vectors.capacity() * std::mem::size_of::<f32>()
            + self.codes.as_ref().map_or(0, Codes::memory_bytes)
            + self.graph.memory_bytes()
            + self.deleted.capacity()
    }

    /// Returns the stored vector of a slot (normalised for the cosine space).
    fn vector(&self, slot: u32) -> &[f32] {
        let start = slot as usize * self.dimension;
        &self.vectors[start..start + self.dimension]
    }

    /// Returns the distance between a prepared query and a slot.
    #[inline]
    fn distance_to(&self, query: &[f32], slot: u32) -> f32 {
        self.exact.between(query, self.vector(slot))
    }

    /// Stores the query as the index compares it in `prepared`: normalised for the
    /// cosine space.
    fn prepare(&self, vector: &[f32], prepared: &mut Vec<f32>) {
        prepared.clear();
        match self.space {
            Space::Cosine => {
                let scale = inverse_norm(vector);
                prepared.extend(vector.iter().map(|value| value * scale));
            }
            Space::L2 | Space::InnerProduct => prepared.extend_from_slice(vector),
        }
    }

    /// Returns the `k` nearest slots to `query` that are not deleted and that `allow`
    /// accepts, nearest first, exploring `max(ef, k)` candidates on level 0. The
    /// distances are exact f32 distances in the index's space.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        allow: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<Neighbour<u32>> {
        if k == 0 || query.len() != self.dimension {
            return Vec::new();
        }
        let Some(entry) = self.graph.entry() else {
            return Vec::new();
        };
        let mut buffers = self.buffer_pool.lock().pop().unwrap_or_default();
        let SearchBuffers {
            layer,
            query: prepared,
            query_code,
            entries,
            found,
            nearest,
        } = &mut buffers;
        self.prepare(query, prepared);
        let accept =
            |slot: u32| !self.deleted[slot as usize] && allow.is_none_or(|allow| allow(slot));

        match &self.codes {
            Some(codes) => {
                codes.quantize_query(prepared, query_code);
                let scorer = QuantizedScorer {
                    codes,
                    query: query_code,
                    kernel: self.code_kernel,
                    space: self.space,
                };
                self.search_from_top(&scorer, entry, ef.max(k), layer, entries, accept, found);
                self.rerank_exactly(codes, query_code, prepared, k, found, nearest);
            }
            None => {
                let scorer = ExactScorer {
                    index: self,
                    query: prepared,
                };
                self.search_from_top(&scorer, entry, ef.max(k), layer, entries, accept, found);
            }
        }

        let result = found
            .iter()
            .take(k)
            .map(|&(distance, slot)| Neighbour {
                handle: slot,
                distance,
            })
            .collect();
        self.buffer_pool.lock().push(buffers);
        result
    }

    /// Descends greedily from `entry` through the upper levels, then stores the `ef`
    /// nearest accepted slots of level 0 in `found`.
    #[allow(clippy::too_many_arguments)]
    fn search_from_top(
        &self,
        scorer: &impl Scorer,
        entry: u32,
        ef: usize,
        layer: &mut LayerBuffers,
        entries: &mut Vec<(f32, u32)>,
        accept: impl Fn(u32) -> bool,
        found: &mut Vec<(f32, u32)>,
    ) {
        let mut current = entry;
        let mut current_distance = scorer.distance(current);
        for level in (1..=self.graph.max_level()).rev() {
            (current, current_distance) =
                self.greedy_step(scorer, current, current_distance, level);
        }
        entries.clear();
        entries.push((current_distance, current));
        self.search_layer(scorer, entries, ef, 0, layer, accept, found);
    }

    /// Replaces the estimated distances in `found` with exact ones, skipping every
    /// slot whose error bound shows it cannot be among the `k` nearest by exact
    /// distance, and sorts the rest nearest first.
    #[allow(clippy::too_many_arguments)]
    fn rerank_exactly(
        &self,
        codes: &Codes,
        query_code: &QueryCode,
        query: &[f32],
        k: usize,
        found: &mut Vec<(f32, u32)>,
        nearest: &mut BinaryHeap<u64>,
    ) {
        nearest.clear();
        let mut kth_distance = f32::INFINITY;
        let mut kept = 0;
        for position in 0..found.len() {
            let (estimate, slot) = found[position];
            if estimate - codes.error_bound(self.space, query_code, slot) > kth_distance {
                continue;
            }
            let distance = self.distance_to(query, slot);
            found[kept] = (distance, slot);
            kept += 1;
            nearest.push(order_key(distance, slot));
            if nearest.len() > k {
                nearest.pop();
            }
            if nearest.len() == k {
                kth_distance = nearest
                    .peek()
                    .map_or(f32::INFINITY, |&key| key_distance(key));
            }
        }
        found.truncate(kept);
        sort_nearest_first(found);
    }
}

/// A small, fast generator for the level assignment (Steele, Lea and Flood's
/// SplitMix64). Not for anything that needs unpredictability.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a float uniform in (0, 1].
    fn next_unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests;

/// Inputs shared by the index's tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::SplitMix64;
    use crate::Space;

    pub const SPACES: [Space; 3] = [Space::L2, Space::InnerProduct, Space::Cosine];

    /// Deterministic vectors in `clusters` tight groups: each is a random centre in
    /// [-1, 1) plus noise of at most `spread` per component. Neighbours in such data
    /// are mostly within one group, which is harder for a graph than uniform data.
    pub fn clustered(
        count: usize,
        dimension: usize,
        clusters: usize,
        spread: f64,
        seed: u64,
    ) -> Vec<Vec<f32>> {
        let centres = vectors(clusters, dimension, seed);
        let mut rng = SplitMix64(seed ^ 0x5a5a_5a5a);
        (0..count)
            .map(|i| {
                centres[i % clusters]
                    .iter()
                    .map(|centre| {
                        (f64::from(*centre) + (rng.next_unit() * 2.0 - 1.0) * spread) as f32
                    })
                    .collect()
            })
            .collect()
    }

    /// Deterministic pseudo-random vectors in [-1, 1).
    pub fn vectors(count: usize, dimension: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = SplitMix64(seed);
        (0..count)
            .map(|_| {
                (0..dimension)
                    .map(|_| (rng.next_unit() * 2.0 - 1.0) as f32)
                    .collect()
            })
            .collect()
    }
}
