use super::*;
use crate::exact::nearest;
use crate::hnsw::test_support::{clustered, vectors};

fn build(space: Space, data: &[Vec<f32>]) -> Hnsw {
    let mut index = Hnsw::new(data[0].len(), space, HnswParams::default());
    for (expected, vector) in data.iter().enumerate() {
        assert_eq!(index.insert(vector), expected as u32);
    }
    index
}

fn exact_top(
    space: Space,
    data: &[Vec<f32>],
    query: &[f32],
    k: usize,
    allow: impl Fn(u32) -> bool,
) -> Vec<u32> {
    let query_norm = inverse_norm(query);
    let scored = data
        .iter()
        .enumerate()
        .filter(|(slot, _)| allow(*slot as u32))
        .map(|(slot, vector)| {
            let distance = crate::distance(space, query, query_norm, vector, inverse_norm(vector));
            (slot as u32, distance)
        });
    nearest(k, scored).into_iter().map(|n| n.handle).collect()
}

fn recall(found: &[Neighbour<u32>], expected: &[u32]) -> f64 {
    let hits = found
        .iter()
        .filter(|n| expected.contains(&n.handle))
        .count();
    hits as f64 / expected.len().max(1) as f64
}

#[test]
fn recall_high_in_every_space() {
    let data = vectors(2000, 24, 1);
    let queries = vectors(50, 24, 2);
    for space in [Space::L2, Space::InnerProduct, Space::Cosine] {
        let index = build(space, &data);
        let mut total = 0.0;
        for query in &queries {
            let found = index.search(query, 10, 100, None);
            total += recall(&found, &exact_top(space, &data, query, 10, |_| true));
        }
        let mean = total / queries.len() as f64;
        assert!(mean >= 0.95, "{space:?}: recall@10 {mean}");
    }
}

#[test]
fn distances_match_exact_formulas() {
    let data = vectors(300, 8, 3);
    let query = &vectors(1, 8, 4)[0];
    for space in [Space::L2, Space::InnerProduct, Space::Cosine] {
        let index = build(space, &data);
        for neighbour in index.search(query, 5, 50, None) {
            let vector = &data[neighbour.handle as usize];
            let expected = crate::distance(
                space,
                query,
                inverse_norm(query),
                vector,
                inverse_norm(vector),
            );
            assert!((neighbour.distance - expected).abs() < 1e-5, "{space:?}");
        }
    }
}

#[test]
fn results_sorted_nearest_first() {
    let data = vectors(500, 16, 5);
    let index = build(Space::L2, &data);
    let found = index.search(&data[7], 20, 64, None);
    assert_eq!(found[0].handle, 7);
    assert!(found
        .windows(2)
        .all(|pair| pair[0].distance <= pair[1].distance));
}

#[test]
fn deleted_slots_never_returned() {
    let data = vectors(1000, 16, 6);
    let mut index = build(Space::L2, &data);
    for slot in (0..1000).step_by(3) {
        index.remove(slot);
    }
    assert_eq!(index.len(), 1000 - 334);
    for query in vectors(20, 16, 7) {
        let found = index.search(&query, 10, 64, None);
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|n| n.handle % 3 != 0));
    }
}

#[test]
fn filter_restricts_results() {
    let data = vectors(1000, 16, 8);
    let index = build(Space::Cosine, &data);
    let allow = |slot: u32| slot.is_multiple_of(10);
    let query = &vectors(1, 16, 9)[0];
    let found = index.search(query, 10, 64, Some(&allow));
    assert!(found.iter().all(|n| allow(n.handle)));
    let exact = exact_top(Space::Cosine, &data, query, 10, allow);
    assert!(recall(&found, &exact) >= 0.9);
}

#[test]
fn same_seed_builds_same_graph() {
    let data = vectors(500, 8, 10);
    let first = build(Space::L2, &data);
    let second = build(Space::L2, &data);
    let query = &data[42];
    assert_eq!(
        first.search(query, 10, 32, None),
        second.search(query, 10, 32, None)
    );
}

