#![allow(clippy::unwrap_used)] // A panic in a test is a test failure.

use serde_json::{json, Value};

use super::*;
use crate::config::CollectionConfiguration;
use crate::filter::{Filter, FilterLimits};
use crate::metadata::{decode_metadata_strict, MetadataLimits};

fn limits() -> Limits {
    Limits::default()
}

fn simple_function(dim: u64) -> Value {
    json!({"type": "known", "name": "simple_ef", "config": {"dim": dim}})
}

/// Returns what the Python client 1.5.9 sends for `Schema()`, as captured from its
/// requests to `chroma run` 1.5.9.
fn python_default_schema() -> Value {
    json!({
        "defaults": {
            "string": {"fts_index": {"enabled": false, "config": {}},
                       "string_inverted_index": {"enabled": true, "config": {}}},
            "float_list": {"vector_index": {"enabled": false, "config": {
                "embedding_function": {"name": "default", "type": "known", "config": {}},
                "space": "l2"}}},
            "sparse_vector": {"sparse_vector_index": {"enabled": false,
                "config": {"embedding_function": {"type": "unknown"}}}},
            "int": {"int_inverted_index": {"enabled": true, "config": {}}},
            "float": {"float_inverted_index": {"enabled": true, "config": {}}},
            "bool": {"bool_inverted_index": {"enabled": true, "config": {}}}
        },
        "keys": {
            "#document": {"string": {"fts_index": {"enabled": true, "config": {}},
                                     "string_inverted_index": {"enabled": false, "config": {}}}},
            "#embedding": {"float_list": {"vector_index": {"enabled": true, "config": {
                "embedding_function": {"name": "default", "type": "known", "config": {}},
                "source_key": "#document", "space": "l2"}}}}
        }
    })
}

/// `python_default_schema` with `change` applied to its JSON.
fn python_schema_with(change: impl FnOnce(&mut Value)) -> Schema {
    let mut value = python_default_schema();
    change(&mut value);
    Schema::decode(&value, &limits()).unwrap()
}

fn configuration(value: Value) -> CollectionConfiguration {
    CollectionConfiguration::from_create(Some(&value), None, 64 * 1024).unwrap()
}

fn filter(where_clause: Value, where_document: Value) -> Filter {
    Filter::parse(
        Some(&where_clause).filter(|value| !value.is_null()),
        Some(&where_document).filter(|value| !value.is_null()),
        &FilterLimits::default(),
    )
    .unwrap()
}

fn embedding_settings(schema: &Schema) -> &VectorIndexConfig {
    &schema.keys[EMBEDDING_KEY]
        .float_list
        .as_ref()
        .unwrap()
        .vector_index
        .as_ref()
        .unwrap()
        .config
}

fn default_vector_settings(schema: &Schema) -> &VectorIndexConfig {
    &schema
        .defaults
        .float_list
        .as_ref()
        .unwrap()
        .vector_index
        .as_ref()
        .unwrap()
        .config
}

#[test]
fn default_schema_shape() {
    let schema = Schema::from_configuration(&CollectionConfiguration::default());
    let json = schema.to_json();

    assert_eq!(
        json["defaults"]["string"]["string_inverted_index"]["enabled"],
        true
    );
    assert_eq!(json["defaults"]["string"]["fts_index"]["enabled"], false);
    assert_eq!(
        json["defaults"]["int"]["int_inverted_index"]["enabled"],
        true
    );
    assert_eq!(
        json["defaults"]["float"]["float_inverted_index"]["enabled"],
        true
    );
    assert_eq!(
        json["defaults"]["bool"]["bool_inverted_index"]["enabled"],
        true
    );
    assert_eq!(
        json["defaults"]["float_list"]["vector_index"]["enabled"],
        false
    );
    assert_eq!(
        json["defaults"]["sparse_vector"]["sparse_vector_index"]["config"],
        json!({"embedding_function": {"type": "unknown"}, "bm25": false})
    );

    let embedding = &json["keys"]["#embedding"]["float_list"]["vector_index"];
    assert_eq!(embedding["enabled"], true);
    assert_eq!(embedding["config"]["space"], "l2");
    assert_eq!(embedding["config"]["source_key"], "#document");
    assert_eq!(embedding["config"]["hnsw"]["ef_construction"], 100);
    assert_eq!(embedding["config"]["hnsw"]["batch_size"], 100);
    assert!(embedding["config"].get("embedding_function").is_none());
    assert!(embedding["config"].get("spann").is_none());

    let document = &json["keys"]["#document"]["string"];
    assert_eq!(document["fts_index"]["enabled"], true);
    assert_eq!(document["string_inverted_index"]["enabled"], false);
    assert_eq!(json["keys"].as_object().unwrap().len(), 2);
}

