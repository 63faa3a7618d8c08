//! Collection schemas against a real encrypted store: filters that need a disabled
//! index, key discovery, configuration updates, and all of them across a restart.

#![allow(clippy::unwrap_used)] // Test helpers unwrap: a panic is a test failure.

use api::requests::{
    CreateCollection, DeleteRecords, GetRecords, QueryRecords, RecordBatch, UpdateCollection,
    WriteKind,
};
use api::Limits;
use ravelin_engine::{Engine, DEFAULT_DATABASE, DEFAULT_TENANT};
use serde_json::{json, Value};
use store::{MasterKey, Store};
use uuid::Uuid;

const T: &str = DEFAULT_TENANT;
const D: &str = DEFAULT_DATABASE;

fn key() -> MasterKey {
    MasterKey::from_bytes([7; 32])
}

fn open(path: &std::path::Path, create: bool) -> Engine {
    let store = if create {
        Store::create(path, &key()).unwrap()
    } else {
        Store::open(path, &key()).unwrap()
    };
    Engine::open(store, Limits::default()).unwrap()
}

/// Returns a schema that disables the string index of `restricted_tag` and the full-text
/// index of `#document`.
fn restricted_schema() -> Value {
    json!({
        "defaults": {},
        "keys": {
            "restricted_tag": {"string": {"string_inverted_index": {"enabled": false, "config": {}}}},
            "#document": {"string": {"fts_index": {"enabled": false, "config": {}},
                                     "string_inverted_index": {"enabled": false, "config": {}}}}
        }
    })
}

fn create(engine: &Engine, name: &str, schema: Value) -> (Uuid, Value) {
    let body = json!({"name": name, "schema": schema});
    let request = CreateCollection::decode(&body, &Limits::default()).unwrap();
    let response = engine.create_collection(T, D, request).unwrap();
    let id = Uuid::try_parse(&response.id).unwrap();
    (id, serde_json::to_value(response).unwrap())
}

fn collection(engine: &Engine, name: &str) -> Value {
    serde_json::to_value(engine.get_collection_by_name(T, D, name).unwrap()).unwrap()
}

fn add(engine: &Engine, id: Uuid, body: Value) {
    let batch = RecordBatch::decode(&body, WriteKind::Add, &Limits::default()).unwrap();
    engine.write(T, D, id, WriteKind::Add, batch).unwrap();
}

fn get(engine: &Engine, id: Uuid, body: Value) -> Result<Value, api::ApiError> {
    let request = GetRecords::decode(&body, &Limits::default()).unwrap();
    engine
        .get(T, D, id, request)
        .map(|response| serde_json::to_value(response).unwrap())
}

fn query(engine: &Engine, id: Uuid, body: Value) -> Result<Value, api::ApiError> {
    let request = QueryRecords::decode(&body, &Limits::default()).unwrap();
    engine
        .query(T, D, id, request)
        .map(|response| serde_json::to_value(response).unwrap())
}

fn delete(engine: &Engine, id: Uuid, body: Value) -> Result<usize, api::ApiError> {
    let request = DeleteRecords::decode(&body, &Limits::default()).unwrap();
    engine.delete_records(T, D, id, request)
}

fn assert_rejected<T: std::fmt::Debug>(result: Result<T, api::ApiError>, expected: &str) {
    let error = result.unwrap_err();
    assert_eq!(error.status(), 400, "{}", error.message);
    assert!(error.message.contains(expected), "{}", error.message);
}

#[test]
fn disabled_indexes_reject_filters_in_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.db");
    let engine = open(&path, true);
    let (id, _) = create(&engine, "restricted", restricted_schema());
    add(
        &engine,
        id,
        json!({"ids": ["a"], "embeddings": [[0.1, 0.2]], "documents": ["alpha"],
               "metadatas": [{"restricted_tag": "blocked", "open_tag": "x"}]}),
    );

    let by_tag = json!({"restricted_tag": "blocked"});
    let key_message = "Cannot filter using metadata key 'restricted_tag'";
    assert_rejected(get(&engine, id, json!({"where": by_tag})), key_message);
    assert_rejected(
        query(
            &engine,
            id,
            json!({"query_embeddings": [[0.1, 0.2]], "where": by_tag}),
        ),
        key_message,
    );
    assert_rejected(
        delete(&engine, id, json!({"ids": ["a"], "where": by_tag})),
        key_message,
    );

    let by_text = json!({"$contains": "alpha"});
    assert_rejected(get(&engine, id, json!({"where_document": by_text})), "FTS");
    assert_rejected(
        delete(&engine, id, json!({"where_document": by_text})),
        "FTS",
    );

    let allowed = get(&engine, id, json!({"where": {"open_tag": "x"}})).unwrap();
    assert_eq!(allowed["ids"], json!(["a"]));
    assert_eq!(engine.count(T, D, id).unwrap(), 1);

    drop(engine);
    let reopened = open(&path, false);
    assert_rejected(get(&reopened, id, json!({"where": by_tag})), key_message);
    assert_rejected(
        get(&reopened, id, json!({"where_document": by_text})),
        "FTS",
    );
}

