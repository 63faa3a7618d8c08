//! Search within one level of the graph, generic over how distances are computed:
//! exactly from the f32 vectors ([`ExactScorer`], used to build the graph) or
//! estimated from int8 codes ([`QuantizedScorer`], used to traverse it at search time).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::quantized::{Codes, QueryCode};
use super::Hnsw;
use crate::kernels::{CodeKernel, Kernel, Kernels};
use crate::Space;

/// A set of visited slots, cleared in O(1) by moving to a new generation number.
#[derive(Default)]
pub(super) struct Visited {
    marks: Vec<u16>,
    generation: u16,
}

impl Visited {
    /// Starts a new search over `slots` slots.
    fn reset(&mut self, slots: usize) {
        if self.marks.len() < slots {
            self.marks.resize(slots, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.fill(0);
            self.generation = 1;
        }
    }

    /// Marks a slot; returns whether it was already marked in this search.
    #[inline]
    fn check_and_mark(&mut self, slot: u32) -> bool {
        let mark = &mut self.marks[slot as usize];
        let seen = *mark == self.generation;
        *mark = self.generation;
        seen
    }
}

/// The buffers of one layer search, kept between searches so a warm search does not
/// allocate.
#[derive(Default)]
pub(super) struct LayerBuffers {
    visited: Visited,
    /// Slots still to expand, nearest on top.
    candidates: BinaryHeap<Reverse<u64>>,
    /// The best `ef` accepted slots found so far, farthest on top.
    results: BinaryHeap<u64>,
    /// Neighbours of the slot being expanded that were not visited before.
    unvisited: Vec<u32>,
}

/// Packs a distance and a slot into one integer whose unsigned order is
/// `distance.total_cmp`, then slot, so the heaps compare single integers and ties
/// resolve the same way on every run.
#[inline]
pub(super) fn order_key(distance: f32, slot: u32) -> u64 {
    let bits = distance.to_bits();
    // Negative floats order backwards as integers, so all their bits are flipped.
    // The others get only the sign bit flipped, which sorts them above every negative.
    let ordered = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    (u64::from(ordered) << 32) | u64::from(slot)
}

/// Returns the distance that [`order_key`] packed.
#[inline]
pub(super) fn key_distance(key: u64) -> f32 {
    let ordered = (key >> 32) as u32;
    let bits = if ordered >> 31 == 1 {
        ordered & 0x7fff_ffff
    } else {
        !ordered
    };
    f32::from_bits(bits)
}

#[inline]
fn key_slot(key: u64) -> u32 {
    key as u32
}

/// The distance from one query to any slot, as a layer search needs it.
pub(super) trait Scorer {
    fn distance(&self, slot: u32) -> f32;

    /// Asks the CPU to load what [`Scorer::distance`] reads for `slot` into cache.
    fn prefetch(&self, slot: u32);
}

/// Exact distances in the index's space, through a kernel chosen once.
#[derive(Clone, Copy)]
pub(super) struct ExactDistance {
    kernel: Kernel,
    space: Space,
}

impl ExactDistance {
    pub fn new(space: Space, kernels: &Kernels) -> ExactDistance {
        let kernel = match space {
            Space::L2 => kernels.squared_l2,
            Space::InnerProduct | Space::Cosine => kernels.dot,
        };
        ExactDistance { kernel, space }
    }

    /// Returns the distance between two prepared vectors (normalised for cosine).
    #[inline]
    pub fn between(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.space {
            Space::L2 => (self.kernel)(a, b),
            Space::InnerProduct | Space::Cosine => 1.0 - (self.kernel)(a, b),
        }
    }
}

/// Exact distances from a prepared query to the stored f32 vectors.
pub(super) struct ExactScorer<'a> {
    pub index: &'a Hnsw,
    pub query: &'a [f32],
}

impl Scorer for ExactScorer<'_> {
    #[inline]
    fn distance(&self, slot: u32) -> f32 {
        self.index.distance_to(self.query, slot)
    }

    #[inline]
    fn prefetch(&self, slot: u32) {
        crate::kernels::prefetch(self.index.vector(slot));
    }
}

/// Distances estimated from int8 codes; see the `quantized` module.
pub(super) struct QuantizedScorer<'a> {
    pub codes: &'a Codes,
    pub query: &'a QueryCode,
    pub kernel: CodeKernel,
    pub space: Space,
}

impl Scorer for QuantizedScorer<'_> {
    #[inline]
    fn distance(&self, slot: u32) -> f32 {
        self.codes
            .estimate(self.space, self.kernel, self.query, slot)
    }

    #[inline]
    fn prefetch(&self, slot: u32) {
        self.codes.prefetch(slot);
    }
}

