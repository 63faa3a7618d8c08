//! Queries through the HNSW index: a fixture with `exact_scan_max_vector_bytes` 0
//! sends every query to the index, and each check compares with an exact scan.

#![allow(clippy::unwrap_used)] // Test helpers unwrap: a panic is a test failure.

use api::requests::{CreateCollection, DeleteRecords, QueryRecords, RecordBatch, WriteKind};
use api::Limits;
use ravelin_engine::{Engine, DEFAULT_DATABASE, DEFAULT_TENANT};
use serde_json::{json, Value};
use store::{MasterKey, Store};
use uuid::Uuid;

const T: &str = DEFAULT_TENANT;
const D: &str = DEFAULT_DATABASE;
const DIMENSION: usize = 16;

fn approximate_limits() -> Limits {
    Limits {
        exact_scan_max_vector_bytes: 0,
        ..Limits::default()
    }
}

fn key() -> MasterKey {
    MasterKey::from_bytes([5; 32])
}

/// Deterministic vectors in [-1, 1).
fn vectors(count: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            (0..DIMENSION)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        })
        .collect()
}

fn add(engine: &Engine, id: Uuid, data: &[Vec<f32>], first: usize) {
    for (chunk_index, chunk) in data.chunks(500).enumerate() {
        let start = first + chunk_index * 500;
        let ids: Vec<String> = (start..start + chunk.len())
            .map(|i| format!("r{i}"))
            .collect();
        let metadatas: Vec<Value> = (start..start + chunk.len())
            .map(|i| json!({"even": i % 2 == 0}))
            .collect();
        let body = json!({"ids": ids, "embeddings": chunk, "metadatas": metadatas});
        let batch = RecordBatch::decode(&body, WriteKind::Add, &Limits::default()).unwrap();
        engine.write(T, D, id, WriteKind::Add, batch).unwrap();
    }
}

fn query(
    engine: &Engine,
    id: Uuid,
    vector: &[f32],
    n: usize,
    filter: Value,
) -> (Vec<String>, Vec<f32>) {
    let body = json!({"query_embeddings": [vector], "n_results": n, "where": filter, "include": ["distances"]});
    let request = QueryRecords::decode(&body, &Limits::default()).unwrap();
    let response = serde_json::to_value(engine.query(T, D, id, request).unwrap()).unwrap();
    let ids: Vec<Vec<String>> = serde_json::from_value(response["ids"].clone()).unwrap();
    let distances: Vec<Vec<f32>> = serde_json::from_value(response["distances"].clone()).unwrap();
    (ids[0].clone(), distances[0].clone())
}

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

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    engine: Engine,
    id: Uuid,
}

fn fixture(count: usize) -> (Fixture, Vec<Vec<f32>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    let engine = Engine::open(Store::create(&path, &key()).unwrap(), approximate_limits()).unwrap();
    let request =
        CreateCollection::decode(&json!({"name": "vectors"}), &Limits::default()).unwrap();
    let id = Uuid::try_parse(&engine.create_collection(T, D, request).unwrap().id).unwrap();
    let data = vectors(count, 7);
    add(&engine, id, &data, 0);
    (
        Fixture {
            _dir: dir,
            path,
            engine,
            id,
        },
        data,
    )
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
    let recall = recall(&fixture.engine, fixture.id, &live, Value::Null);
    assert!(recall >= 0.95, "recall@10 after deletes {recall}");
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
fn index_rebuilt_after_reopen() {
    let (fixture, data) = fixture(1000);
    let Fixture {
        _dir: dir,
        path,
        engine,
        id,
    } = fixture;
    let probe = vectors(1, 5).remove(0);
    let before = query(&engine, id, &probe, 10, Value::Null);
    drop(engine);

    let engine = Engine::open(Store::open(&path, &key()).unwrap(), approximate_limits()).unwrap();
    assert_eq!(query(&engine, id, &probe, 10, Value::Null), before);
    let live: Vec<(usize, Vec<f32>)> = data.into_iter().enumerate().collect();
    assert!(recall(&engine, id, &live, Value::Null) >= 0.95);
    drop(dir);
}
