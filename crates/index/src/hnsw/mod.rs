//! A hierarchical navigable small-world graph (HNSW) for approximate nearest-neighbour
//! search, after Malkov and Yashunin, "Efficient and robust approximate nearest
//! neighbor search using Hierarchical Navigable Small World graphs" (2018).
//!
//! Every vector gets a slot, numbered from 0 in insertion order, and a random level
//! drawn from a geometric distribution seeded by [`HnswParams::seed`], so the same
//! inserts build the same graph. Level 0 holds every slot with up to `2 × M`
//! neighbours; each higher level holds a thinning subset with up to `M`. A search
//! descends greedily from the entry point through the upper levels and then explores
//! level 0 with a candidate list of `ef` entries.
//!
//! Vectors of a cosine index are normalised on insert, so cosine distance becomes
//! `1 - dot`. Removal marks a slot as deleted: searches walk through deleted slots but
//! never return them, and the owner rebuilds the index once too many slots are
//! deleted.
//!
//! - `graph`: the neighbour lists, one flat buffer for level 0.
//! - `search`: the layer search with a generation-stamped visited set.
//! - `insert`: insertion with the neighbour-selection heuristic.

mod graph;
mod insert;
mod search;

use parking_lot::Mutex;

use crate::exact::Neighbour;
use crate::{dot, inverse_norm, squared_l2, Space};

use self::graph::Graph;
use self::search::Visited;

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

/// An HNSW index over vectors of one dimension and space.
pub struct Hnsw {
    dimension: usize,
    space: Space,
    params: HnswParams,
    /// Slot `i`'s vector at `i * dimension`; normalised for the cosine space.
    vectors: Vec<f32>,
    graph: Graph,
    deleted: Vec<bool>,
    deleted_count: usize,
    rng: SplitMix64,
    /// `1 / ln(M)`, the scale of the level distribution.
    level_scale: f64,
    /// Visited sets reused across searches, one per concurrent search.
    visited_pool: Mutex<Vec<Visited>>,
}

impl Hnsw {
    pub fn new(dimension: usize, space: Space, params: HnswParams) -> Hnsw {
        let max_neighbors = params.max_neighbors.max(2);
        let params = HnswParams {
            max_neighbors,
            ef_construction: params.ef_construction.max(1),
            ..params
        };
        Hnsw {
            dimension,
            space,
            params,
            vectors: Vec::new(),
            graph: Graph::new(max_neighbors),
            deleted: Vec::new(),
            deleted_count: 0,
            rng: SplitMix64(params.seed),
            level_scale: 1.0 / (max_neighbors as f64).ln(),
            visited_pool: Mutex::new(Vec::new()),
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

    /// Marks a slot deleted. Searches no longer return it.
    pub fn remove(&mut self, slot: u32) {
        if let Some(deleted) = self.deleted.get_mut(slot as usize) {
            if !*deleted {
                *deleted = true;
                self.deleted_count += 1;
            }
        }
    }

    /// Returns an estimate of the heap memory the index uses, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.vectors.capacity() * std::mem::size_of::<f32>()
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
        let vector = self.vector(slot);
        match self.space {
            Space::L2 => squared_l2(query, vector),
            Space::InnerProduct | Space::Cosine => 1.0 - dot(query, vector),
        }
    }

    /// Returns the query as the index compares it: normalised for the cosine space.
    fn prepare(&self, vector: &[f32]) -> Vec<f32> {
        match self.space {
            Space::Cosine => {
                let scale = inverse_norm(vector);
                vector.iter().map(|value| value * scale).collect()
            }
            Space::L2 | Space::InnerProduct => vector.to_vec(),
        }
    }

    /// Returns the `k` nearest slots to `query` that are not deleted and that `allow`
    /// accepts, nearest first, exploring `max(ef, k)` candidates on level 0. The
    /// distances are those of the index's space.
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
        let query = self.prepare(query);
        let mut visited = self.visited_pool.lock().pop().unwrap_or_default();

        let mut current = entry;
        let mut current_distance = self.distance_to(&query, current);
        for level in (1..=self.graph.max_level()).rev() {
            (current, current_distance) =
                self.greedy_step(&query, current, current_distance, level);
        }
        let found = self.search_layer(
            &query,
            &[(current_distance, current)],
            ef.max(k),
            0,
            &mut visited,
            allow,
        );
        self.visited_pool.lock().push(visited);

        found
            .into_iter()
            .take(k)
            .map(|(distance, slot)| Neighbour {
                handle: slot,
                distance,
            })
            .collect()
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
