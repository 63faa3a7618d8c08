//! Engine behaviour against a real encrypted store in a temporary directory, including
//! the cases where Chroma 1.5.9 returns wrong results.

#![allow(clippy::unwrap_used)] // Test helpers unwrap: a panic is a test failure.

use api::requests::{
    CreateCollection, DeleteRecords, GetRecords, QueryRecords, RecordBatch, WriteKind,
};
use api::Limits;
use ravelin_engine::{Engine, DEFAULT_DATABASE, DEFAULT_TENANT};
use serde_json::{json, Value};
use store::{MasterKey, Store};
use uuid::Uuid;

const T: &str = DEFAULT_TENANT;
const D: &str = DEFAULT_DATABASE;

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    engine: Engine,
}

fn key() -> MasterKey {
    MasterKey::from_bytes([9; 32])
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    let engine = Engine::open(Store::create(&path, &key()).unwrap(), Limits::default()).unwrap();
    Fixture {
        _dir: dir,
        path,
        engine,
    }
}

fn create(engine: &Engine, name: &str, configuration: Value) -> Uuid {
    let body = json!({"name": name, "configuration": configuration});
    let request = CreateCollection::decode(&body, &Limits::default()).unwrap();
    let response = engine.create_collection(T, D, request).unwrap();
    Uuid::try_parse(&response.id).unwrap()
}

fn write(engine: &Engine, id: Uuid, kind: WriteKind, body: Value) -> Result<usize, api::ApiError> {
    let batch = RecordBatch::decode(&body, kind, &Limits::default())?;
    engine.write(T, D, id, kind, batch)
}

fn get(engine: &Engine, id: Uuid, body: Value) -> Value {
    let request = GetRecords::decode(&body, &Limits::default()).unwrap();
    serde_json::to_value(engine.get(T, D, id, request).unwrap()).unwrap()
}

fn delete(engine: &Engine, id: Uuid, body: Value) -> usize {
    let request = DeleteRecords::decode(&body, &Limits::default()).unwrap();
    engine.delete_records(T, D, id, request).unwrap()
}

fn ids(response: &Value) -> Vec<String> {
    serde_json::from_value(response["ids"].clone()).unwrap()
}

fn numbers_collection(engine: &Engine) -> Uuid {
    let id = create(engine, "numbers", Value::Null);
    write(
        engine,
        id,
        WriteKind::Add,
        json!({"ids": ["two", "two-and-half", "three"], "embeddings": [[1.0], [2.0], [3.0]],
               "metadatas": [{"n": 2}, {"n": 2.5}, {"n": 3}]}),
    )
    .unwrap();
    id
}

#[test]
fn numeric_filters_compare_exactly() {
    let fixture = fixture();
    let id = numbers_collection(&fixture.engine);
    let cases = [
        (json!({"n": {"$eq": 2.5}}), vec!["two-and-half"]),
        (json!({"n": {"$gte": 2.5}}), vec!["two-and-half", "three"]),
        (json!({"n": {"$lt": 2.5}}), vec!["two"]),
        (json!({"n": {"$ne": 2.5}}), vec!["two", "three"]),
        (json!({"n": {"$in": [2.5]}}), vec!["two-and-half"]),
        (json!({"n": {"$nin": [2.5]}}), vec!["two", "three"]),
        (json!({"n": {"$eq": 2.0}}), vec!["two"]),
    ];
    for (filter, expected) in cases {
        let response = get(&fixture.engine, id, json!({ "where": filter }));
        assert_eq!(ids(&response), expected, "get where {filter}");
    }

    let query = json!({"query_embeddings": [[0.0]], "n_results": 10, "where": {"n": {"$lt": 2.5}}});
    let request = QueryRecords::decode(&query, &Limits::default()).unwrap();
    let response = serde_json::to_value(fixture.engine.query(T, D, id, request).unwrap()).unwrap();
    assert_eq!(response["ids"], json!([["two"]]));

    assert_eq!(
        delete(&fixture.engine, id, json!({"where": {"n": {"$eq": 2.5}}})),
        1
    );
    assert_eq!(fixture.engine.count(T, D, id).unwrap(), 2);
}

