//! Collection configuration: HNSW parameters and the embedding-function record.
//!
//! The configuration a client sends on create is merged over the defaults and over the
//! legacy `hnsw:*` keys of the collection metadata, then echoed back whole in
//! `configuration_json`. The embedding-function part is inert data: it is checked
//! against an allow-list and a size cap, stored verbatim and never instantiated.
//! Ravelin never computes embeddings.

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::metadata::{printable, Metadata, MetadataValue};

/// Maximum length of an embedding-function name.
const MAX_FUNCTION_NAME_BYTES: usize = 128;

/// Bounds on HNSW parameters. They guard memory and time per request.
const MAX_EF: u64 = 65_536;
/// The largest M an index checkpoint may hold (`index::hnsw::MAX_NEIGHBORS`), so every
/// collection's index can be saved and restored.
const MAX_NEIGHBORS: u64 = 1_024;
const MAX_THREADS: u64 = 1_024;
const MAX_BATCH: u64 = 1_000_000;

/// Distance spaces by Chroma name.
const SPACES: &[&str] = &["l2", "cosine", "ip"];

/// HNSW parameters, with Chroma's names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct HnswConfiguration {
    pub space: String,
    pub ef_construction: u64,
    pub ef_search: u64,
    pub max_neighbors: u64,
    pub resize_factor: f64,
    pub sync_threshold: u64,
    pub num_threads: Option<u64>,
    pub batch_size: Option<u64>,
}

impl Default for HnswConfiguration {
    fn default() -> Self {
        HnswConfiguration {
            space: "l2".into(),
            ef_construction: 100,
            ef_search: 100,
            max_neighbors: 16,
            resize_factor: 1.2,
            sync_threshold: 1000,
            num_threads: None,
            batch_size: None,
        }
    }
}

/// A collection's whole configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectionConfiguration {
    pub hnsw: HnswConfiguration,
    /// The embedding-function record, validated, echoed verbatim.
    pub embedding_function: Option<Value>,
}

impl CollectionConfiguration {
    /// Builds the configuration of a new collection from the request's `configuration`
    /// and the legacy `hnsw:*` keys of its metadata. Keys in `configuration` win.
    pub fn from_create(
        configuration: Option<&Value>,
        metadata: Option<&Metadata>,
        max_embedding_function_bytes: usize,
    ) -> Result<CollectionConfiguration, ApiError> {
        let mut result = CollectionConfiguration::default();
        if let Some(metadata) = metadata {
            apply_legacy_metadata(&mut result.hnsw, metadata)?;
        }

        let Some(configuration) = configuration.filter(|value| !value.is_null()) else {
            return Ok(result);
        };
        let object = as_object(configuration, "configuration")?;
        for (key, value) in object {
            match key.as_str() {
                "hnsw" => {
                    if !value.is_null() {
                        apply_hnsw(&mut result.hnsw, value, HnswFields::Create)?;
                    }
                }
                // Ravelin has one index type. A SPANN section is accepted and ignored,
                // as single-node Chroma does, and the effective HNSW settings are echoed.
                "spann" => {}
                "embedding_function" => {
                    result.embedding_function =
                        validate_embedding_function(value, max_embedding_function_bytes)?;
                }
                other => return Err(unknown_field("configuration", other)),
            }
        }
        Ok(result)
    }

    /// Applies a modify request's `new_configuration`. `space` and `ef_construction`
    /// cannot change after creation.
    pub fn apply_update(
        &mut self,
        update: &Value,
        max_embedding_function_bytes: usize,
    ) -> Result<(), ApiError> {
        let object = as_object(update, "new_configuration")?;
        let mut updated = self.clone();
        for (key, value) in object {
            match key.as_str() {
                "hnsw" => {
                    if !value.is_null() {
                        apply_hnsw(&mut updated.hnsw, value, HnswFields::Update)?;
                    }
                }
                "spann" => {}
                "embedding_function" => {
                    if !value.is_null() {
                        updated.embedding_function =
                            validate_embedding_function(value, max_embedding_function_bytes)?;
                    }
                }
                other => return Err(unknown_field("new_configuration", other)),
            }
        }
        *self = updated;
        Ok(())
    }

