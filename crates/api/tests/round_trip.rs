//! Round trips of request encoding: for every request the gateway forwards, decoding
//! the encoded request yields a value equal to the decoded original.
//!
//! The strategies generate request bodies as a client would send them (float lists and
//! base64 embeddings, `$eq` shorthand, `$in` lists in any order, configurations,
//! legacy `hnsw:*` metadata keys, schemas) and keep those that decode.

#![allow(clippy::unwrap_used)] // A panic in a test is a test failure.

use base64::Engine as _;
use proptest::prelude::*;
use ravelin_api::requests::{
    CreateCollection, CreateNamed, DeleteRecords, GetRecords, QueryRecords, RecordBatch,
    UpdateCollection, WriteKind,
};
use ravelin_api::Limits;
use serde_json::{json, Map, Value};

fn limits() -> Limits {
    Limits::default()
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{1,4}(\\.[a-z0-9_-]{1,4})?[a-z0-9]"
}

fn key() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_:]{0,6}"
}

fn text() -> impl Strategy<Value = String> {
    "[ -~\u{e9}\u{4e2d}]{0,12}"
}

fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::num::f64::NORMAL | prop::num::f64::ZERO | prop::num::f64::SUBNORMAL,
        (-1000i32..1000).prop_map(|n| f64::from(n) / 4.0),
    ]
}

/// Finite f32 values within the embedding magnitude limit of 1e16.
fn finite_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        -1e15f32..1e15f32,
        -1e-3f32..1e-3f32,
        prop::num::f32::ZERO | prop::num::f32::SUBNORMAL,
        (-100i32..100).prop_map(|n| n as f32 / 8.0),
    ]
}

fn float(value: f64) -> Value {
    Value::Number(serde_json::Number::from_f64(value).unwrap())
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        finite_f64().prop_map(float),
        text().prop_map(Value::from),
    ]
}

fn metadata_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => scalar(),
        1 => prop::collection::vec(any::<bool>(), 1..4).prop_map(|items| json!(items)),
        1 => prop::collection::vec(any::<i64>(), 1..4).prop_map(|items| json!(items)),
        1 => prop::collection::vec(finite_f64(), 1..4)
            .prop_map(|items| Value::Array(items.into_iter().map(float).collect())),
        1 => prop::collection::vec(text(), 1..4).prop_map(|items| json!(items)),
        1 => prop::collection::btree_map(0u32..1000, finite_f32(), 1..4).prop_map(|pairs| {
            let (indices, values): (Vec<u32>, Vec<f32>) = pairs.into_iter().unzip();
            json!({"#type": "sparse_vector", "indices": indices,
                "values": values.into_iter().map(|v| float(f64::from(v))).collect::<Vec<_>>()})
        }),
    ]
}

/// Generates a metadata object whose values may be `null` (delete the key) when `nulls` is set.
fn metadata(nulls: bool) -> impl Strategy<Value = Value> {
    let value = if nulls {
        prop_oneof![4 => metadata_value(), 1 => Just(Value::Null)].boxed()
    } else {
        metadata_value().boxed()
    };
    prop::collection::btree_map(key(), value, 1..5)
        .prop_map(|map| Value::Object(map.into_iter().collect()))
}

fn where_leaf() -> impl Strategy<Value = Value> {
    let comparison = prop_oneof![
        (Just("$eq"), scalar()),
        (Just("$ne"), scalar()),
        (
            Just("$gt"),
            prop_oneof![
                any::<i64>().prop_map(Value::from),
                finite_f64().prop_map(float)
            ]
        ),
        (
            Just("$lte"),
            prop_oneof![
                any::<i64>().prop_map(Value::from),
                finite_f64().prop_map(float)
            ]
        ),
        (Just("$contains"), scalar()),
        (Just("$not_contains"), scalar()),
    ];
    let list = prop_oneof![
        prop::collection::vec(text(), 1..4).prop_map(|items| json!(items)),
        prop::collection::vec(any::<bool>(), 1..3).prop_map(|items| json!(items)),
        prop::collection::vec(
            prop_oneof![
                (-5i64..5).prop_map(Value::from),
                (-20i32..20).prop_map(|n| float(f64::from(n) / 2.0)),
            ],
            1..5
        )
        .prop_map(Value::Array),
    ];
    prop_oneof![
        (key(), scalar()).prop_map(|(key, value)| json!({ key: value })),
        (key(), comparison)
            .prop_map(|(key, (operator, operand))| json!({ key: { operator: operand } })),
        (key(), prop_oneof![Just("$in"), Just("$nin")], list)
            .prop_map(|(key, operator, list)| json!({ key: { operator: list } })),
        document_leaf().prop_map(|condition| json!({ "#document": condition })),
    ]
}

