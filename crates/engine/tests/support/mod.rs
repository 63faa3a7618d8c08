//! Helpers shared by the tests of the vector index and of index upkeep. They open an
//! engine over a new encrypted store whose queries all go through the index once it is
//! built, fill one collection with deterministic 16-dimension vectors, and run queries
//! that return ids and distances.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use api::requests::{CreateCollection, QueryRecords, RecordBatch, WriteKind};
use api::Limits;
use ravelin_engine::{Engine, Pass, DEFAULT_DATABASE, DEFAULT_TENANT};
use serde_json::{json, Value};
use store::{MasterKey, Store};
use uuid::Uuid;

pub const T: &str = DEFAULT_TENANT;
pub const D: &str = DEFAULT_DATABASE;
pub const DIMENSION: usize = 16;

pub fn approximate_limits() -> Limits {
    Limits {
        exact_scan_max_vector_bytes: 0,
        ..Limits::default()
    }
}

pub fn key() -> MasterKey {
    MasterKey::from_bytes([5; 32])
}

/// Deterministic vectors in [-1, 1).
pub fn vectors(count: usize, seed: u64) -> Vec<Vec<f32>> {
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

/// Adds `data` as records `r{first}`, `r{first + 1}` and so on, in batches of 500.
pub fn add(engine: &Engine, id: Uuid, data: &[Vec<f32>], first: usize) {
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

pub fn query(
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

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
    pub engine: Engine,
    pub id: Uuid,
}

/// Returns a collection of `count` records that has no index yet, and their vectors.
pub fn unindexed(count: usize) -> (Fixture, Vec<Vec<f32>>) {
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

/// Returns a collection of `count` records with its index built and checkpointed, and
/// their vectors.
pub fn fixture(count: usize) -> (Fixture, Vec<Vec<f32>>) {
    let (fixture, data) = unindexed(count);
    let report = fixture.engine.maintain(Pass::Final);
    assert_eq!((report.built, report.checkpointed), (1, 1));
    assert_eq!(
        fixture
            .engine
            .index_info(T, D, fixture.id)
            .unwrap()
            .unwrap()
            .live,
        count
    );
    (fixture, data)
}

pub fn reopen(path: &std::path::Path) -> Engine {
    Engine::open(Store::open(path, &key()).unwrap(), approximate_limits()).unwrap()
}

pub fn probes() -> Vec<Vec<f32>> {
    vectors(20, 5)
}

pub fn answers(engine: &Engine, id: Uuid) -> Vec<(Vec<String>, Vec<f32>)> {
    probes()
        .iter()
        .map(|probe| query(engine, id, probe, 10, Value::Null))
        .collect()
}