#[test]
fn configuration_round_trips_through_schema() {
    let requested = configuration(json!({
        "hnsw": {"space": "ip", "ef_search": 7, "max_neighbors": 32, "batch_size": 50},
        "embedding_function": simple_function(8)
    }));
    let schema = Schema::from_configuration(&requested);

    assert_eq!(schema.configuration(), requested);
    assert_eq!(
        default_vector_settings(&schema).embedding_function,
        Some(simple_function(8))
    );
    assert_eq!(embedding_settings(&schema).space, Some(Space::Ip));
}

#[test]
fn stored_schema_round_trips() {
    let schema = Schema::reconcile(
        Some(&python_schema_with(|value| {
            value["keys"]["tag"] =
                json!({"string": {"string_inverted_index": {"enabled": false, "config": {}}}});
        })),
        &CollectionConfiguration::default(),
    )
    .unwrap();

    let stored = Schema::from_stored(&schema.to_json()).unwrap();

    assert_eq!(stored, schema);
}

#[test]
fn python_default_schema_is_default() {
    let schema = Schema::decode(&python_default_schema(), &limits()).unwrap();
    assert!(schema.is_default());

    let with_key = python_schema_with(|value| {
        value["keys"]["tag"] =
            json!({"int": {"int_inverted_index": {"enabled": true, "config": {}}}});
    });
    assert!(!with_key.is_default());

    let with_space = python_schema_with(|value| {
        value["keys"]["#embedding"]["float_list"]["vector_index"]["config"]["space"] =
            json!("cosine");
    });
    assert!(!with_space.is_default());

    let without_fts = python_schema_with(|value| {
        value["keys"]["#document"]["string"]["fts_index"]["enabled"] = json!(false);
    });
    assert!(!without_fts.is_default());
}

#[test]
fn reconcile_without_schema_uses_configuration() {
    let requested = configuration(json!({
        "hnsw": {"space": "cosine"}, "embedding_function": simple_function(8)
    }));

    let schema = Schema::reconcile(None, &requested).unwrap();

    assert_eq!(
        embedding_settings(&schema).embedding_function,
        Some(simple_function(8))
    );
    assert_eq!(
        default_vector_settings(&schema).embedding_function,
        Some(simple_function(8))
    );
    assert_eq!(embedding_settings(&schema).space, Some(Space::Cosine));
    assert_eq!(schema.configuration(), requested);
}

#[test]
fn default_schema_yields_to_configuration() {
    let requested = configuration(json!({
        "hnsw": {"space": "cosine"}, "embedding_function": simple_function(8)
    }));
    let schema = Schema::decode(&python_default_schema(), &limits()).unwrap();

    let reconciled = Schema::reconcile(Some(&schema), &requested).unwrap();

    assert_eq!(
        embedding_settings(&reconciled).embedding_function,
        Some(simple_function(8))
    );
    assert_eq!(embedding_settings(&reconciled).space, Some(Space::Cosine));
}