#[test]
fn written_keys_discovered_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.db");
    let engine = open(&path, true);
    let (id, created) = create(&engine, "discovery", Value::Null);
    assert!(created["schema"]["keys"].get("topic").is_none());

    add(
        &engine,
        id,
        json!({"ids": ["a", "b"], "embeddings": [[1.0], [2.0]],
               "metadatas": [{"topic": "x", "tags": [1, 2]}, {"topic": 5}]}),
    );

    let keys = collection(&engine, "discovery")["schema"]["keys"].clone();
    assert_eq!(
        keys["topic"]["string"]["string_inverted_index"]["enabled"],
        true
    );
    assert_eq!(keys["topic"]["int"]["int_inverted_index"]["enabled"], true);
    assert_eq!(keys["tags"]["int"]["int_inverted_index"]["enabled"], true);
    assert!(keys["topic"].get("float").is_none());

    drop(engine);
    let reopened = open(&path, false);
    let reloaded = collection(&reopened, "discovery")["schema"]["keys"].clone();
    assert_eq!(reloaded, keys);
}

#[test]
fn configuration_update_reaches_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.db");
    let engine = open(&path, true);
    let (id, created) = create(&engine, "updated", Value::Null);
    assert_eq!(created["configuration_json"]["hnsw"]["ef_search"], 100);

    let body = json!({"new_configuration": {"hnsw": {"ef_search": 77}, "spann": null,
        "embedding_function": {"type": "known", "name": "simple_ef", "config": {"dim": 3}}}});
    let request = UpdateCollection::decode(&body, &Limits::default()).unwrap();
    engine.update_collection(T, D, id, request).unwrap();

    drop(engine);
    let reopened = open(&path, false);
    let response = collection(&reopened, "updated");
    let vector = &response["schema"]["keys"]["#embedding"]["float_list"]["vector_index"]["config"];
    assert_eq!(vector["hnsw"]["ef_search"], 77);
    assert_eq!(vector["embedding_function"]["name"], "simple_ef");
    assert_eq!(
        response["schema"]["defaults"]["float_list"]["vector_index"]["config"]["hnsw"]["ef_search"],
        77
    );
    assert_eq!(response["configuration_json"]["hnsw"]["ef_search"], 77);
    assert_eq!(
        response["configuration_json"]["embedding_function"]["name"],
        "simple_ef"
    );
}

#[test]
fn schema_space_sets_distance() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.db");
    let engine = open(&path, true);
    let schema = json!({"defaults": {}, "keys": {"#embedding": {"float_list": {"vector_index": {
        "enabled": true, "config": {"space": "cosine", "source_key": "#document"}}}}}});
    let (id, created) = create(&engine, "cosine", schema);
    assert_eq!(created["configuration_json"]["hnsw"]["space"], "cosine");

    add(
        &engine,
        id,
        json!({"ids": ["a"], "embeddings": [[3.0, 0.0]]}),
    );
    let result = query(
        &engine,
        id,
        json!({"query_embeddings": [[1.0, 0.0]], "include": ["distances"]}),
    )
    .unwrap();

    let distance = result["distances"][0][0].as_f64().unwrap();
    assert!(distance.abs() < 1e-6, "cosine distance {distance}");
}

/// Before schemas were reconciled, the store kept the client's schema unchecked next to
/// the real configuration. Trusting such a schema on load would change the collection's
/// space, so a schema that disagrees with the stored configuration is rebuilt from it.
#[test]
fn unreconciled_stored_schema_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.db");
    let engine = open(&path, true);
    let body = json!({"name": "legacy", "configuration": {"hnsw": {"space": "cosine"}}});
    let request = CreateCollection::decode(&body, &Limits::default()).unwrap();
    engine.create_collection(T, D, request).unwrap();
    drop(engine);

    let mut store = Store::open(&path, &key()).unwrap();
    let mut row = store
        .load_catalog()
        .unwrap()
        .collections
        .into_iter()
        .find(|row| row.name == "legacy")
        .unwrap();
    let client_schema = json!({"defaults": {}, "keys": {"#embedding": {"float_list": {
        "vector_index": {"enabled": true, "config": {"space": "l2", "source_key": "#document"}}}}}});
    row.schema_json = Some(client_schema.to_string());
    store.update_collection(&row).unwrap();
    drop(store);

    let reopened = open(&path, false);
    let response = collection(&reopened, "legacy");
    assert_eq!(response["configuration_json"]["hnsw"]["space"], "cosine");
    let vector = &response["schema"]["keys"]["#embedding"]["float_list"]["vector_index"]["config"];
    assert_eq!(vector["space"], "cosine");
    assert_eq!(vector["hnsw"]["ef_construction"], 100);
}