fn document_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(|text| json!({ "$contains": text })),
        text().prop_map(|text| json!({ "$not_contains": text })),
        "[a-z]{1,4}(\\.\\*)?[0-9]?".prop_map(|pattern| json!({ "$regex": pattern })),
        "[a-z]{1,4}".prop_map(|pattern| json!({ "$not_regex": pattern })),
    ]
}

fn logical(leaf: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    leaf.prop_recursive(3, 12, 3, |inner| {
        (
            prop_oneof![Just("$and"), Just("$or")],
            prop::collection::vec(inner, 1..3),
        )
            .prop_map(|(operator, children)| json!({ operator: children }))
    })
}

fn where_clause() -> impl Strategy<Value = Value> {
    prop_oneof![1 => Just(Value::Null), 3 => logical(where_leaf().boxed())]
}

fn where_document() -> impl Strategy<Value = Value> {
    prop_oneof![1 => Just(Value::Null), 2 => logical(document_leaf().boxed())]
}

fn ids() -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set("[a-z0-9-]{1,8}", 1..6).prop_map(|ids| ids.into_iter().collect())
}

fn optional_ids() -> impl Strategy<Value = Value> {
    prop_oneof![Just(Value::Null), ids().prop_map(|ids| json!(ids))]
}

fn include() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("documents"),
        Just("embeddings"),
        Just("metadatas"),
        Just("distances"),
        Just("uris"),
    ];
    prop_oneof![
        Just(Value::Null),
        prop::collection::vec(field, 0..5).prop_map(|fields| json!(fields)),
    ]
}

/// Generates a column of `rows` entries, or `null`.
fn column(rows: usize, item: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        prop::collection::vec(prop_oneof![1 => Just(Value::Null), 3 => item], rows..=rows)
            .prop_map(Value::Array),
    ]
}

fn embedding(dimension: usize) -> impl Strategy<Value = Value> {
    let values = prop::collection::vec(finite_f32(), dimension..=dimension).boxed();
    prop_oneof![
        values.clone().prop_map(|values| Value::Array(
            values.into_iter().map(|v| float(f64::from(v))).collect()
        )),
        values.prop_map(|values| {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
        }),
    ]
}

fn record_batch(kind: WriteKind) -> impl Strategy<Value = Value> {
    (ids(), 1usize..6).prop_flat_map(move |(ids, dimension)| {
        let rows = ids.len();
        let embeddings =
            prop::collection::vec(embedding(dimension), rows..=rows).prop_map(Value::Array);
        let embeddings = if kind == WriteKind::Update {
            prop_oneof![Just(Value::Null), embeddings].boxed()
        } else {
            embeddings.boxed()
        };
        let nulls = kind != WriteKind::Add;
        (
            Just(ids),
            embeddings,
            column(rows, text().prop_map(Value::from).boxed()),
            column(rows, metadata(nulls).boxed()),
            column(
                rows,
                "[a-z]{1,6}://[a-z]{1,6}".prop_map(Value::from).boxed(),
            ),
        )
            .prop_map(|(ids, embeddings, documents, metadatas, uris)| {
                json!({"ids": ids, "embeddings": embeddings, "documents": documents,
                    "metadatas": metadatas, "uris": uris})
            })
    })
}

fn embedding_function() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!({"type": "legacy"})),
        Just(json!({"type": "unknown"})),
        Just(json!({"type": "known", "name": "default", "config": {}})),
        (1u64..2048, any::<bool>()).prop_map(|(dim, normalize)| {
            json!({"type": "known", "name": "simple_ef",
                "config": {"dim": dim, "normalize": normalize, "trust_remote_code": false}})
        }),
    ]
}