    /// Returns the configuration as Chroma's `configuration_json`.
    pub fn to_json(&self) -> Value {
        let mut hnsw = json!({
            "space": self.hnsw.space,
            "ef_construction": self.hnsw.ef_construction,
            "ef_search": self.hnsw.ef_search,
            "max_neighbors": self.hnsw.max_neighbors,
            "resize_factor": self.hnsw.resize_factor,
            "sync_threshold": self.hnsw.sync_threshold,
        });
        if let Some(object) = hnsw.as_object_mut() {
            if let Some(threads) = self.hnsw.num_threads {
                object.insert("num_threads".into(), json!(threads));
            }
            if let Some(batch_size) = self.hnsw.batch_size {
                object.insert("batch_size".into(), json!(batch_size));
            }
        }
        json!({
            "hnsw": hnsw,
            "spann": null,
            "embedding_function": self.embedding_function,
        })
    }

    /// Reads a configuration stored by [`CollectionConfiguration::to_json`].
    pub fn from_stored(value: &Value) -> Result<CollectionConfiguration, ApiError> {
        let mut result = CollectionConfiguration::default();
        let object = as_object(value, "stored configuration")?;
        if let Some(hnsw) = object.get("hnsw").filter(|value| !value.is_null()) {
            apply_hnsw(&mut result.hnsw, hnsw, HnswFields::Create)?;
        }
        result.embedding_function = object
            .get("embedding_function")
            .filter(|value| !value.is_null())
            .cloned();
        Ok(result)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum HnswFields {
    Create,
    Update,
}

fn apply_hnsw(
    hnsw: &mut HnswConfiguration,
    value: &Value,
    fields: HnswFields,
) -> Result<(), ApiError> {
    let object = as_object(value, "hnsw configuration")?;
    for (key, value) in object {
        if value.is_null() {
            continue;
        }
        match (key.as_str(), fields) {
            ("space", HnswFields::Create) => hnsw.space = parse_space(value)?,
            ("ef_construction", HnswFields::Create) => {
                hnsw.ef_construction = parse_bounded(value, key, 1, MAX_EF)?
            }
            ("ef_search", _) => hnsw.ef_search = parse_bounded(value, key, 1, MAX_EF)?,
            ("max_neighbors", _) => hnsw.max_neighbors = parse_bounded(value, key, 1, MAX_NEIGHBORS)?,
            ("resize_factor", _) => hnsw.resize_factor = parse_resize_factor(value)?,
            ("sync_threshold", _) => hnsw.sync_threshold = parse_bounded(value, key, 2, MAX_BATCH)?,
            ("num_threads", _) => hnsw.num_threads = Some(parse_bounded(value, key, 1, MAX_THREADS)?),
            ("batch_size", _) => hnsw.batch_size = Some(parse_bounded(value, key, 2, MAX_BATCH)?),
            ("space" | "ef_construction", HnswFields::Update) => {
                return Err(ApiError::unprocessable(format!(
                    "Invalid new_configuration: hnsw {key} cannot be changed after the collection is created"
                )))
            }
            (other, _) => return Err(unknown_field("hnsw configuration", other)),
        }
    }
    Ok(())
}

/// Checks HNSW parameters, given as a JSON object with the configuration's field names,
/// against the configuration's bounds.
pub(crate) fn check_hnsw_parameters(value: &Value) -> Result<(), ApiError> {
    apply_hnsw(&mut HnswConfiguration::default(), value, HnswFields::Create)
}

/// Folds Chroma's legacy `hnsw:*` collection metadata keys into the HNSW settings.
fn apply_legacy_metadata(
    hnsw: &mut HnswConfiguration,
    metadata: &Metadata,
) -> Result<(), ApiError> {
    for (key, value) in metadata {
        let Some(name) = key.strip_prefix("hnsw:") else {
            continue;
        };
        let json = value.to_json();
        match name {
            "space" => hnsw.space = parse_space(&json)?,
            "construction_ef" => hnsw.ef_construction = parse_bounded(&json, key, 1, MAX_EF)?,
            "search_ef" => hnsw.ef_search = parse_bounded(&json, key, 1, MAX_EF)?,
            "M" => hnsw.max_neighbors = parse_bounded(&json, key, 1, MAX_NEIGHBORS)?,
            "num_threads" => hnsw.num_threads = Some(parse_bounded(&json, key, 1, MAX_THREADS)?),
            "resize_factor" => hnsw.resize_factor = parse_resize_factor(&json)?,
            "batch_size" => hnsw.batch_size = Some(parse_bounded(&json, key, 2, MAX_BATCH)?),
            "sync_threshold" => hnsw.sync_threshold = parse_bounded(&json, key, 2, MAX_BATCH)?,
            _ => {
                return Err(ApiError::invalid(format!(
                    "Invalid collection metadata: unknown HNSW key [{}]",
                    printable(key)
                )))
            }
        }
    }
    Ok(())
}

fn parse_space(value: &Value) -> Result<String, ApiError> {
    match value.as_str() {
        Some(space) if SPACES.contains(&space) => Ok(space.to_string()),
        _ => Err(ApiError::invalid(format!(
            "Invalid HNSW space [{}]: expected one of l2, cosine, ip",
            printable(&value.to_string())
        ))),
    }
}

fn parse_bounded(value: &Value, key: &str, min: u64, max: u64) -> Result<u64, ApiError> {
    match value.as_u64() {
        Some(number) if (min..=max).contains(&number) => Ok(number),
        _ => Err(ApiError::invalid(format!(
            "Invalid HNSW parameter {}: expected an integer from {min} to {max}, got {}",
            printable(key),
            printable(&value.to_string())
        ))),
    }
}

fn parse_resize_factor(value: &Value) -> Result<f64, ApiError> {
    match value.as_f64() {
        Some(factor) if (1.0..=100.0).contains(&factor) => Ok(factor),
        _ => Err(ApiError::invalid(format!(
            "Invalid HNSW parameter resize_factor: expected a number from 1 to 100, got {}",
            printable(&value.to_string())
        ))),
    }
}

/// Checks an embedding-function record: `legacy`, `unknown`, or `known` with a name of
/// up to 128 characters from `[A-Za-z0-9_.:-]`. The name is not checked against a
/// list, because clients register their own functions under names of their choosing
/// and the server never instantiates any of them. No key at any depth may be
/// `trust_remote_code` set to anything but `false`, because a client that rebuilds the
/// function from this record would then run code from a model repository.
pub(crate) fn validate_embedding_function(
    value: &Value,
    max_bytes: usize,
) -> Result<Option<Value>, ApiError> {
    if value.is_null() {
        return Ok(None);
    }
    let size = value.to_string().len();
    if size > max_bytes {
        return Err(ApiError::invalid(format!(
            "Invalid embedding_function: configuration of {size} bytes exceeds the limit of {max_bytes} bytes"
        )));
    }
    let object = as_object(value, "embedding_function")?;
    match object.get("type").and_then(Value::as_str) {
        Some("legacy") | Some("unknown") => {}
        Some("known") => {
            let name = object.get("name").and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid("Invalid embedding_function: a known function needs a name")
            })?;
            let valid_name = !name.is_empty()
                && name.len() <= MAX_FUNCTION_NAME_BYTES
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
            if !valid_name {
                return Err(ApiError::invalid(format!(
                    "Invalid embedding_function name [{}]: expected 1-128 characters from [A-Za-z0-9_.:-]",
                    printable(name)
                )));
            }
            if let Some(config) = object.get("config") {
                if !config.is_object() && !config.is_null() {
                    return Err(ApiError::invalid(
                        "Invalid embedding_function: config must be an object",
                    ));
                }
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "Invalid embedding_function: type must be one of known, legacy, unknown",
            ))
        }
    }
    reject_remote_code(value)?;
    Ok(Some(value.clone()))
}

