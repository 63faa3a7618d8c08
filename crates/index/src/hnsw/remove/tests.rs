use super::*;
use crate::exact::nearest;
use crate::hnsw::test_support::{vectors, SPACES};
use crate::{inverse_norm, Space};

fn build(space: Space, data: &[Vec<f32>]) -> Hnsw {
    let mut index = Hnsw::new(data[0].len(), space, super::super::HnswParams::default());
    for vector in data {
        index.insert(vector);
    }
    index
}

/// Returns every slot below `count` in a deterministic random order (Fisher-Yates).
fn shuffled_slots(count: usize, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64(seed);
    let mut slots: Vec<u32> = (0..count as u32).collect();
    for i in (1..slots.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        slots.swap(i, j);
    }
    slots
}

fn exact_top(space: Space, data: &[Vec<f32>], query: &[f32], live: &[bool], k: usize) -> Vec<u32> {
    let query_norm = inverse_norm(query);
    let scored = data
        .iter()
        .enumerate()
        .filter(|(slot, _)| live[*slot])
        .map(|(slot, vector)| {
            let distance = crate::distance(space, query, query_norm, vector, inverse_norm(vector));
            (slot as u32, distance)
        });
    nearest(k, scored).into_iter().map(|n| n.handle).collect()
}

fn mean_recall(index: &Hnsw, data: &[Vec<f32>], queries: &[Vec<f32>], live: &[bool]) -> f64 {
    let mut total = 0.0;
    for query in queries {
        let expected = exact_top(index.space(), data, query, live, 10);
        let found = index.search(query, 10, 100, None);
        let hits = found
            .iter()
            .filter(|n| expected.contains(&n.handle))
            .count();
        total += hits as f64 / expected.len().max(1) as f64;
    }
    total / queries.len() as f64
}

/// Copies an index through a checkpoint.
fn copy(index: &Hnsw) -> Hnsw {
    Hnsw::restore(&index.checkpoint()).expect("a fresh checkpoint restores")
}

/// Marks a slot deleted without repairing the graph, as removal did before repair.
fn mark_deleted_only(index: &mut Hnsw, slot: u32) {
    index.deleted[slot as usize] = true;
    index.deleted_count += 1;
}

/// Returns each result as (slot, distance bits), so comparisons are exact.
fn search_bits(index: &Hnsw, query: &[f32], k: usize, ef: usize) -> Vec<(u32, u32)> {
    index
        .search(query, k, ef, None)
        .into_iter()
        .map(|n| (n.handle, n.distance.to_bits()))
        .collect()
}

/// Returns the highest level among live slots, or `None` without live slots.
fn highest_live_level(index: &Hnsw) -> Option<usize> {
    (0..index.slots() as u32)
        .filter(|&slot| !index.is_deleted(slot))
        .map(|slot| index.graph.level(slot))
        .max()
}

#[test]
fn recall_after_half_deleted_every_space() {
    let data = vectors(2000, 48, 21);
    let queries = vectors(50, 48, 22);
    let removed = &shuffled_slots(data.len(), 23)[..data.len() / 2];
    let mut live = vec![true; data.len()];
    for &slot in removed {
        live[slot as usize] = false;
    }

    for space in SPACES {
        let mut repaired = build(space, &data);
        let mut marked = copy(&repaired);
        for &slot in removed {
            repaired.remove(slot);
            mark_deleted_only(&mut marked, slot);
        }
        assert_eq!(repaired.len(), data.len() / 2, "{space:?}");

        let repaired_recall = mean_recall(&repaired, &data, &queries, &live);
        let marked_recall = mean_recall(&marked, &data, &queries, &live);
        assert!(
            repaired_recall >= 0.95,
            "{space:?}: recall@10 {repaired_recall} after repair"
        );
        assert!(
            repaired_recall >= marked_recall,
            "{space:?}: recall@10 {repaired_recall} after repair, {marked_recall} without"
        );
    }
}