#[test]
fn schema_merges_over_default_configuration() {
    let requested = python_schema_with(|value| {
        let vector = json!({"space": "cosine", "embedding_function": simple_function(6),
            "spann": {"search_nprobe": 16, "write_nprobe": 32}});
        value["defaults"]["float_list"]["vector_index"]["config"] = vector.clone();
        let mut embedding = vector;
        embedding["source_key"] = json!("#document");
        value["keys"]["#embedding"]["float_list"]["vector_index"]["config"] = embedding;
        value["keys"]["tag"] =
            json!({"string": {"string_inverted_index": {"enabled": false, "config": {}}}});
    });
    let client_default = configuration(json!({
        "hnsw": {"space": "l2"}, "embedding_function": {"type": "known", "name": "default", "config": {}}
    }));

    let schema = Schema::reconcile(Some(&requested), &client_default).unwrap();

    let embedding = embedding_settings(&schema);
    assert_eq!(embedding.space, Some(Space::Cosine));
    assert_eq!(embedding.embedding_function, Some(simple_function(6)));
    assert_eq!(embedding.spann, None);
    assert_eq!(embedding.hnsw.as_ref().unwrap().ef_search, Some(100));
    assert_eq!(default_vector_settings(&schema).spann, None);
    assert!(!schema.is_inverted_index_enabled("tag", ScalarType::String));

    let derived = schema.configuration();
    assert_eq!(derived.hnsw.space, "cosine");
    assert_eq!(derived.embedding_function, Some(simple_function(6)));
}

#[test]
fn schema_and_configuration_conflict() {
    let requested = python_schema_with(|value| {
        value["keys"]["#embedding"]["float_list"]["vector_index"]["config"]["embedding_function"] =
            simple_function(6);
    });
    let custom = configuration(json!({
        "hnsw": {"space": "cosine"}, "embedding_function": simple_function(4)
    }));

    let error = Schema::reconcile(Some(&requested), &custom).unwrap_err();

    assert_eq!(error.status(), 400);
    assert!(error.message.contains("schema"), "{}", error.message);
}

#[test]
fn legacy_function_is_not_default() {
    let legacy = configuration(json!({"embedding_function": {"type": "legacy"}}));
    let requested = python_schema_with(|value| {
        value["keys"]["tag"] =
            json!({"int": {"int_inverted_index": {"enabled": false, "config": {}}}});
    });

    assert!(Schema::reconcile(Some(&requested), &legacy).is_err());
}

#[test]
fn sparse_vector_index_rejected() {
    let requested = python_schema_with(|value| {
        value["keys"]["sparse_metadata"] = json!({"sparse_vector": {"sparse_vector_index": {
            "enabled": true, "config": {"embedding_function": {"type": "unknown"}}}}});
    });

    let error =
        Schema::reconcile(Some(&requested), &CollectionConfiguration::default()).unwrap_err();

    assert_eq!(error.status(), 400);
    assert!(error
        .message
        .contains("Sparse vector indexing is not enabled in local"));
}

/// An edit of a schema's JSON, one per case of a table test.
type SchemaEdit = Box<dyn Fn(&mut Value)>;