#[test]
fn delete_counts_removed_records() {
    let fixture = fixture();
    let id = create(&fixture.engine, "letters", Value::Null);
    write(
        &fixture.engine,
        id,
        WriteKind::Add,
        json!({"ids": ["a", "b", "c"], "embeddings": [[1.0], [2.0], [3.0]]}),
    )
    .unwrap();

    assert_eq!(
        delete(&fixture.engine, id, json!({"ids": ["b", "ghost"]})),
        1
    );
    assert_eq!(delete(&fixture.engine, id, json!({"ids": ["ghost2"]})), 0);
    assert_eq!(delete(&fixture.engine, id, json!({"ids": ["a", "a"]})), 1);
    assert_eq!(delete(&fixture.engine, id, json!({})), 0);
    assert_eq!(fixture.engine.count(T, D, id).unwrap(), 1);
}

#[test]
fn repeated_ids_rejected_without_writing() {
    let fixture = fixture();
    let id = create(&fixture.engine, "letters", Value::Null);
    for kind in [WriteKind::Add, WriteKind::Upsert, WriteKind::Update] {
        let error = write(
            &fixture.engine,
            id,
            kind,
            json!({"ids": ["x", "x"], "embeddings": [[1.0], [2.0]]}),
        )
        .unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(error.message.contains("[x]"), "{}", error.message);
    }
    assert_eq!(fixture.engine.count(T, D, id).unwrap(), 0);
}

#[test]
fn add_ignores_existing_ids() {
    let fixture = fixture();
    let id = create(&fixture.engine, "letters", Value::Null);
    write(
        &fixture.engine,
        id,
        WriteKind::Add,
        json!({"ids": ["a"], "embeddings": [[1.0]], "documents": ["first"]}),
    )
    .unwrap();
    write(
        &fixture.engine,
        id,
        WriteKind::Add,
        json!({"ids": ["a", "b"], "embeddings": [[5.0], [2.0]], "documents": ["second", "b"]}),
    )
    .unwrap();

    let response = get(
        &fixture.engine,
        id,
        json!({"include": ["documents", "embeddings"]}),
    );
    assert_eq!(ids(&response), ["a", "b"]);
    assert_eq!(response["documents"], json!(["first", "b"]));
    assert_eq!(response["embeddings"], json!([[1.0], [2.0]]));
}

#[test]
fn update_merges_metadata_and_null_deletes() {
    let fixture = fixture();
    let id = create(&fixture.engine, "letters", Value::Null);
    write(
        &fixture.engine,
        id,
        WriteKind::Add,
        json!({"ids": ["a"], "embeddings": [[1.0]], "metadatas": [{"keep": 1, "drop": "x"}]}),
    )
    .unwrap();
    write(
        &fixture.engine,
        id,
        WriteKind::Update,
        json!({"ids": ["a", "ghost"], "metadatas": [{"drop": null, "new": true}, {"z": 1}]}),
    )
    .unwrap();

    let response = get(&fixture.engine, id, json!({}));
    assert_eq!(ids(&response), ["a"]);
    assert_eq!(response["metadatas"], json!([{"keep": 1, "new": true}]));
}

#[test]
fn upsert_updates_and_inserts() {
    let fixture = fixture();
    let id = create(&fixture.engine, "letters", Value::Null);
    write(
        &fixture.engine,
        id,
        WriteKind::Add,
        json!({"ids": ["a"], "embeddings": [[1.0]], "documents": ["old"]}),
    )
    .unwrap();
    write(
        &fixture.engine,
        id,
        WriteKind::Upsert,
        json!({"ids": ["a", "b"], "embeddings": [[7.0], [8.0]], "documents": ["new", "b"]}),
    )
    .unwrap();

    let response = get(
        &fixture.engine,
        id,
        json!({"include": ["documents", "embeddings"]}),
    );
    assert_eq!(ids(&response), ["a", "b"]);
    assert_eq!(response["documents"], json!(["new", "b"]));
    assert_eq!(response["embeddings"], json!([[7.0], [8.0]]));
}