#[test]
fn repair_removes_links_to_removed_slot() {
    let data = vectors(800, 16, 24);
    let mut index = build(Space::L2, &data);
    for &slot in &shuffled_slots(data.len(), 25)[..300] {
        let mut former: Vec<(usize, u32)> = Vec::new();
        for level in 0..=index.graph.level(slot) {
            for &neighbour in index.graph.neighbours(slot, level) {
                former.push((level, neighbour));
            }
        }
        index.remove(slot);
        for (level, neighbour) in former {
            if !index.is_deleted(neighbour) {
                let list = index.graph.neighbours(neighbour, level);
                assert!(!list.contains(&slot), "{neighbour} still links to {slot}");
            }
        }
    }

    for slot in 0..index.slots() as u32 {
        for level in 0..=index.graph.level(slot) {
            let list = index.graph.neighbours(slot, level);
            assert!(!list.contains(&slot), "slot {slot} links to itself");
            let mut sorted = list.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len(), "slot {slot} has a duplicate link");
            for &neighbour in list {
                assert!(index.graph.level(neighbour) >= level);
            }
        }
    }
}

#[test]
fn entry_point_live_after_removal() {
    let data = vectors(500, 8, 26);
    let query = &vectors(1, 8, 27)[0];
    let mut index = build(Space::Cosine, &data);
    for _ in 0..100 {
        let entry = index.graph.entry().expect("index is not empty");
        index.remove(entry);

        let entry = index.graph.entry().expect("entry point kept");
        assert!(!index.is_deleted(entry), "entry point {entry} is deleted");
        assert_eq!(index.graph.level(entry), index.graph.max_level());
        assert_eq!(highest_live_level(&index), Some(index.graph.max_level()));
        assert_eq!(index.search(query, 10, 50, None).len(), 10);
    }
}

#[test]
fn removing_every_slot_empties_results() {
    let data = vectors(300, 8, 28);
    for space in SPACES {
        let mut index = build(space, &data);
        for slot in shuffled_slots(data.len(), 29) {
            index.remove(slot);
        }
        assert!(index.is_empty());
        for query in vectors(5, 8, 30) {
            assert!(index.search(&query, 10, 50, None).is_empty(), "{space:?}");
        }

        let restored = copy(&index);
        assert!(restored.search(&data[0], 10, 50, None).is_empty());

        // The next insert starts a new live graph and becomes the entry point.
        let slot = index.insert(&data[5]);
        assert_eq!(index.graph.entry(), Some(slot));
        assert!(index.graph.neighbours(slot, 0).is_empty());
        let found = index.search(&data[5], 10, 50, None);
        assert_eq!(found.len(), 1, "{space:?}");
        assert_eq!(found[0].handle, slot);
        let second = index.insert(&data[6]);
        assert_eq!(index.graph.neighbours(second, 0), &[slot]);
        assert_eq!(index.search(&data[6], 10, 50, None).len(), 2);
        copy(&index);
    }
}

#[test]
fn remove_invalid_slot_is_noop() {
    let data = vectors(100, 8, 31);
    let mut index = build(Space::L2, &data);
    let before = index.checkpoint();
    index.remove(100);
    index.remove(u32::MAX);
    assert_eq!(index.checkpoint(), before);
    assert_eq!(index.deleted_count(), 0);

    index.remove(7);
    let after_first = index.checkpoint();
    index.remove(7);
    assert_eq!(index.deleted_count(), 1);
    assert_eq!(index.checkpoint(), after_first);

    let mut empty = Hnsw::new(8, Space::L2, super::super::HnswParams::default());
    empty.remove(0);
    assert_eq!(empty.deleted_count(), 0);
}

#[test]
fn inserts_never_link_deleted_slots() {
    let data = vectors(600, 8, 32);
    let mut index = build(Space::L2, &data[..400]);
    for slot in (0..400).step_by(2) {
        index.remove(slot);
    }
    for vector in &data[400..] {
        let slot = index.insert(vector);
        for level in 0..=index.graph.level(slot) {
            for &neighbour in index.graph.neighbours(slot, level) {
                assert!(!index.is_deleted(neighbour), "{slot} links to {neighbour}");
            }
        }
    }
}