/// Walks the value without recursion and rejects any `trust_remote_code` key whose
/// value is not `false`.
pub(crate) fn reject_remote_code(value: &Value) -> Result<(), ApiError> {
    let mut pending = vec![value];
    while let Some(item) = pending.pop() {
        match item {
            Value::Object(object) => {
                for (key, child) in object {
                    if key.eq_ignore_ascii_case("trust_remote_code") && *child != Value::Bool(false)
                    {
                        return Err(ApiError::invalid(
                            "Invalid embedding_function: trust_remote_code is not allowed; Ravelin stores only configurations that load no remote code",
                        ));
                    }
                    pending.push(child);
                }
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    Ok(())
}

fn as_object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ApiError> {
    value
        .as_object()
        .ok_or_else(|| ApiError::unprocessable(format!("Invalid {what}: expected a JSON object")))
}

fn unknown_field(what: &str, field: &str) -> ApiError {
    ApiError::unprocessable(format!(
        "Invalid {what}: unknown field [{}]",
        printable(field)
    ))
}

/// Returns the space a collection's metadata names in `hnsw:space`, if any.
pub fn legacy_space(metadata: &Metadata) -> Option<&str> {
    match metadata.get("hnsw:space") {
        Some(MetadataValue::Str(space)) => Some(space),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{decode_metadata_strict, MetadataLimits};

    const MAX: usize = 64 * 1024;

    #[test]
    fn defaults_echoed() {
        let config = CollectionConfiguration::from_create(None, None, MAX).unwrap();
        let json = config.to_json();
        assert_eq!(json["hnsw"]["space"], "l2");
        assert_eq!(json["hnsw"]["ef_construction"], 100);
        assert_eq!(json["hnsw"]["ef_search"], 100);
        assert_eq!(json["hnsw"]["max_neighbors"], 16);
        assert_eq!(json["hnsw"]["resize_factor"], 1.2);
        assert_eq!(json["hnsw"]["sync_threshold"], 1000);
        assert_eq!(json["embedding_function"], Value::Null);
    }

    #[test]
    fn legacy_metadata_folded() {
        let metadata = decode_metadata_strict(
            &json!({"hnsw:space": "ip", "hnsw:M": 32, "hnsw:construction_ef": 50}),
            &MetadataLimits::default(),
            "metadata",
        )
        .unwrap();
        let config = CollectionConfiguration::from_create(None, Some(&metadata), MAX).unwrap();
        assert_eq!(config.hnsw.space, "ip");
        assert_eq!(config.hnsw.max_neighbors, 32);
        assert_eq!(config.hnsw.ef_construction, 50);
    }

    #[test]
    fn update_cannot_change_space() {
        let mut config = CollectionConfiguration::default();
        let error = config
            .apply_update(&json!({"hnsw": {"space": "ip"}}), MAX)
            .unwrap_err();
        assert_eq!(error.status(), 422);
        config
            .apply_update(&json!({"hnsw": {"ef_search": 7}}), MAX)
            .unwrap();
        assert_eq!(config.hnsw.ef_search, 7);
    }

    #[test]
    fn remote_code_rejected_at_any_depth() {
        for function in [
            json!({"type": "known", "name": "sentence_transformer", "config": {"trust_remote_code": true}}),
            json!({"type": "known", "name": "sentence_transformer", "config": {"kwargs": {"trust_remote_code": true}}}),
            json!({"type": "known", "name": "huggingface", "config": {"a": [{"b": {"TRUST_REMOTE_CODE": "yes"}}]}}),
        ] {
            let configuration = json!({ "embedding_function": function });
            let error =
                CollectionConfiguration::from_create(Some(&configuration), None, MAX).unwrap_err();
            assert_eq!(error.status(), 400);
        }
    }

    #[test]
    fn malformed_function_name_rejected() {
        for name in ["", "../loader", "a b", "x\u{0}y"] {
            let configuration =
                json!({"embedding_function": {"type": "known", "name": name, "config": {}}});
            assert!(
                CollectionConfiguration::from_create(Some(&configuration), None, MAX).is_err(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn custom_function_name_accepted() {
        let configuration = json!({"embedding_function": {"type": "known", "name": "simple_ef", "config": {"dim": 8}}});
        let config = CollectionConfiguration::from_create(Some(&configuration), None, MAX).unwrap();
        assert_eq!(config.to_json()["embedding_function"]["name"], "simple_ef");
    }

    #[test]
    fn known_function_stored_verbatim() {
        let function = json!({"type": "known", "name": "default", "config": {}});
        let configuration =
            json!({"hnsw": {"space": "cosine"}, "spann": null, "embedding_function": function});
        let config = CollectionConfiguration::from_create(Some(&configuration), None, MAX).unwrap();
        assert_eq!(config.to_json()["embedding_function"], function);
        assert_eq!(config.hnsw.space, "cosine");
        let stored = CollectionConfiguration::from_stored(&config.to_json()).unwrap();
        assert_eq!(stored, config);
    }

    #[test]
    fn unknown_hnsw_field_rejected() {
        let configuration = json!({"hnsw": {"spaceship": "l2"}});
        let error =
            CollectionConfiguration::from_create(Some(&configuration), None, MAX).unwrap_err();
        assert_eq!(error.status(), 422);
    }
}
