//! Insertion: a random level, a search for neighbours on each level from the top down,
//! and links in both directions chosen by the neighbour-selection heuristic.

use super::search::{ExactScorer, Scorer};
use super::Hnsw;

/// The highest level a slot gets. Levels above 32 would need more than 16^32 vectors
/// to arise naturally with the default M of 16.
pub(super) const MAX_LEVEL: usize = 32;

impl Hnsw {
    /// Inserts a vector and returns its slot. The vector must have the index's
    /// dimension.
    pub fn insert(&mut self, vector: &[f32]) -> u32 {
        assert_eq!(
            vector.len(),
            self.dimension,
            "vector dimension must match the index"
        );
        let mut prepared = Vec::with_capacity(self.dimension);
        self.prepare(vector, &mut prepared);
        self.insert_prepared(&prepared)
    }

    /// Inserts a vector already prepared for the index's space (normalised for
    /// cosine) and returns its slot.
    pub(super) fn insert_prepared(&mut self, prepared: &[f32]) -> u32 {
        let had_live_slots = !self.is_empty();
        let level = self.random_level();
        self.vectors.extend_from_slice(prepared);
        if let Some(codes) = &mut self.codes {
            codes.push(prepared);
        }
        self.deleted.push(false);
        let slot = self.graph.push(level);

        // With every earlier slot deleted, the new slot starts the live graph alone.
        // Linking it to deleted slots would only lead searches through them.
        let Some(entry) = self.graph.entry().filter(|_| had_live_slots) else {
            self.graph.set_entry(slot, level);
            return slot;
        };

        let mut buffers = self.buffer_pool.lock().pop().unwrap_or_default();
        let scorer = ExactScorer {
            index: self,
            query: prepared,
        };
        let top = self.graph.max_level();
        let mut current = entry;
        let mut current_distance = scorer.distance(current);
        for search_level in (level + 1..=top).rev() {
            (current, current_distance) =
                self.greedy_step(&scorer, current, current_distance, search_level);
        }

        // The scorer borrows the index, so the links are added after all the searches.
        // That changes nothing: linking on one level does not touch the lists that
        // the searches on the levels below read.
        let mut entries = vec![(current_distance, current)];
        let mut candidates = Vec::new();
        let mut links = Vec::with_capacity(level.min(top) + 1);
        for link_level in (0..=level.min(top)).rev() {
            self.search_layer(
                &scorer,
                &entries,
                self.params.ef_construction,
                link_level,
                &mut buffers.layer,
                |candidate| !self.deleted[candidate as usize],
                &mut candidates,
            );
            let selected = self.select_neighbours(&candidates, self.params.max_neighbors);
            links.push((link_level, selected));
            // A level whose reachable slots are all deleted finds nothing, and the
            // search of the next level then starts from the same entries.
            if !candidates.is_empty() {
                std::mem::swap(&mut entries, &mut candidates);
            }
        }
        self.buffer_pool.lock().push(buffers);

        for (link_level, selected) in links {
            self.graph.set_neighbours(slot, link_level, &selected);
            for &neighbour in &selected {
                self.link_back(neighbour, slot, link_level);
            }
        }

        if level > top {
            self.graph.set_entry(slot, level);
        }
        slot
    }

    fn random_level(&mut self) -> usize {
        let level = (-self.rng.next_unit().ln() * self.level_scale).floor();
        (level as usize).min(MAX_LEVEL)
    }

    /// Chooses up to `limit` neighbours from candidates sorted nearest first, keeping a
    /// candidate only if it is nearer to the base than to every neighbour already
    /// kept. This spreads links across directions instead of clustering them.
    pub(super) fn select_neighbours(&self, candidates: &[(f32, u32)], limit: usize) -> Vec<u32> {
        let mut selected: Vec<u32> = Vec::with_capacity(limit);
        for &(distance, candidate) in candidates {
            if selected.len() >= limit {
                break;
            }
            let candidate_vector = self.vector(candidate);
            let diverse = selected
                .iter()
                .all(|&kept| self.distance_to(candidate_vector, kept) >= distance);
            if diverse {
                selected.push(candidate);
            }
        }
        selected
    }

    /// Adds `slot` to the neighbours of `neighbour` on `level`, re-selecting the list
    /// with the heuristic when it is full.
    fn link_back(&mut self, neighbour: u32, slot: u32, level: usize) {
        if self.graph.try_push_neighbour(neighbour, level, slot) {
            return;
        }
        let base = self.vector(neighbour).to_vec();
        let mut candidates: Vec<(f32, u32)> = self
            .graph
            .neighbours(neighbour, level)
            .iter()
            .chain(std::iter::once(&slot))
            .map(|&other| (self.distance_to(&base, other), other))
            .collect();
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let selected = self.select_neighbours(&candidates, self.graph.capacity(level));
        self.graph.set_neighbours(neighbour, level, &selected);
    }
}