fn hnsw(create: bool) -> impl Strategy<Value = Value> {
    let space = if create {
        prop_oneof![
            Just(Value::Null),
            Just(json!("l2")),
            Just(json!("cosine")),
            Just(json!("ip"))
        ]
        .boxed()
    } else {
        Just(Value::Null).boxed()
    };
    let optional =
        |range: std::ops::Range<u64>| prop_oneof![Just(Value::Null), range.prop_map(Value::from)];
    (
        space,
        optional(1..500),
        optional(1..500),
        optional(2..64),
        prop_oneof![
            Just(Value::Null),
            (4u32..40).prop_map(|n| float(f64::from(n) / 4.0))
        ],
        optional(2..5000),
        optional(1..16),
    )
        .prop_map(
            move |(space, ef_construction, ef_search, neighbors, resize, sync, threads)| {
                let mut object = Map::new();
                object.insert("space".into(), space);
                if create {
                    object.insert("ef_construction".into(), ef_construction);
                }
                object.insert("ef_search".into(), ef_search);
                object.insert("max_neighbors".into(), neighbors);
                object.insert("resize_factor".into(), resize);
                object.insert("sync_threshold".into(), sync);
                object.insert("num_threads".into(), threads);
                object.retain(|_, value| !value.is_null());
                Value::Object(object)
            },
        )
}

/// Collection metadata, sometimes with legacy HNSW keys.
fn collection_metadata() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => Just(Value::Null),
        2 => metadata(false),
        1 => (prop_oneof![Just("l2"), Just("cosine"), Just("ip")], 1u64..300)
            .prop_map(|(space, ef)| json!({"hnsw:space": space, "hnsw:search_ef": ef, "topic": "x"})),
    ]
}

/// Generates a schema that disables one inverted index, in the Python client's form, or `null`.
fn schema() -> impl Strategy<Value = Value> {
    let disabled = prop_oneof![
        Just(("string", "string_inverted_index")),
        Just(("int", "int_inverted_index")),
        Just(("float", "float_inverted_index")),
        Just(("bool", "bool_inverted_index")),
    ];
    prop_oneof![
        3 => Just(Value::Null),
        1 => (key(), disabled).prop_map(|(key, (value_type, index))| {
            json!({
                "defaults": {
                    "string": {"fts_index": {"enabled": false, "config": {}},
                               "string_inverted_index": {"enabled": true, "config": {}}},
                    "int": {"int_inverted_index": {"enabled": true, "config": {}}},
                    "float": {"float_inverted_index": {"enabled": true, "config": {}}},
                    "bool": {"bool_inverted_index": {"enabled": true, "config": {}}}
                },
                "keys": { key: { value_type: { index: {"enabled": false, "config": {}} } } }
            })
        }),
    ]
}

fn create_collection() -> impl Strategy<Value = Value> {
    let configuration = prop_oneof![
        Just(Value::Null),
        (prop_oneof![Just(Value::Null), hnsw(true)], embedding_function()).prop_map(
            |(hnsw, function)| json!({"hnsw": hnsw, "spann": null, "embedding_function": function})
        ),
    ];
    (
        name(),
        collection_metadata(),
        configuration,
        schema(),
        any::<bool>(),
    )
        .prop_map(|(name, metadata, configuration, schema, get_or_create)| {
            json!({"name": name, "metadata": metadata, "configuration": configuration,
                "schema": schema, "get_or_create": get_or_create})
        })
}

fn update_collection() -> impl Strategy<Value = Value> {
    let configuration = prop_oneof![
        Just(Value::Null),
        (
            prop_oneof![Just(Value::Null), hnsw(false)],
            embedding_function(),
            any::<bool>()
        )
            .prop_map(|(hnsw, function, spann)| {
                let spann = if spann {
                    json!({"search_nprobe": 8})
                } else {
                    Value::Null
                };
                json!({"hnsw": hnsw, "spann": spann, "embedding_function": function})
            }),
    ];
    (
        prop_oneof![Just(Value::Null), name().prop_map(Value::from)],
        prop_oneof![Just(Value::Null), metadata(false)],
        configuration,
    )
        .prop_map(|(new_name, new_metadata, new_configuration)| {
            json!({"new_name": new_name, "new_metadata": new_metadata,
                "new_configuration": new_configuration})
        })
}

