//! The `request_decode` harness: request bodies through every request decoder.

use std::collections::HashSet;

use serde_json::Value;

use super::assert_client_error;
use super::filter::check_filter;
use crate::config::CollectionConfiguration;
use crate::embedding::MAX_EMBEDDING_MAGNITUDE;
use crate::limits::Limits;
use crate::metadata::{
    decode_metadata_strict, metadata_to_json, Metadata, MetadataLimits, MetadataUpdate,
    MetadataValue,
};
use crate::names::validate_name;
use crate::requests::{
    parse_json, CreateCollection, CreateNamed, DeleteRecords, GetRecords, QueryRecords,
    RecordBatch, UpdateCollection, WriteKind,
};
use crate::schema::Schema;

/// Parses `body` with [`parse_json`] and runs every request decoder on the result with
/// [`Limits::default`]. Each decoded request is checked against those limits, and the
/// parts the engine stores as JSON text must read back unchanged from that text.
///
/// # Panics
///
/// When a decoder panics, returns a value outside the limits or a server error, or when
/// a decoded value changes on its way through the stored form.
pub fn check_request_decode(body: &[u8]) {
    let limits = Limits::default();
    let value = match parse_json(body) {
        Ok(value) => value,
        Err(error) => {
            assert_client_error(&error);
            return;
        }
    };
    check_numbers(&value);

    for kind in [WriteKind::Add, WriteKind::Upsert, WriteKind::Update] {
        match RecordBatch::decode(&value, kind, &limits) {
            Ok(batch) => check_record_batch(&batch, kind, &limits),
            Err(error) => assert_client_error(&error),
        }
    }

    match GetRecords::decode(&value, &limits) {
        Ok(request) => {
            check_ids(request.ids.as_deref(), &limits);
            check_count(request.limit, 1, limits.max_get_limit);
            check_count(Some(request.offset), 0, usize::MAX >> 1);
            check_filter(&request.filter, &limits.filter);
        }
        Err(error) => assert_client_error(&error),
    }

    match QueryRecords::decode(&value, &limits) {
        Ok(request) => {
            check_ids(request.ids.as_deref(), &limits);
            assert!(
                request.query_embeddings.len() <= limits.max_batch_size,
                "a query has {} embeddings, over the batch size",
                request.query_embeddings.len()
            );
            check_embeddings(&request.query_embeddings, &limits);
            check_count(Some(request.n_results), 1, limits.max_n_results);
            check_filter(&request.filter, &limits.filter);
        }
        Err(error) => assert_client_error(&error),
    }

    match DeleteRecords::decode(&value, &limits) {
        Ok(request) => {
            check_ids(request.ids.as_deref(), &limits);
            check_count(request.limit, 0, limits.max_get_limit);
            check_filter(&request.filter, &limits.filter);
        }
        Err(error) => assert_client_error(&error),
    }

    match CreateCollection::decode(&value, &limits) {
        Ok(request) => check_create_collection(&request, &limits),
        Err(error) => assert_client_error(&error),
    }

    match UpdateCollection::decode(&value, &limits) {
        Ok(request) => check_update_collection(&request, &limits),
        Err(error) => assert_client_error(&error),
    }

    for entity in ["tenant", "database"] {
        match CreateNamed::decode(&value, entity) {
            Ok(request) => check_name(entity, &request.name),
            Err(error) => assert_client_error(&error),
        }
    }
}

/// Checks that every number `parse_json` returns is an `i64` or a float that reads back
/// bit for bit from the JSON text serde_json writes for it, which is how metadata,
/// schemas and configurations reach the store.
fn check_numbers(value: &Value) {
    match value {
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            let text = Value::from(float).to_string();
            let reread = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|value| value.as_f64());
            assert_eq!(
                reread.map(f64::to_bits),
                Some(float.to_bits()),
                "the float {float:e} reads back from its JSON text {text} as {reread:?}"
            );
        }
        Value::Number(number) => assert!(
            number.is_i64(),
            "parse_json accepted the integer {number}, outside the signed 64-bit range"
        ),
        Value::Array(items) => items.iter().for_each(check_numbers),
        Value::Object(object) => object.values().for_each(check_numbers),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