#[test]
fn empty_and_mismatched_queries_return_nothing() {
    let index = Hnsw::new(4, Space::L2, HnswParams::default());
    assert!(index.search(&[0.0; 4], 5, 10, None).is_empty());
    let data = vectors(10, 4, 11);
    let index = build(Space::L2, &data);
    assert!(index.search(&[0.0; 3], 5, 10, None).is_empty());
    assert!(index.search(&data[0], 0, 10, None).is_empty());
    assert_eq!(index.search(&data[0], 50, 10, None).len(), 10);
}

/// Many identical vectors make the graph poorly connected, because every link list
/// fills with the oldest slots. A search may then return fewer than `k`, and callers
/// that need `k` fall back to an exact scan. The results it does return must be valid.
#[test]
fn duplicate_vectors_return_valid_results() {
    let vector = vec![0.5f32; 8];
    let data: Vec<Vec<f32>> = (0..200).map(|_| vector.clone()).collect();
    let index = build(Space::L2, &data);
    let found = index.search(&vector, 50, 100, None);
    assert!(!found.is_empty());
    assert!(found.iter().all(|n| n.distance == 0.0));
    let mut slots: Vec<u32> = found.iter().map(|n| n.handle).collect();
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(slots.len(), found.len());
}

#[test]
fn filtered_recall_with_deletions_in_every_space() {
    let data = vectors(2000, 24, 12);
    let queries = vectors(30, 24, 13);
    let allow = |slot: u32| slot % 4 != 1;
    let live = |slot: u32| !slot.is_multiple_of(5) && allow(slot);
    for space in [Space::L2, Space::InnerProduct, Space::Cosine] {
        let mut index = build(space, &data);
        for slot in (0..2000).step_by(5) {
            index.remove(slot);
        }
        let mut total = 0.0;
        for query in &queries {
            let found = index.search(query, 10, 100, Some(&allow));
            assert!(found.iter().all(|n| live(n.handle)), "{space:?}");
            total += recall(&found, &exact_top(space, &data, query, 10, live));
        }
        let mean = total / queries.len() as f64;
        assert!(mean >= 0.95, "{space:?}: recall@10 {mean}");
    }
}

/// The lazy re-ranking skips slots by an error bound, so it must keep exactly the
/// `k` nearest of the candidates that a full exact re-ranking keeps.
#[test]
fn rerank_keeps_exact_nearest_candidates() {
    let data = vectors(1500, 32, 14);
    for space in [Space::L2, Space::InnerProduct, Space::Cosine] {
        let index = build(space, &data);
        let mut skipped = 0;
        let codes = index.codes.as_ref().expect("32 dimensions are quantized");
        let mut buffers = SearchBuffers::default();
        for query in vectors(20, 32, 15) {
            let mut prepared = Vec::new();
            index.prepare(&query, &mut prepared);
            codes.quantize_query(&prepared, &mut buffers.query_code);
            let scorer = QuantizedScorer {
                codes,
                query: &buffers.query_code,
                kernel: index.code_kernel,
                space,
            };
            let entry = index.graph.entry().expect("index is not empty");
            let mut found = Vec::new();
            index.search_from_top(
                &scorer,
                entry,
                64,
                &mut buffers.layer,
                &mut buffers.entries,
                |_| true,
                &mut found,
            );

            let mut expected: Vec<(f32, u32)> = found
                .iter()
                .map(|&(_, slot)| (index.distance_to(&prepared, slot), slot))
                .collect();
            sort_nearest_first(&mut expected);
            expected.truncate(10);

            index.rerank_exactly(
                codes,
                &buffers.query_code,
                &prepared,
                10,
                &mut found,
                &mut buffers.nearest,
            );
            skipped += 64 - found.len();
            found.truncate(10);
            assert_eq!(found, expected, "{space:?}");
        }
        assert!(skipped > 0, "{space:?}: the bound never skipped a slot");
    }
}

