//! Queries through the HNSW index: a fixture with `exact_scan_max_vector_bytes` 0
//! sends every query to the index once index upkeep has built it, and each check
//! compares with an exact scan. Also the index's checkpoints: restored at open, with
//! the writes after them replayed, and rebuilt when damaged.

#![allow(clippy::unwrap_used)] // Test helpers unwrap: a panic is a test failure.

mod support;

use api::requests::{CreateCollection, DeleteRecords, RecordBatch, WriteKind};
use api::Limits;
use ravelin_engine::{Engine, Pass};
use serde_json::{json, Value};
use store::Store;
use support::{
    add, answers, approximate_limits, fixture, key, query, reopen, vectors, D, DIMENSION, T,
};
use uuid::Uuid;

fn exact(data: &[(usize, Vec<f32>)], vector: &[f32], n: usize) -> Vec<(String, f32)> {
    let mut scored: Vec<(String, f32)> = data
        .iter()
        .map(|(i, v)| {
            let distance: f32 = v.iter().zip(vector).map(|(a, b)| (a - b) * (a - b)).sum();
            (format!("r{i}"), distance)
        })
        .collect();
    scored.sort_by(|a, b| a.1.total_cmp(&b.1));
    scored.truncate(n);
    scored
}

fn recall(engine: &Engine, id: Uuid, live: &[(usize, Vec<f32>)], filter: Value) -> f64 {
    let queries = vectors(30, 99);
    let mut hits = 0;
    for vector in &queries {
        let expected = exact(live, vector, 10);
        let (found, distances) = query(engine, id, vector, 10, filter.clone());
        assert_eq!(found.len(), 10);
        for (found_id, distance) in found.iter().zip(&distances) {
            let index: usize = found_id[1..].parse().unwrap();
            let (_, stored) = live
                .iter()
                .find(|(i, _)| *i == index)
                .expect("a live record");
            let exact_distance: f32 = stored
                .iter()
                .zip(vector)
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            assert!(
                (distance - exact_distance).abs() < 1e-4,
                "distance of {found_id}"
            );
        }
        hits += found
            .iter()
            .filter(|f| expected.iter().any(|(e, _)| e == *f))
            .count();
    }
    hits as f64 / (queries.len() * 10) as f64
}

#[test]
fn index_recall_and_exact_distances() {
    let (fixture, data) = fixture(1500);
    let live: Vec<(usize, Vec<f32>)> = data.into_iter().enumerate().collect();
    let recall = recall(&fixture.engine, fixture.id, &live, Value::Null);
    assert!(recall >= 0.95, "recall@10 {recall}");
}

#[test]
fn deleted_records_never_returned_and_compaction_keeps_results() {
    let (fixture, data) = fixture(2400);
    let deleted: Vec<String> = (0..2400)
        .filter(|i| i % 2 == 1)
        .map(|i| format!("r{i}"))
        .collect();
    let request = DeleteRecords::decode(&json!({"ids": deleted}), &Limits::default()).unwrap();
    assert_eq!(
        fixture
            .engine
            .delete_records(T, D, fixture.id, request)
            .unwrap(),
        1200
    );

    let live: Vec<(usize, Vec<f32>)> = data
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .collect();
    let before = recall(&fixture.engine, fixture.id, &live, Value::Null);
    assert!(before >= 0.95, "recall@10 after deletes {before}");

    let report = fixture.engine.maintain(Pass::Regular);
    assert_eq!(report.compacted, 1);
    let info = fixture
        .engine
        .index_info(T, D, fixture.id)
        .unwrap()
        .unwrap();
    assert_eq!((info.live, info.slots), (1200, 1200));
    let after = recall(&fixture.engine, fixture.id, &live, Value::Null);
    assert!(after >= 0.95, "recall@10 after compaction {after}");
}

#[test]
fn filtered_query_through_index() {
    let (fixture, data) = fixture(1500);
    let live: Vec<(usize, Vec<f32>)> = data
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .collect();
    let recall = recall(&fixture.engine, fixture.id, &live, json!({"even": true}));
    assert!(recall >= 0.9, "filtered recall@10 {recall}");
}