fn check_record_batch(batch: &RecordBatch, kind: WriteKind, limits: &Limits) {
    let rows = batch.ids.len();
    check_ids(Some(&batch.ids), limits);
    let unique: HashSet<&str> = batch.ids.iter().map(String::as_str).collect();
    assert_eq!(unique.len(), rows, "a batch has duplicate ids");

    match &batch.embeddings {
        Some(embeddings) => {
            assert_eq!(
                embeddings.len(),
                rows,
                "embeddings and ids differ in length"
            );
            check_embeddings(embeddings, limits);
        }
        None => assert_eq!(
            kind,
            WriteKind::Update,
            "{kind:?} decoded without embeddings"
        ),
    }

    for (name, column) in [("documents", &batch.documents), ("uris", &batch.uris)] {
        let Some(column) = column else {
            continue;
        };
        assert_eq!(column.len(), rows, "{name} and ids differ in length");
        for text in column.iter().flatten() {
            assert!(
                text.len() <= limits.max_document_bytes,
                "one of the {name} has {} bytes, over the limit",
                text.len()
            );
        }
    }

    if let Some(metadatas) = &batch.metadatas {
        assert_eq!(metadatas.len(), rows, "metadatas and ids differ in length");
        for update in metadatas.iter().flatten() {
            check_metadata_update(update, kind, &limits.metadata);
        }
    }
}

fn check_ids(ids: Option<&[String]>, limits: &Limits) {
    let Some(ids) = ids else {
        return;
    };
    assert!(
        ids.len() <= limits.max_batch_size,
        "{} ids decoded, over the batch size",
        ids.len()
    );
    for id in ids {
        assert!(!id.is_empty(), "an empty id was decoded");
        assert!(
            id.len() <= limits.max_id_bytes,
            "an id of {} bytes was decoded",
            id.len()
        );
    }
}

fn check_count(count: Option<usize>, min: usize, max: usize) {
    if let Some(count) = count {
        assert!(
            (min..=max).contains(&count),
            "the count {count} is outside {min}..={max}"
        );
    }
}

fn check_embeddings(embeddings: &[Vec<f32>], limits: &Limits) {
    let Some(first) = embeddings.first() else {
        return;
    };
    for vector in embeddings {
        assert!(!vector.is_empty(), "an empty embedding was decoded");
        assert_eq!(vector.len(), first.len(), "embeddings of mixed dimension");
        assert!(
            vector.len() <= limits.max_dimension,
            "an embedding of dimension {} was decoded",
            vector.len()
        );
        for value in vector {
            assert!(
                value.is_finite() && value.abs() <= MAX_EMBEDDING_MAGNITUDE,
                "the embedding value {value:e} was decoded"
            );
        }
    }
}

/// Checks a record's decoded metadata, then writes it as the engine stores it and reads
/// it back with the limits the engine uses for stored metadata.
fn check_metadata_update(update: &MetadataUpdate, kind: WriteKind, limits: &MetadataLimits) {
    assert!(
        update.len() <= limits.max_keys,
        "metadata with {} keys",
        update.len()
    );
    for (key, value) in update {
        check_metadata_key(key, limits);
        match value {
            Some(value) => check_metadata_value(value, limits),
            None => assert_ne!(kind, WriteKind::Add, "add decoded a null metadata value"),
        }
    }

    let stored: Metadata = update
        .iter()
        .filter_map(|(key, value)| value.clone().map(|value| (key.clone(), value)))
        .collect();
    check_stored_metadata(&stored);
}

fn check_metadata(metadata: &Metadata, limits: &MetadataLimits) {
    assert!(
        !metadata.is_empty(),
        "empty collection metadata was decoded"
    );
    assert!(
        metadata.len() <= limits.max_keys,
        "metadata with {} keys",
        metadata.len()
    );
    for (key, value) in metadata {
        check_metadata_key(key, limits);
        check_metadata_value(value, limits);
    }
    check_stored_metadata(metadata);
}

fn check_metadata_key(key: &str, limits: &MetadataLimits) {
    assert!(!key.is_empty(), "an empty metadata key was decoded");
    assert!(
        key.len() <= limits.max_key_bytes,
        "a metadata key of {} bytes was decoded",
        key.len()
    );
    assert!(
        !key.starts_with(['$', '#']) && key != "chroma:document" && !key.contains('\0'),
        "the reserved metadata key [{}] was decoded",
        key.escape_default()
    );
}