/// The f32 kernels agree bit for bit and the int8 kernels sum exactly, so an index
/// built and searched with the portable kernels returns the same slots and distance
/// bits as one using the kernels dispatched for this CPU.
#[test]
fn portable_kernels_give_identical_results() {
    let data = vectors(1000, 40, 16);
    let queries = vectors(20, 40, 17);
    for space in [Space::L2, Space::InnerProduct, Space::Cosine] {
        let dispatched = build(space, &data);
        let portable_kernels = crate::kernels::portable_kernels();
        let mut portable = Hnsw::with_kernels(40, space, HnswParams::default(), &portable_kernels);
        for vector in &data {
            portable.insert(vector);
        }
        for query in &queries {
            let expected = dispatched.search(query, 10, 50, None);
            let found = portable.search(query, 10, 50, None);
            let bits = |found: &[Neighbour<u32>]| -> Vec<(u32, u32)> {
                found
                    .iter()
                    .map(|n| (n.handle, n.distance.to_bits()))
                    .collect()
            };
            assert_eq!(bits(&found), bits(&expected), "{space:?}");
        }
    }
}

/// Past `MAX_EXACT_CODE_BYTES` dimensions the code kernel's i32 sum could wrap, so
/// the index keeps no codes and traverses with exact distances.
#[test]
fn wide_vectors_search_without_codes() {
    let dimension = MAX_EXACT_CODE_BYTES + 1;
    let data = vectors(30, dimension, 18);
    let index = build(Space::L2, &data);
    assert!(index.codes.is_none());
    let query = &vectors(1, dimension, 19)[0];
    let found = index.search(query, 5, 30, None);
    let handles: Vec<u32> = found.iter().map(|n| n.handle).collect();
    assert_eq!(handles, exact_top(Space::L2, &data, query, 5, |_| true));
}

/// Mean recall@10 of `queries` at ef 100 against an exact scan of the live slots
/// that `allow` accepts, checking that no other slot is returned.
fn filtered_recall(
    index: &Hnsw,
    space: Space,
    data: &[Vec<f32>],
    queries: &[Vec<f32>],
    allow: &dyn Fn(u32) -> bool,
    live: &dyn Fn(u32) -> bool,
) -> f64 {
    let accepted = |slot: u32| live(slot) && allow(slot);
    let mut total = 0.0;
    for query in queries {
        let found = index.search(query, 10, 100, Some(allow));
        assert!(found.iter().all(|n| accepted(n.handle)), "{space:?}");
        total += recall(&found, &exact_top(space, data, query, 10, accepted));
    }
    total / queries.len() as f64
}

/// Checks recall@10 of at least 0.95 against an exact scan at Chroma's default
/// settings (M 16, ef_construction 100, ef_search 100). The data is uniform and
/// clustered, and queries run unfiltered and with filters that accept 0.1%, 1%, 10%
/// and 50% of the slots, after a tenth of the slots are deleted. No deleted or
/// filtered-out slot may be returned.
#[test]
fn recall_at_default_settings_across_data_and_selectivity() {
    const COUNT: usize = 5000;
    let data_sets = [
        ("uniform", vectors(COUNT, 24, 21)),
        ("clustered", clustered(COUNT, 24, 50, 0.15, 22)),
    ];
    let live = |slot: u32| !slot.is_multiple_of(10);
    for (name, data) in &data_sets {
        // Queries near the data, as real queries are.
        let queries: Vec<Vec<f32>> = (0..40)
            .map(|i| data[i * 97 + 3].iter().map(|v| v + 0.01).collect())
            .collect();
        for space in [Space::L2, Space::Cosine] {
            let mut index = build(space, data);
            for slot in (0..COUNT as u32).filter(|slot| !live(*slot)) {
                index.remove(slot);
            }
            let everything = |_: u32| true;
            let unfiltered = filtered_recall(&index, space, data, &queries, &everything, &live);
            assert!(
                unfiltered >= 0.95,
                "{name} {space:?}: recall@10 {unfiltered}"
            );
            for per_thousand in [1u32, 10, 100, 500] {
                // A hash spreads the accepted slots over the clusters.
                let allow = move |slot: u32| slot.wrapping_mul(2_654_435_761) % 1000 < per_thousand;
                let value = filtered_recall(&index, space, data, &queries, &allow, &live);
                assert!(
                    value >= 0.95,
                    "{name} {space:?} selectivity {per_thousand}/1000: recall@10 {value}"
                );
            }
        }
    }
}