impl Hnsw {
    /// Moves greedily to the neighbour nearest the query on `level` until no
    /// neighbour is nearer. Deleted slots are walked through like any other.
    pub(super) fn greedy_step(
        &self,
        scorer: &impl Scorer,
        mut current: u32,
        mut distance: f32,
        level: usize,
    ) -> (u32, f32) {
        loop {
            let mut improved = false;
            for &neighbour in self.graph.neighbours(current, level) {
                let candidate = scorer.distance(neighbour);
                if candidate < distance {
                    distance = candidate;
                    current = neighbour;
                    improved = true;
                }
            }
            if !improved {
                return (current, distance);
            }
        }
    }

    /// Stores in `found` up to `ef` slots near the query on `level`, nearest first,
    /// starting from `entries`. Only slots that `accept` takes are stored, but every
    /// slot is walked through. While fewer than `ef` acceptable slots are found the
    /// search keeps expanding, so a rule that accepts few slots makes it visit much of
    /// the graph.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn search_layer(
        &self,
        scorer: &impl Scorer,
        entries: &[(f32, u32)],
        ef: usize,
        level: usize,
        buffers: &mut LayerBuffers,
        accept: impl Fn(u32) -> bool,
        found: &mut Vec<(f32, u32)>,
    ) {
        let LayerBuffers {
            visited,
            candidates,
            results,
            unvisited,
        } = buffers;
        visited.reset(self.slots());
        candidates.clear();
        results.clear();

        for &(distance, slot) in entries {
            if visited.check_and_mark(slot) {
                continue;
            }
            candidates.push(Reverse(order_key(distance, slot)));
            if accept(slot) {
                results.push(order_key(distance, slot));
                if results.len() > ef {
                    results.pop();
                }
            }
        }
        let bound = |results: &BinaryHeap<u64>| match results.peek() {
            Some(&worst) if results.len() >= ef => key_distance(worst),
            _ => f32::INFINITY,
        };
        let mut lower_bound = bound(results);

        while let Some(Reverse(key)) = candidates.pop() {
            if key_distance(key) > lower_bound {
                break;
            }
            // The slot on top is the next one expanded unless a neighbour scored below
            // turns out nearer, so start loading its neighbour list now. The loop
            // below prefetches the list of each neighbour that takes the top instead.
            let mut next_key = u64::MAX;
            if let Some(&Reverse(next)) = candidates.peek() {
                next_key = next;
                self.graph.prefetch_neighbours(key_slot(next), level);
            }

            // Prefetching every unvisited neighbour before scoring the first keeps many
            // cache misses in flight at once. With 100,000 MiniLM vectors (384
            // dimensions) on a 2-core AMD EPYC with AVX-512, it served about 1.5 times
            // the queries per second of prefetching two neighbours ahead.
            unvisited.clear();
            for &neighbour in self.graph.neighbours(key_slot(key), level) {
                if !visited.check_and_mark(neighbour) {
                    unvisited.push(neighbour);
                    scorer.prefetch(neighbour);
                }
            }

            for &neighbour in unvisited.iter() {
                let candidate = scorer.distance(neighbour);
                if candidate < lower_bound {
                    let key = order_key(candidate, neighbour);
                    if key < next_key {
                        next_key = key;
                        self.graph.prefetch_neighbours(neighbour, level);
                    }
                    candidates.push(Reverse(key));
                    if accept(neighbour) {
                        results.push(key);
                        if results.len() > ef {
                            results.pop();
                        }
                        lower_bound = bound(results);
                    }
                }
            }
        }

        found.clear();
        found.extend(
            results
                .drain()
                .map(|key| (key_distance(key), key_slot(key))),
        );
        sort_nearest_first(found);
    }
}

/// Sorts by distance, then slot.
pub(super) fn sort_nearest_first(found: &mut [(f32, u32)]) {
    found.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_key_matches_total_cmp() {
        let distances = [
            f32::NEG_INFINITY,
            -2.5,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            0.5,
            1.0,
            3.0e38,
            f32::INFINITY,
        ];
        for &a in &distances {
            assert_eq!(key_distance(order_key(a, 7)).to_bits(), a.to_bits());
            for &b in &distances {
                let expected = a.total_cmp(&b);
                assert_eq!(
                    order_key(a, 3).cmp(&order_key(b, 3)),
                    expected,
                    "{a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn order_key_breaks_ties_by_slot() {
        assert!(order_key(0.25, 1) < order_key(0.25, 2));
        assert_eq!(key_slot(order_key(0.25, u32::MAX)), u32::MAX);
    }
}