#[test]
fn invalid_placements_rejected() {
    let cases: Vec<(&str, SchemaEdit)> = vec![
        (
            "reserved key",
            Box::new(|value| {
                value["keys"]["#custom"] =
                    json!({"string": {"string_inverted_index": {"enabled": true, "config": {}}}});
            }),
        ),
        (
            "vector index in defaults",
            Box::new(|value| {
                value["defaults"]["float_list"]["vector_index"]["enabled"] = json!(true);
            }),
        ),
        (
            "fts in defaults",
            Box::new(|value| {
                value["defaults"]["string"]["fts_index"]["enabled"] = json!(true);
            }),
        ),
        (
            "fts on a metadata key",
            Box::new(|value| {
                value["keys"]["body"] =
                    json!({"string": {"fts_index": {"enabled": true, "config": {}}}});
            }),
        ),
        (
            "string index on #document",
            Box::new(|value| {
                value["keys"]["#document"]["string"]["string_inverted_index"]["enabled"] =
                    json!(true);
            }),
        ),
        (
            "int index on #document",
            Box::new(|value| {
                value["keys"]["#document"]["int"] =
                    json!({"int_inverted_index": {"enabled": true, "config": {}}});
            }),
        ),
        (
            "vector index on a metadata key",
            Box::new(|value| {
                value["keys"]["other"] =
                    json!({"float_list": {"vector_index": {"enabled": true, "config": {}}}});
            }),
        ),
        (
            "vector source other than #document",
            Box::new(|value| {
                value["keys"]["#embedding"]["float_list"]["vector_index"]["config"]["source_key"] =
                    json!("title");
            }),
        ),
        (
            "hnsw and spann together",
            Box::new(|value| {
                value["defaults"]["float_list"]["vector_index"]["config"]["hnsw"] = json!({});
                value["defaults"]["float_list"]["vector_index"]["config"]["spann"] = json!({});
            }),
        ),
        (
            "hnsw batch_size below 2",
            Box::new(|value| {
                value["defaults"]["float_list"]["vector_index"]["config"]["hnsw"] =
                    json!({"batch_size": 1});
            }),
        ),
        (
            "hnsw ef_search of 0",
            Box::new(|value| {
                value["keys"]["#embedding"]["float_list"]["vector_index"]["config"]["hnsw"] =
                    json!({"ef_search": 0});
            }),
        ),
        (
            "two sparse indexes",
            Box::new(|value| {
                let sparse = json!({"sparse_vector": {"sparse_vector_index": {"enabled": true, "config": {}}}});
                value["keys"]["a"] = sparse.clone();
                value["keys"]["b"] = sparse;
            }),
        ),
        (
            "sparse source without function",
            Box::new(|value| {
                value["keys"]["a"] = json!({"sparse_vector": {"sparse_vector_index": {"enabled": true, "config": {"source_key": "text"}}}});
            }),
        ),
        (
            "sparse source with '#'",
            Box::new(|value| {
                value["keys"]["a"] = json!({"sparse_vector": {"sparse_vector_index": {"enabled": false, "config": {"source_key": "#metadata"}}}});
            }),
        ),
        (
            "cmek",
            Box::new(|value| {
                value["cmek"] = json!({"gcp": "projects/p/locations/l/keyRings/r/cryptoKeys/k"});
            }),
        ),
        (
            "source_attached_function_id",
            Box::new(|value| {
                value["source_attached_function_id"] = json!("f");
            }),
        ),
    ];

    for (case, change) in cases {
        let mut value = python_default_schema();
        change(&mut value);
        let error = Schema::decode(&value, &limits()).unwrap_err();
        assert_eq!(error.status(), 400, "{case}: {}", error.message);
        assert!(
            error.message.starts_with("Invalid"),
            "{case}: {}",
            error.message
        );
    }
}

#[test]
fn embedding_functions_checked_like_configuration() {
    let functions = [
        json!({"type": "known", "name": "sentence_transformer", "config": {"trust_remote_code": true}}),
        json!({"type": "known", "name": "huggingface", "config": {"kwargs": [{"TRUST_REMOTE_CODE": 1}]}}),
        json!({"type": "known", "name": "../loader", "config": {}}),
        json!({"type": "remote"}),
        json!({"type": "known", "name": "big", "config": {"blob": "x".repeat(70 * 1024)}}),
    ];

    for function in functions {
        let mut value = python_default_schema();
        value["keys"]["#embedding"]["float_list"]["vector_index"]["config"]["embedding_function"] =
            function.clone();
        assert_eq!(
            Schema::decode(&value, &limits()).unwrap_err().status(),
            400,
            "{function}"
        );

        let mut sparse = python_default_schema();
        sparse["defaults"]["sparse_vector"]["sparse_vector_index"]["config"]
            ["embedding_function"] = function.clone();
        assert_eq!(
            Schema::decode(&sparse, &limits()).unwrap_err().status(),
            400,
            "{function}"
        );
    }
}

#[test]
fn malformed_json_is_unprocessable() {
    let cases = [
        json!({"defaults": {}}),
        json!({"keys": {}}),
        json!({"defaults": {"string": {"string_inverted_index": {"enabled": "yes", "config": {}}}}, "keys": {}}),
        json!({"defaults": {"string": {"string_inverted_index": {"enabled": true}}}, "keys": {}}),
        json!({"defaults": {"string": {"string_inverted_index": {"enabled": true, "config": {"x": 1}}}}, "keys": {}}),
        json!({"defaults": {"float_list": {"vector_index": {"enabled": false, "config": {"space": "hamming"}}}}, "keys": {}}),
        json!({"defaults": {"float_list": {"vector_index": {"enabled": false, "config": {"hnsw": {"m": 4}}}}}, "keys": {}}),
        json!([]),
    ];

    for value in cases {
        let error = Schema::decode(&value, &limits()).unwrap_err();
        assert_eq!(error.status(), 422, "{value}: {}", error.message);
    }
}

