//! `Engine::stats`: the totals follow creates, writes, index builds and deletes.

#![allow(clippy::unwrap_used)] // Test helpers unwrap: a panic is a test failure.

use api::requests::{CreateCollection, DeleteRecords, RecordBatch, WriteKind};
use api::Limits;
use ravelin_engine::{Engine, EngineStats, Pass, DEFAULT_DATABASE, DEFAULT_TENANT};
use serde_json::json;
use store::{MasterKey, Store};
use uuid::Uuid;

const T: &str = DEFAULT_TENANT;
const D: &str = DEFAULT_DATABASE;

/// Opens an engine whose collections get an index as soon as they contain a vector.
fn open(dir: &tempfile::TempDir) -> Engine {
    let limits = Limits {
        exact_scan_max_vector_bytes: 0,
        ..Limits::default()
    };
    let store =
        Store::create(&dir.path().join("test.db"), &MasterKey::from_bytes([5; 32])).unwrap();
    Engine::open(store, limits).unwrap()
}

fn create(engine: &Engine, name: &str) -> Uuid {
    let request = CreateCollection::decode(&json!({"name": name}), &Limits::default()).unwrap();
    Uuid::try_parse(&engine.create_collection(T, D, request).unwrap().id).unwrap()
}

fn add(engine: &Engine, id: Uuid, count: usize) {
    let ids: Vec<String> = (0..count).map(|i| format!("r{i}")).collect();
    let embeddings: Vec<[f32; 2]> = (0..count).map(|i| [i as f32, 1.0]).collect();
    let body = json!({"ids": ids, "embeddings": embeddings});
    let batch = RecordBatch::decode(&body, WriteKind::Add, &Limits::default()).unwrap();
    engine.write(T, D, id, WriteKind::Add, batch).unwrap();
}

#[test]
fn new_engine_has_default_tenant_only() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(&dir);

    assert_eq!(
        engine.stats(),
        EngineStats {
            tenants: 1,
            databases: 1,
            ..EngineStats::default()
        }
    );
}

#[test]
fn stats_follow_writes_and_index_builds() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(&dir);
    engine.create_tenant("second").unwrap();
    engine.create_database("second", "db").unwrap();
    let indexed = create(&engine, "indexed");
    create(&engine, "empty");
    add(&engine, indexed, 10);

    let before_upkeep = engine.stats();
    assert_eq!(before_upkeep.tenants, 2);
    assert_eq!(before_upkeep.databases, 2);
    assert_eq!(before_upkeep.collections, 2);
    assert_eq!(before_upkeep.records, 10);
    assert_eq!(before_upkeep.indexed_collections, 0);
    assert_eq!(before_upkeep.index_slots, 0);

    engine.maintain(Pass::Final);
    let built = engine.stats();
    assert_eq!(built.indexed_collections, 1);
    assert_eq!(built.index_slots, 10);
    assert_eq!(built.index_live_slots, 10);

    let request = DeleteRecords::decode(&json!({"ids": ["r0", "r1"]}), &Limits::default()).unwrap();
    engine.delete_records(T, D, indexed, request).unwrap();
    let after_delete = engine.stats();
    assert_eq!(after_delete.records, 8);
    assert_eq!(after_delete.index_live_slots, 8);
    assert!(
        after_delete.index_slots >= 8,
        "index_slots {} counts deleted slots too",
        after_delete.index_slots
    );

    engine.delete_collection_by_name(T, D, "indexed").unwrap();
    let after_drop = engine.stats();
    assert_eq!(after_drop.collections, 1);
    assert_eq!(after_drop.records, 0);
    assert_eq!(after_drop.indexed_collections, 0);
    assert_eq!(after_drop.index_slots, 0);
}