#[test]
fn dimension_mismatch_writes_nothing() {
    let fixture = fixture();
    let id = create(&fixture.engine, "vectors", Value::Null);
    write(
        &fixture.engine,
        id,
        WriteKind::Add,
        json!({"ids": ["a"], "embeddings": [[1.0, 2.0, 3.0]]}),
    )
    .unwrap();
    let error = write(
        &fixture.engine,
        id,
        WriteKind::Add,
        json!({"ids": ["b", "c"], "embeddings": [[1.0, 2.0], [1.0, 2.0]]}),
    )
    .unwrap_err();
    assert_eq!(
        error.message,
        "Collection expecting embedding with dimension of 3, got 2"
    );
    assert_eq!(fixture.engine.count(T, D, id).unwrap(), 1);

    let query = json!({"query_embeddings": [[1.0]]});
    let request = QueryRecords::decode(&query, &Limits::default()).unwrap();
    assert_eq!(
        fixture
            .engine
            .query(T, D, id, request)
            .unwrap_err()
            .status(),
        400
    );
}

#[test]
fn query_distances_follow_space() {
    let fixture = fixture();
    for (space, expected) in [
        ("l2", 0.51f32),
        ("ip", 0.5),
        ("cosine", 1.0 - 0.5 / 0.51f32.sqrt()),
    ] {
        let id = create(
            &fixture.engine,
            &format!("space-{space}"),
            json!({"hnsw": {"space": space}}),
        );
        write(
            &fixture.engine,
            id,
            WriteKind::Add,
            json!({"ids": ["b"], "embeddings": [[0.5, 0.5, 0.1]]}),
        )
        .unwrap();
        let query = json!({"query_embeddings": [[1.0, 0.0, 0.0]], "n_results": 1});
        let request = QueryRecords::decode(&query, &Limits::default()).unwrap();
        let response = fixture.engine.query(T, D, id, request).unwrap();
        let distance = response.distances.unwrap()[0][0];
        assert!(
            (distance - expected).abs() < 1e-6,
            "{space}: {distance} != {expected}"
        );
    }
}

#[test]
fn data_survives_reopen() {
    let fixture = fixture();
    let id = create(&fixture.engine, "durable", Value::Null);
    write(&fixture.engine, id, WriteKind::Add, json!({"ids": ["a", "b"], "embeddings": [[1.0], [2.0]], "metadatas": [{"f": 1.0, "i": 1}, null], "documents": ["doc", null]})).unwrap();
    delete(&fixture.engine, id, json!({"ids": ["b"]}));
    let path = fixture.path.clone();
    let Fixture {
        _dir: dir, engine, ..
    } = fixture;
    drop(engine);

    let engine = Engine::open(Store::open(&path, &key()).unwrap(), Limits::default()).unwrap();
    let response = get(
        &engine,
        id,
        json!({"include": ["documents", "metadatas", "embeddings"]}),
    );
    assert_eq!(ids(&response), ["a"]);
    assert_eq!(response["metadatas"], json!([{"f": 1.0, "i": 1}]));
    assert_eq!(response["documents"], json!(["doc"]));
    let collection = engine.get_collection_by_id(T, D, id).unwrap();
    assert_eq!(collection.dimension, Some(1));
    drop(dir);
}

#[test]
fn collections_scoped_to_database() {
    let fixture = fixture();
    let id = create(&fixture.engine, "mine", Value::Null);
    fixture.engine.create_tenant("other").unwrap();
    fixture.engine.create_database("other", "db1").unwrap();
    let error = fixture.engine.count("other", "db1", id).unwrap_err();
    assert_eq!(error.status(), 404);
    assert_eq!(error.message, format!("Collection [{id}] does not exist"));
}

#[test]
fn rename_onto_existing_name_conflicts() {
    let fixture = fixture();
    create(&fixture.engine, "first", Value::Null);
    let second = create(&fixture.engine, "second", Value::Null);
    let request =
        api::requests::UpdateCollection::decode(&json!({"new_name": "first"}), &Limits::default())
            .unwrap();
    let error = fixture
        .engine
        .update_collection(T, D, second, request)
        .unwrap_err();
    assert_eq!(error.status(), 409);
    assert_eq!(error.message, "Collection [first] already exists");
}