/// Chroma ignores unknown fields outside index settings, and so does the decoder.
#[test]
fn unknown_outer_fields_ignored() {
    let value = json!({"defaults": {"string": {"foo_index": {}}, "weird": {}}, "keys": {"a": {}}, "extra": 1});

    let schema = Schema::decode(&value, &limits()).unwrap();

    assert_eq!(schema.keys["a"], ValueTypes::default());
}

#[test]
fn disabled_key_index_blocks_its_type_only() {
    let schema = Schema::reconcile(
        Some(&python_schema_with(|value| {
            value["keys"]["restricted_tag"] =
                json!({"string": {"string_inverted_index": {"enabled": false, "config": {}}}});
        })),
        &CollectionConfiguration::default(),
    )
    .unwrap();

    let blocked = [
        json!({"restricted_tag": "blocked"}),
        json!({"restricted_tag": {"$in": ["a", "b"]}}),
        json!({"restricted_tag": {"$contains": "x"}}),
        json!({"$and": [{"other": 1}, {"$or": [{"n": 2}, {"restricted_tag": {"$ne": "x"}}]}]}),
    ];
    for where_clause in blocked {
        let error = schema
            .check_filter(&filter(where_clause.clone(), Value::Null))
            .unwrap_err();
        assert_eq!(error.status(), 400, "{where_clause}");
        assert!(
            error
                .message
                .starts_with("Cannot filter using metadata key 'restricted_tag'"),
            "{}",
            error.message
        );
    }

    let allowed = [
        json!({"restricted_tag": {"$ne": 3}}),
        json!({"restricted_tag": {"$gt": 1.5}}),
        json!({"restricted_tag": true}),
        json!({"other_tag": "blocked"}),
    ];
    for where_clause in allowed {
        assert!(
            schema
                .check_filter(&filter(where_clause.clone(), Value::Null))
                .is_ok(),
            "{where_clause}"
        );
    }
}

#[test]
fn disabled_default_index_blocks_every_key_without_override() {
    let schema = Schema::reconcile(
        Some(&python_schema_with(|value| {
            value["defaults"]["int"]["int_inverted_index"]["enabled"] = json!(false);
            value["keys"]["rating"] =
                json!({"int": {"int_inverted_index": {"enabled": true, "config": {}}}});
        })),
        &CollectionConfiguration::default(),
    )
    .unwrap();

    assert!(schema
        .check_filter(&filter(json!({"year": 2020}), Value::Null))
        .is_err());
    assert!(schema
        .check_filter(&filter(json!({"year": {"$in": [1, 2.5]}}), Value::Null))
        .is_err());
    assert!(schema
        .check_filter(&filter(json!({"year": {"$in": [2.5]}}), Value::Null))
        .is_ok());
    assert!(schema
        .check_filter(&filter(json!({"year": 2020.5}), Value::Null))
        .is_ok());
    assert!(schema
        .check_filter(&filter(json!({"rating": 5}), Value::Null))
        .is_ok());
}

#[test]
fn disabled_fts_blocks_document_filters() {
    let schema = Schema::reconcile(
        Some(&python_schema_with(|value| {
            value["keys"]["#document"]["string"]["fts_index"]["enabled"] = json!(false);
        })),
        &CollectionConfiguration::default(),
    )
    .unwrap();

    let cases = [
        (Value::Null, json!({"$contains": "alpha"})),
        (
            Value::Null,
            json!({"$or": [{"$regex": "a.*"}, {"$not_contains": "b"}]}),
        ),
        (json!({"#document": {"$contains": "alpha"}}), Value::Null),
        (
            json!({"$and": [{"n": 1}, {"#document": {"$not_regex": "x"}}]}),
            Value::Null,
        ),
    ];
    for (where_clause, where_document) in cases {
        let error = schema
            .check_filter(&filter(where_clause, where_document))
            .unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(
            error.message.to_lowercase().contains("fts"),
            "{}",
            error.message
        );
    }
    assert!(schema
        .check_filter(&filter(json!({"n": 1}), Value::Null))
        .is_ok());
}