fn check_metadata_value(value: &MetadataValue, limits: &MetadataLimits) {
    let check_text = |text: &String| {
        assert!(
            text.len() <= limits.max_string_bytes,
            "a metadata string of {} bytes was decoded",
            text.len()
        );
    };
    let check_items = |count: usize| {
        assert!(
            (1..=limits.max_array_items).contains(&count),
            "a metadata array of {count} items was decoded"
        );
    };
    let check_float = |float: f64| assert!(float.is_finite(), "the float {float} was decoded");

    match value {
        MetadataValue::Bool(_) | MetadataValue::Int(_) => {}
        MetadataValue::Float(float) => check_float(*float),
        MetadataValue::Str(text) => check_text(text),
        MetadataValue::BoolArray(items) => check_items(items.len()),
        MetadataValue::IntArray(items) => check_items(items.len()),
        MetadataValue::FloatArray(items) => {
            check_items(items.len());
            items.iter().copied().for_each(check_float);
        }
        MetadataValue::StrArray(items) => {
            check_items(items.len());
            items.iter().for_each(check_text);
        }
        MetadataValue::SparseVector(sparse) => {
            let entries = sparse.indices.len();
            assert!(
                entries <= limits.max_array_items,
                "a sparse vector of {entries} entries was decoded"
            );
            assert_eq!(sparse.values.len(), entries, "sparse values and indices");
            assert!(
                sparse.indices.windows(2).all(|pair| pair[0] < pair[1]),
                "sparse vector indices are not strictly ascending"
            );
            assert!(
                sparse.values.iter().all(|value| value.is_finite()),
                "a sparse vector value is not finite"
            );
            if let Some(tokens) = &sparse.tokens {
                assert_eq!(tokens.len(), entries, "sparse tokens and indices");
                tokens.iter().for_each(check_text);
            }
        }
    }
}

/// Checks that metadata reads back unchanged from the JSON text the engine stores.
fn check_stored_metadata(metadata: &Metadata) {
    let text = metadata_to_json(metadata).to_string();
    let unbounded = MetadataLimits {
        max_keys: usize::MAX,
        max_key_bytes: usize::MAX,
        max_string_bytes: usize::MAX,
        max_array_items: usize::MAX,
    };
    let reread = serde_json::from_str::<Value>(&text)
        .map_err(|error| error.to_string())
        .and_then(|value| {
            decode_metadata_strict(&value, &unbounded, "stored metadata")
                .map_err(|error| error.message)
        });
    match reread {
        Ok(reread) => {
            assert_eq!(
                &reread, metadata,
                "metadata changed in its stored form {text}"
            );
            assert_eq!(
                metadata_to_json(&reread).to_string(),
                text,
                "metadata changed in its stored form"
            );
        }
        Err(message) => panic!("stored metadata {text} does not read back: {message}"),
    }
}

fn check_name(entity: &str, name: &str) {
    if let Err(error) = validate_name(entity, name) {
        panic!(
            "the {entity} name was decoded but is invalid: {}",
            error.message
        );
    }
}

fn check_create_collection(request: &CreateCollection, limits: &Limits) {
    check_name("collection", &request.name);
    if let Some(metadata) = &request.metadata {
        check_metadata(metadata, &limits.metadata);
    }
    assert_eq!(
        request.configuration,
        request.schema.configuration(),
        "the configuration disagrees with the schema"
    );
    check_stored_configuration(&request.configuration);

    let text = request.schema.to_json().to_string();
    let reread = serde_json::from_str::<Value>(&text)
        .map_err(|error| error.to_string())
        .and_then(|value| Schema::from_stored(&value).map_err(|error| error.message));
    match reread {
        Ok(reread) => assert_eq!(reread, request.schema, "schema changed in its stored form"),
        Err(message) => panic!("the stored schema {text} does not read back: {message}"),
    }
}

fn check_update_collection(request: &UpdateCollection, limits: &Limits) {
    if let Some(name) = &request.new_name {
        check_name("collection", name);
    }
    if let Some(metadata) = &request.new_metadata {
        check_metadata(metadata, &limits.metadata);
    }
    if let Some(update) = &request.new_configuration {
        let mut configuration = CollectionConfiguration::default();
        if let Err(error) = configuration.apply_update(update, limits.max_embedding_function_bytes)
        {
            panic!(
                "a decoded configuration update fails to apply: {}",
                error.message
            );
        }
        check_stored_configuration(&configuration);
    }
}

/// Checks that a configuration reads back unchanged from the JSON text the engine
/// stores.
fn check_stored_configuration(configuration: &CollectionConfiguration) {
    let text = configuration.to_json().to_string();
    let reread = serde_json::from_str::<Value>(&text)
        .map_err(|error| error.to_string())
        .and_then(|value| {
            CollectionConfiguration::from_stored(&value).map_err(|error| error.message)
        });
    match reread {
        Ok(reread) => assert_eq!(
            &reread, configuration,
            "configuration changed in its stored form {text}"
        ),
        Err(message) => panic!("the stored configuration {text} does not read back: {message}"),
    }
}