#[test]
fn delete_with_limit_stops_early() {
    let fixture = fixture();
    let id = create(&fixture.engine, "letters", Value::Null);
    write(&fixture.engine, id, WriteKind::Add, json!({"ids": ["a", "b", "c"], "embeddings": [[1.0], [2.0], [3.0]], "metadatas": [{"k": 1}, {"k": 1}, {"k": 1}]})).unwrap();
    assert_eq!(
        delete(&fixture.engine, id, json!({"where": {"k": 1}, "limit": 2})),
        2
    );
    assert_eq!(ids(&get(&fixture.engine, id, json!({}))), ["c"]);
}

/// Writers lock a collection before the store, and deletes and reset lock the store;
/// this runs them against each other and fails if they deadlock.
#[test]
fn concurrent_writes_and_deletes_finish() {
    let fixture = fixture();
    let engine = std::sync::Arc::new(fixture.engine);
    let (done, finished) = std::sync::mpsc::channel();

    let mut workers = Vec::new();
    for worker in 0..3 {
        let engine = std::sync::Arc::clone(&engine);
        let done = done.clone();
        workers.push(std::thread::spawn(move || {
            for round in 0..30 {
                let name = format!("race-{worker}-{}", round % 3);
                let body = json!({"name": name, "get_or_create": true});
                let request = CreateCollection::decode(&body, &Limits::default()).unwrap();
                let Ok(collection) = engine.create_collection(T, D, request) else {
                    continue;
                };
                let id = Uuid::try_parse(&collection.id).unwrap();
                let batch = json!({"ids": [format!("r{round}")], "embeddings": [[1.0]]});
                // A write may find its collection deleted by another thread: 404, not 500.
                if let Err(error) = write(&engine, id, WriteKind::Add, batch) {
                    assert_eq!(error.status(), 404, "{error}");
                }
                if round % 4 == worker {
                    let _ = engine.delete_collection_by_name(T, D, &name);
                }
                if worker == 0 && round % 10 == 9 {
                    engine.reset().unwrap();
                }
            }
            done.send(()).unwrap();
        }));
    }
    for _ in 0..3 {
        finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a worker did not finish within 60 s: deadlock");
    }
    for worker in workers {
        worker.join().unwrap();
    }
}

/// Found by Chroma's test suite (test_delete_with_limit_zero_is_noop): a delete with
/// `limit` 0 removes nothing instead of being rejected.
#[test]
fn delete_with_limit_zero_is_noop() {
    let fixture = fixture();
    let id = create(&fixture.engine, "letters", Value::Null);
    write(
        &fixture.engine,
        id,
        WriteKind::Add,
        json!({"ids": ["a", "b"], "embeddings": [[1.0], [2.0]], "metadatas": [{"k": 1}, {"k": 1}]}),
    )
    .unwrap();
    assert_eq!(
        delete(&fixture.engine, id, json!({"where": {"k": 1}, "limit": 0})),
        0
    );
    assert_eq!(fixture.engine.count(T, D, id).unwrap(), 2);
}

/// Found by Chroma's test suite (test_query_id_filtering_e2e): a query restricted to
/// an id that does not exist fails with "Error finding id", unlike a get.
#[test]
fn query_with_missing_id_rejected() {
    let fixture = fixture();
    let id = create(&fixture.engine, "letters", Value::Null);
    write(
        &fixture.engine,
        id,
        WriteKind::Add,
        json!({"ids": ["a"], "embeddings": [[1.0]]}),
    )
    .unwrap();

    let query = json!({"query_embeddings": [[1.0]], "ids": ["a", "gone"], "n_results": 1});
    let request = QueryRecords::decode(&query, &Limits::default()).unwrap();
    let error = fixture.engine.query(T, D, id, request).unwrap_err();
    assert_eq!(error.status(), 400);
    assert!(
        error.message.contains("Error finding id [gone]"),
        "{}",
        error.message
    );

    let get = get(&fixture.engine, id, json!({"ids": ["a", "gone"]}));
    assert_eq!(ids(&get), ["a"]);
}