fn optional_count(range: std::ops::Range<u64>) -> impl Strategy<Value = Value> {
    prop_oneof![Just(Value::Null), range.prop_map(Value::from)]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn create_named_round_trip(name in name()) {
        let decoded = CreateNamed::decode(&json!({"name": name}), "tenant").unwrap();
        prop_assert_eq!(CreateNamed::decode(&decoded.encode(), "tenant").unwrap(), decoded);
    }

    #[test]
    fn create_collection_round_trip(body in create_collection()) {
        let Ok(decoded) = CreateCollection::decode(&body, &limits()) else {
            return Err(TestCaseError::reject("invalid request"));
        };
        let encoded = decoded.encode();
        let again = CreateCollection::decode(&encoded, &limits());
        prop_assert!(again.is_ok(), "{encoded}: {:?}", again.err());
        prop_assert_eq!(again.unwrap(), decoded);
    }

    #[test]
    fn update_collection_round_trip(body in update_collection()) {
        let Ok(decoded) = UpdateCollection::decode(&body, &limits()) else {
            return Err(TestCaseError::reject("invalid request"));
        };
        prop_assert_eq!(UpdateCollection::decode(&decoded.encode(), &limits()).unwrap(), decoded);
    }

    #[test]
    fn record_batch_round_trip(
        (kind, body) in prop_oneof![Just(WriteKind::Add), Just(WriteKind::Upsert), Just(WriteKind::Update)]
            .prop_flat_map(|kind| (Just(kind), record_batch(kind))),
    ) {
        let decoded = RecordBatch::decode(&body, kind, &limits()).unwrap();
        let encoded = decoded.encode();
        prop_assert_eq!(RecordBatch::decode(&encoded, kind, &limits()).unwrap(), decoded);
    }

    #[test]
    fn delete_records_round_trip(
        ids in optional_ids(),
        where_clause in where_clause(),
        where_document in where_document(),
        limit in optional_count(0..100),
    ) {
        let body = json!({"ids": ids, "where": where_clause, "where_document": where_document, "limit": limit});
        let Ok(decoded) = DeleteRecords::decode(&body, &limits()) else {
            return Err(TestCaseError::reject("invalid request"));
        };
        prop_assert_eq!(DeleteRecords::decode(&decoded.encode(), &limits()).unwrap(), decoded);
    }

    #[test]
    fn get_records_round_trip(
        ids in optional_ids(),
        where_clause in where_clause(),
        where_document in where_document(),
        limit in optional_count(1..100),
        offset in optional_count(0..100),
        include in include(),
    ) {
        let body = json!({"ids": ids, "where": where_clause, "where_document": where_document,
            "limit": limit, "offset": offset, "include": include});
        let Ok(decoded) = GetRecords::decode(&body, &limits()) else {
            return Err(TestCaseError::reject("invalid request"));
        };
        prop_assert_eq!(GetRecords::decode(&decoded.encode(), &limits()).unwrap(), decoded);
    }

    #[test]
    fn query_records_round_trip(
        dimension in 1usize..6,
        queries in 1usize..4,
        ids in optional_ids(),
        n_results in optional_count(1..50),
        where_clause in where_clause(),
        where_document in where_document(),
        include in include(),
        values in prop::collection::vec(finite_f32(), 30),
    ) {
        let embeddings: Vec<Value> = values
            .chunks(dimension)
            .take(queries)
            .filter(|chunk| chunk.len() == dimension)
            .map(|chunk| Value::Array(chunk.iter().map(|v| float(f64::from(*v))).collect()))
            .collect();
        let body = json!({"ids": ids, "query_embeddings": embeddings, "n_results": n_results,
            "where": where_clause, "where_document": where_document, "include": include});
        let Ok(decoded) = QueryRecords::decode(&body, &limits()) else {
            return Err(TestCaseError::reject("invalid request"));
        };
        prop_assert_eq!(QueryRecords::decode(&decoded.encode(), &limits()).unwrap(), decoded);
    }
}

/// Chroma 1.5.9 accepts an `$in` list of ints and floats only when it starts with a
/// float, so the encoder puts floats first.
#[test]
fn mixed_in_list_starts_with_float() {
    let body = json!({"where": {"n": {"$in": [3, 2.5, 2.0]}}});
    let decoded = GetRecords::decode(&body, &limits()).unwrap();
    let encoded = decoded.encode();
    assert_eq!(encoded["where"], json!({"n": {"$in": [2.5, 2, 3]}}));
}

/// Record embeddings travel as base64 of little-endian float32, exactly.
#[test]
fn record_embeddings_sent_as_base64() {
    let body = json!({"ids": ["a"], "embeddings": [[1.0, 0.0, 0.0]]});
    let decoded = RecordBatch::decode(&body, WriteKind::Add, &limits()).unwrap();
    assert_eq!(decoded.encode()["embeddings"], json!(["AACAPwAAAAAAAAAA"]));
}

/// A spann section of a modify request is dropped, since nothing reads it.
#[test]
fn update_spann_dropped() {
    let body = json!({"new_configuration": {"hnsw": {"ef_search": 7, "batch_size": null},
        "spann": {"anything": ["at", {"all": 1}]}}});
    let decoded = UpdateCollection::decode(&body, &limits()).unwrap();
    assert_eq!(
        decoded.encode()["new_configuration"],
        json!({"hnsw": {"ef_search": 7}})
    );
}