#[test]
fn default_schema_allows_every_filter() {
    let schema = Schema::from_configuration(&CollectionConfiguration::default());

    let allowed = filter(
        json!({"$and": [{"a": "x"}, {"b": 1}, {"c": 2.5}, {"d": false}, {"#document": {"$contains": "y"}}]}),
        json!({"$regex": "z"}),
    );

    assert!(schema.check_filter(&allowed).is_ok());
}

#[test]
fn configuration_update_reaches_both_vector_indexes() {
    let mut configuration = configuration(json!({"hnsw": {"space": "ip", "max_neighbors": 24}}));
    let mut schema = Schema::from_configuration(&configuration);
    let update = json!({"hnsw": {"ef_search": 77}, "embedding_function": simple_function(3)});

    configuration.apply_update(&update, 64 * 1024).unwrap();
    schema.apply_configuration_update(&update, &configuration);

    for settings in [
        embedding_settings(&schema),
        default_vector_settings(&schema),
    ] {
        let hnsw = settings.hnsw.as_ref().unwrap();
        assert_eq!(hnsw.ef_search, Some(77));
        assert_eq!(hnsw.max_neighbors, Some(24));
        assert_eq!(settings.embedding_function, Some(simple_function(3)));
    }
    assert_eq!(schema.configuration(), configuration);
}

#[test]
fn configuration_update_leaves_unnamed_fields() {
    let requested = python_schema_with(|value| {
        value["defaults"]["float_list"]["vector_index"]["config"]["hnsw"] =
            json!({"ef_search": 50});
    });
    let mut schema =
        Schema::reconcile(Some(&requested), &CollectionConfiguration::default()).unwrap();
    let mut configuration = schema.configuration();
    let update = json!({"hnsw": {"max_neighbors": 20}, "embedding_function": null});

    configuration.apply_update(&update, 64 * 1024).unwrap();
    schema.apply_configuration_update(&update, &configuration);

    let defaults = default_vector_settings(&schema).hnsw.as_ref().unwrap();
    assert_eq!(defaults.ef_search, Some(50));
    assert_eq!(defaults.max_neighbors, Some(20));
    assert_eq!(
        default_vector_settings(&schema).embedding_function,
        Some(json!({"name": "default", "type": "known", "config": {}}))
    );
}

#[test]
fn legacy_metadata_reaches_schema() {
    let metadata = decode_metadata_strict(
        &json!({"hnsw:space": "ip", "hnsw:M": 32}),
        &MetadataLimits::default(),
        "metadata",
    )
    .unwrap();
    let configuration =
        CollectionConfiguration::from_create(None, Some(&metadata), 64 * 1024).unwrap();

    let schema = Schema::reconcile(None, &configuration).unwrap();

    assert_eq!(embedding_settings(&schema).space, Some(Space::Ip));
    assert_eq!(
        embedding_settings(&schema)
            .hnsw
            .as_ref()
            .unwrap()
            .max_neighbors,
        Some(32)
    );
}

#[test]
fn discovery_copies_defaults_once() {
    let mut schema = Schema::reconcile(
        Some(&python_schema_with(|value| {
            value["defaults"]["string"]["string_inverted_index"]["enabled"] = json!(false);
        })),
        &CollectionConfiguration::default(),
    )
    .unwrap();

    assert!(schema.discover_key("topic", ValueKind::String));
    assert!(!schema.discover_key("topic", ValueKind::String));
    assert!(schema.discover_key("topic", ValueKind::Int));
    assert!(!schema.discover_key("chroma:document", ValueKind::String));

    let topic = &schema.keys["topic"];
    assert_eq!(topic.string, schema.defaults.string);
    assert_eq!(topic.int, schema.defaults.int);
    assert!(topic.float.is_none());
    assert!(!schema.keys.contains_key("chroma:document"));
    assert!(!schema.is_inverted_index_enabled("topic", ScalarType::String));
}

#[test]
fn discovery_keeps_explicit_settings() {
    let mut schema = Schema::reconcile(
        Some(&python_schema_with(|value| {
            value["keys"]["tag"] =
                json!({"string": {"string_inverted_index": {"enabled": false, "config": {}}}});
        })),
        &CollectionConfiguration::default(),
    )
    .unwrap();

    assert!(!schema.discover_key("tag", ValueKind::String));

    assert!(!schema.is_inverted_index_enabled("tag", ScalarType::String));
}
