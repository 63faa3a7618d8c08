//! Search within one level of the graph.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::Hnsw;

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

/// A distance and slot ordered by distance, then slot.
#[derive(Clone, Copy, PartialEq)]
pub(super) struct Scored(pub f32, pub u32);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

impl Hnsw {
    /// Moves greedily to the neighbour nearest the query on `level` until no
    /// neighbour is nearer. Deleted slots are walked through like any other.
    pub(super) fn greedy_step(
        &self,
        query: &[f32],
        mut current: u32,
        mut distance: f32,
        level: usize,
    ) -> (u32, f32) {
        loop {
            let mut improved = false;
            for &neighbour in self.graph.neighbours(current, level) {
                let candidate = self.distance_to(query, neighbour);
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

    /// Returns up to `ef` slots near the query on `level`, nearest first, starting
    /// from `entries`. Only slots that are not deleted and that `allow` accepts are
    /// returned, but every slot is walked through. While fewer than `ef` acceptable
    /// slots are found the search keeps expanding, so a filter that accepts few slots
    /// makes it visit much of the graph.
    pub(super) fn search_layer(
        &self,
        query: &[f32],
        entries: &[(f32, u32)],
        ef: usize,
        level: usize,
        visited: &mut Visited,
        allow: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(f32, u32)> {
        self.search_layer_with(query, entries, ef, level, visited, |slot| {
            !self.deleted[slot as usize] && allow.is_none_or(|allow| allow(slot))
        })
    }

    /// The layer search with any acceptance rule; insertion accepts every slot.
    pub(super) fn search_layer_with(
        &self,
        query: &[f32],
        entries: &[(f32, u32)],
        ef: usize,
        level: usize,
        visited: &mut Visited,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<(f32, u32)> {
        visited.reset(self.slots());
        let mut candidates: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef * 2);
        let mut results: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);

        for &(distance, slot) in entries {
            if visited.check_and_mark(slot) {
                continue;
            }
            candidates.push(Reverse(Scored(distance, slot)));
            if accept(slot) {
                results.push(Scored(distance, slot));
                if results.len() > ef {
                    results.pop();
                }
            }
        }
        let bound = |results: &BinaryHeap<Scored>| match results.peek() {
            Some(worst) if results.len() >= ef => worst.0,
            _ => f32::INFINITY,
        };
        let mut lower_bound = bound(&results);

        while let Some(Reverse(Scored(distance, slot))) = candidates.pop() {
            if distance > lower_bound {
                break;
            }
            for &neighbour in self.graph.neighbours(slot, level) {
                if visited.check_and_mark(neighbour) {
                    continue;
                }
                let candidate = self.distance_to(query, neighbour);
                if candidate < lower_bound {
                    candidates.push(Reverse(Scored(candidate, neighbour)));
                    if accept(neighbour) {
                        results.push(Scored(candidate, neighbour));
                        if results.len() > ef {
                            results.pop();
                        }
                        lower_bound = bound(&results);
                    }
                }
            }
        }

        let mut found: Vec<(f32, u32)> = results.into_iter().map(|Scored(d, s)| (d, s)).collect();
        found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        found
    }
}