#[test]
fn updated_embedding_found_at_new_place() {
    let (fixture, _) = fixture(800);
    let target = vec![0.25f32; DIMENSION];
    let body = json!({"ids": ["r3"], "embeddings": [target]});
    let batch = RecordBatch::decode(&body, WriteKind::Update, &Limits::default()).unwrap();
    fixture
        .engine
        .write(T, D, fixture.id, WriteKind::Update, batch)
        .unwrap();

    let (found, distances) = query(&fixture.engine, fixture.id, &target, 1, Value::Null);
    assert_eq!(found, ["r3"]);
    assert_eq!(distances[0], 0.0);
}

#[test]
fn index_restored_from_checkpoint_answers_the_same() {
    let (fixture, _) = fixture(1000);
    let before = answers(&fixture.engine, fixture.id);
    drop(fixture.engine);

    let engine = reopen(&fixture.path);
    let info = engine.index_info(T, D, fixture.id).unwrap();
    assert_eq!(
        info.map(|info| info.live),
        Some(1000),
        "index loaded at open"
    );
    assert_eq!(answers(&engine, fixture.id), before);
    assert_eq!(
        engine.maintain(Pass::Final),
        Default::default(),
        "nothing to do"
    );
}

#[test]
fn writes_after_checkpoint_are_replayed_at_open() {
    let (fixture, data) = fixture(1200);
    let more = vectors(300, 8);
    add(&fixture.engine, fixture.id, &more, 1200);
    let deleted: Vec<String> = (0..100).map(|i| format!("r{}", i * 3)).collect();
    let request = DeleteRecords::decode(&json!({"ids": deleted}), &Limits::default()).unwrap();
    fixture
        .engine
        .delete_records(T, D, fixture.id, request)
        .unwrap();
    let target = vec![0.5f32; DIMENSION];
    let body = json!({"ids": ["r1"], "embeddings": [target]});
    let batch = RecordBatch::decode(&body, WriteKind::Update, &Limits::default()).unwrap();
    fixture
        .engine
        .write(T, D, fixture.id, WriteKind::Update, batch)
        .unwrap();
    // Dropped without a final pass, as after a crash.
    drop(fixture.engine);

    let engine = reopen(&fixture.path);
    let info = engine.index_info(T, D, fixture.id).unwrap().unwrap();
    assert_eq!(info.live, 1200 + 300 - 100);
    let (found, distances) = query(&engine, fixture.id, &target, 1, Value::Null);
    assert_eq!((found[0].as_str(), distances[0]), ("r1", 0.0));

    let mut live: Vec<(usize, Vec<f32>)> = data.into_iter().chain(more).enumerate().collect();
    live.retain(|(i, _)| *i >= 300 || i % 3 != 0);
    live[0].1 = target;
    let recall = recall(&engine, fixture.id, &live, Value::Null);
    assert!(recall >= 0.95, "recall@10 after replay {recall}");
    assert_eq!(engine.maintain(Pass::Final).checkpointed, 1);
}

#[test]
fn damaged_checkpoint_is_rebuilt_from_records() {
    let (fixture, data) = fixture(1000);
    let before = answers(&fixture.engine, fixture.id);
    drop(fixture.engine);
    let mut store = Store::open(&fixture.path, &key()).unwrap();
    let seq = store.last_seq().unwrap();
    let mut bytes = store
        .read_checkpoint(&fixture.id.to_string())
        .unwrap()
        .unwrap()
        .bytes;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    store
        .write_checkpoint(&fixture.id.to_string(), seq, &bytes)
        .unwrap();
    drop(store);

    let engine = reopen(&fixture.path);
    assert_eq!(engine.index_info(T, D, fixture.id).unwrap(), None);
    let live: Vec<(usize, Vec<f32>)> = data.into_iter().enumerate().collect();
    assert_eq!(
        recall(&engine, fixture.id, &live, Value::Null),
        1.0,
        "exact scan"
    );
    let report = engine.maintain(Pass::Regular);
    assert_eq!((report.built, report.checkpointed), (1, 0));
    assert_eq!(answers(&engine, fixture.id), before, "same graph as before");
    assert_eq!(engine.maintain(Pass::Final).checkpointed, 1);
}