#[test]
fn compaction_preserves_results_every_space() {
    let data = vectors(600, 16, 33);
    let queries = vectors(20, 16, 34);
    let removed = &shuffled_slots(data.len(), 35)[..300];
    for space in SPACES {
        let mut index = build(space, &data);
        for &slot in removed {
            index.remove(slot);
        }
        let (compacted, mapping) = index.compacted();

        assert_eq!(mapping.len(), index.slots());
        assert_eq!(compacted.slots(), index.len());
        assert_eq!(compacted.deleted_count(), 0);
        assert_eq!(compacted.params(), index.params());
        let mut next = 0;
        for (old, new) in mapping.iter().enumerate() {
            let old = old as u32;
            match new {
                None => assert!(index.is_deleted(old), "live slot {old} unmapped"),
                Some(new) => {
                    assert!(!index.is_deleted(old), "deleted slot {old} mapped");
                    assert_eq!(*new, next, "slots out of order");
                    assert_eq!(compacted.vector(*new), index.vector(old));
                    next += 1;
                }
            }
        }

        // With ef at least the slot count both searches are exhaustive, so they
        // return the same neighbours whatever their graphs look like.
        for query in &queries {
            let expected: Vec<(u32, u32)> = search_bits(&index, query, 10, 600)
                .into_iter()
                .map(|(slot, bits)| (mapping[slot as usize].expect("live slot"), bits))
                .collect();
            assert_eq!(
                search_bits(&compacted, query, 10, 600),
                expected,
                "{space:?}"
            );
        }
        let mut live = vec![true; data.len()];
        for &slot in removed {
            live[slot as usize] = false;
        }
        let compacted_data: Vec<Vec<f32>> = (0..data.len())
            .filter(|&slot| live[slot])
            .map(|slot| data[slot].clone())
            .collect();
        let all_live = vec![true; compacted_data.len()];
        let recall = mean_recall(&compacted, &compacted_data, &queries, &all_live);
        assert!(
            recall >= 0.95,
            "{space:?}: recall@10 {recall} after compaction"
        );
    }
}

#[test]
fn compaction_threshold() {
    let data = vectors(4000, 2, 36);
    let mut index = build(Space::L2, &data);
    let order = shuffled_slots(data.len(), 37);
    for &slot in &order[..999] {
        index.remove(slot);
    }
    assert!(!index.needs_compaction(), "999 deleted slots of 4000");
    index.remove(order[999]);
    assert!(index.needs_compaction(), "1000 deleted slots of 4000");

    for vector in &data[..1] {
        index.insert(vector);
    }
    assert!(!index.needs_compaction(), "1000 deleted slots of 4001");

    let mut small = build(Space::L2, &data[..500]);
    for slot in 0..500 {
        small.remove(slot);
    }
    assert!(!small.needs_compaction(), "500 deleted slots of 500");
}

#[test]
fn checkpoint_after_repairs_restores() {
    let data = vectors(1000, 16, 38);
    let queries = vectors(20, 16, 39);
    for space in SPACES {
        let mut index = build(space, &data);
        for _ in 0..5 {
            let entry = index.graph.entry().expect("index is not empty");
            index.remove(entry);
        }
        for &slot in &shuffled_slots(data.len(), 40)[..400] {
            index.remove(slot);
        }

        // Restore must accept deleted slots above the maximum level.
        let max_level = index.graph.max_level();
        let above_max = (0..index.slots() as u32).any(|slot| index.graph.level(slot) > max_level);
        assert!(
            above_max,
            "{space:?}: no deleted slot above the maximum level"
        );

        let bytes = index.checkpoint();
        let mut restored = Hnsw::restore(&bytes).expect("checkpoint after repairs restores");
        assert_eq!(restored.checkpoint(), bytes);
        assert_eq!(restored.deleted_count(), index.deleted_count());
        for query in &queries {
            assert_eq!(
                search_bits(&restored, query, 10, 100),
                search_bits(&index, query, 10, 100),
                "{space:?}"
            );
        }

        for vector in &vectors(50, 16, 41) {
            assert_eq!(restored.insert(vector), index.insert(vector));
        }
        for &slot in &shuffled_slots(data.len(), 42)[..100] {
            restored.remove(slot);
            index.remove(slot);
        }
        assert_eq!(restored.checkpoint(), index.checkpoint(), "{space:?}");
    }
}