#[test]
fn queries_run_while_batches_are_written() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let (fixture, data) = fixture(1000);
    let engine = Arc::new(fixture.engine);
    let id = fixture.id;
    // Rounds whose deletes have returned; their deleted records must never come back.
    let deleted_rounds = Arc::new(AtomicUsize::new(0));
    let writer = {
        let engine = Arc::clone(&engine);
        let deleted_rounds = Arc::clone(&deleted_rounds);
        std::thread::spawn(move || {
            for round in 0..4 {
                let first = 1000 + round * 500;
                add(&engine, id, &vectors(500, 100 + round as u64), first);
                let deleted: Vec<String> = (0..50).map(|i| format!("r{}", first + i)).collect();
                let request =
                    DeleteRecords::decode(&json!({"ids": deleted}), &Limits::default()).unwrap();
                engine.delete_records(T, D, id, request).unwrap();
                deleted_rounds.store(round + 1, Ordering::Release);
            }
        })
    };
    let probe = &data[10];
    let mut rounds = 0;
    while !writer.is_finished() && rounds < 100_000 {
        let done = deleted_rounds.load(Ordering::Acquire);
        let (found, _) = query(&engine, id, probe, 10, Value::Null);
        assert_eq!(found.len(), 10);
        assert_eq!(found[0], "r10");
        for found_id in &found {
            let index: usize = found_id[1..].parse().unwrap();
            let deleted = index >= 1000 && (index - 1000) / 500 < done && (index - 1000) % 500 < 50;
            assert!(!deleted, "deleted {found_id} returned");
        }
        rounds += 1;
    }
    writer.join().unwrap();
    let info = engine.index_info(T, D, id).unwrap().unwrap();
    assert_eq!(info.live, 1000 + 4 * 450);
}

/// A filter accepting 0.1%, 1%, 10% and 50% of the records goes through the index's
/// filtered walk (or its exact fallback when the walk comes up short) and keeps
/// recall@10 of at least 0.95 against the filtered exact result.
#[test]
fn filtered_queries_at_every_selectivity() {
    const COUNT: usize = 4000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    let engine = Engine::open(Store::create(&path, &key()).unwrap(), approximate_limits()).unwrap();
    let request =
        CreateCollection::decode(&json!({"name": "buckets"}), &Limits::default()).unwrap();
    let id = Uuid::try_parse(&engine.create_collection(T, D, request).unwrap().id).unwrap();
    let data = vectors(COUNT, 31);
    // Bucket numbers spread over the insertion order by a multiplicative hash.
    let bucket = |i: usize| (i as u64 * 2_654_435_761 % 1000) as i64;
    for (chunk_index, chunk) in data.chunks(1000).enumerate() {
        let first = chunk_index * 1000;
        let ids: Vec<String> = (first..first + chunk.len())
            .map(|i| format!("r{i}"))
            .collect();
        let metadatas: Vec<Value> = (first..first + chunk.len())
            .map(|i| json!({"bucket": bucket(i)}))
            .collect();
        let body = json!({"ids": ids, "embeddings": chunk, "metadatas": metadatas});
        let batch = RecordBatch::decode(&body, WriteKind::Add, &Limits::default()).unwrap();
        engine.write(T, D, id, WriteKind::Add, batch).unwrap();
    }
    assert_eq!(engine.maintain(Pass::Regular).built, 1);

    for per_thousand in [1, 10, 100, 500] {
        let live: Vec<(usize, Vec<f32>)> = data
            .iter()
            .cloned()
            .enumerate()
            .filter(|(i, _)| bucket(*i) < per_thousand)
            .collect();
        let filter = json!({"bucket": {"$lt": per_thousand}});
        let queries = vectors(30, 99);
        let mut hits = 0;
        let mut expected_total = 0;
        for vector in &queries {
            let expected = exact(&live, vector, 10);
            let (found, _) = query(&engine, id, vector, 10, filter.clone());
            assert_eq!(
                found.len(),
                expected.len(),
                "selectivity {per_thousand}/1000"
            );
            for found_id in &found {
                let index: usize = found_id[1..].parse().unwrap();
                assert!(bucket(index) < per_thousand, "{found_id} fails the filter");
            }
            expected_total += expected.len();
            hits += found
                .iter()
                .filter(|f| expected.iter().any(|(e, _)| e == *f))
                .count();
        }
        let recall = hits as f64 / expected_total as f64;
        assert!(
            recall >= 0.95,
            "selectivity {per_thousand}/1000: recall@10 {recall}"
        );
    }
}
