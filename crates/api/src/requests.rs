//! Typed request bodies, decoded and validated from JSON.
//!
//! The Chroma clients send every key, with `null` for unset values, so a missing key
//! and an explicit `null` mean the same thing here. Unknown keys are rejected with 422
//! so that a misspelt field never silently does nothing.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::config::{reject_remote_code, CollectionConfiguration};
use crate::embedding::{decode_embedding, decode_float_lists};
use crate::error::ApiError;
use crate::filter::Filter;
use crate::limits::Limits;
use crate::metadata::{
    decode_metadata, decode_metadata_strict, printable, Metadata, MetadataUpdate, NullValues,
};
use crate::names::validate_name;
use crate::schema::Schema;

/// Maximum size of a collection `schema`, serialized, in bytes.
const MAX_SCHEMA_BYTES: usize = 256 * 1024;

/// Parses a request body as JSON. serde_json stops at 128 levels of nesting, so a
/// deeply nested body is an error here, not a stack overflow.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    let value = serde_json::from_slice(body).map_err(|error| {
        ApiError::invalid(format!("Failed to parse the request body as JSON: {error}"))
    })?;
    check_integer_literals(body)?;
    Ok(value)
}

/// Rejects an integer literal outside the signed 64-bit range anywhere in valid JSON.
/// The parser would turn one into a float and lose digits, so a stored value would
/// silently differ from the one sent.
fn check_integer_literals(body: &[u8]) -> Result<(), ApiError> {
    let mut in_string = false;
    let mut escaped = false;
    let mut index = 0;
    while index < body.len() {
        let byte = body[index];
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            index += 1;
            continue;
        }
        if byte == b'"' {
            in_string = true;
            index += 1;
            continue;
        }
        if byte == b'-' || byte.is_ascii_digit() {
            let start = index;
            while index < body.len()
                && matches!(body[index], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            {
                index += 1;
            }
            let token = &body[start..index];
            let integer = !token.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
            if integer {
                let text = std::str::from_utf8(token).unwrap_or_default();
                if text.parse::<i64>().is_err() {
                    return Err(ApiError::invalid(format!(
                        "Invalid number [{}]: integers must fit in a signed 64-bit integer",
                        printable(text)
                    )));
                }
            }
            continue;
        }
        index += 1;
    }
    Ok(())
}

/// `POST /tenants` and `POST /tenants/{tenant}/databases`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateNamed {
    pub name: String,
}

impl CreateNamed {
    /// `what` is "tenant" or "database".
    pub fn decode(body: &Value, what: &str) -> Result<Self, ApiError> {
        let object = object_with_fields(body, &["name"], "request")?;
        let name = required_string(object, "name")?;
        validate_name(what, &name)?;
        Ok(CreateNamed { name })
    }
}

/// `POST .../collections`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateCollection {
    pub name: String,
    pub metadata: Option<Metadata>,
    /// Derived from `schema`, so the two always agree.
    pub configuration: CollectionConfiguration,
    /// The requested schema reconciled with the requested configuration by
    /// [`Schema::reconcile`].
    pub schema: Schema,
    pub get_or_create: bool,
}

impl CreateCollection {
    pub fn decode(body: &Value, limits: &Limits) -> Result<Self, ApiError> {
        let object = object_with_fields(
            body,
            &[
                "name",
                "metadata",
                "configuration",
                "schema",
                "get_or_create",
            ],
            "request",
        )?;
        let name = required_string(object, "name")?;
        validate_name("collection", &name)?;

        let metadata = field(object, "metadata")
            .map(|value| decode_collection_metadata(value, limits))
            .transpose()?;
        let configuration = CollectionConfiguration::from_create(
            field(object, "configuration"),
            metadata.as_ref(),
            limits.max_embedding_function_bytes,
        )?;
        let requested_schema = field(object, "schema")
            .map(|value| decode_schema(value, limits))
            .transpose()?;
        let schema = Schema::reconcile(requested_schema.as_ref(), &configuration)?;
        let configuration = schema.configuration();
        let get_or_create = match field(object, "get_or_create") {
            None => false,
            Some(Value::Bool(flag)) => *flag,
            Some(_) => {
                return Err(ApiError::unprocessable(
                    "Invalid get_or_create: expected a boolean",
                ))
            }
        };

        Ok(CreateCollection {
            name,
            metadata,
            configuration,
            schema,
            get_or_create,
        })
    }
}

/// Decodes collection metadata, which must have at least one key when present.
fn decode_collection_metadata(value: &Value, limits: &Limits) -> Result<Metadata, ApiError> {
    let metadata = decode_metadata_strict(value, &limits.metadata, "collection metadata")?;
    if metadata.is_empty() {
        return Err(ApiError::invalid(
            "Expected collection metadata to be a non-empty dict or null, got {}",
        ));
    }
    Ok(metadata)
}

fn decode_schema(value: &Value, limits: &Limits) -> Result<Schema, ApiError> {
    if !value.is_object() {
        return Err(ApiError::unprocessable(
            "Invalid schema: expected a JSON object",
        ));
    }
    let size = value.to_string().len();
    if size > MAX_SCHEMA_BYTES {
        return Err(ApiError::invalid(format!(
            "Invalid schema: {size} bytes exceeds the limit of {MAX_SCHEMA_BYTES} bytes"
        )));
    }
    reject_remote_code(value)?;
    Schema::decode(value, limits)
}

/// `PUT .../collections/{id}`: modify.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateCollection {
    pub new_name: Option<String>,
    pub new_metadata: Option<Metadata>,
    /// Applied to the stored configuration by
    /// [`CollectionConfiguration::apply_update`]. Rebuilt from the checked parts of
    /// the request: the non-null `hnsw` parameters and the embedding function. A
    /// `spann` section is dropped, because Ravelin has no SPANN index.
    pub new_configuration: Option<Value>,
}

impl UpdateCollection {
    pub fn decode(body: &Value, limits: &Limits) -> Result<Self, ApiError> {
        let object = object_with_fields(
            body,
            &["new_name", "new_metadata", "new_configuration"],
            "request",
        )?;
        let new_name = optional_string(object, "new_name")?;
        if let Some(name) = &new_name {
            validate_name("collection", name)?;
        }
        let new_metadata = field(object, "new_metadata")
            .map(|value| decode_collection_metadata(value, limits))
            .transpose()?;
        let new_configuration = match field(object, "new_configuration") {
            None => None,
            Some(configuration) => {
                // Checked here so an invalid update fails before any lookup.
                CollectionConfiguration::default()
                    .apply_update(configuration, limits.max_embedding_function_bytes)?;
                Some(checked_configuration_update(configuration))
            }
        };
        Ok(UpdateCollection {
            new_name,
            new_metadata,
            new_configuration,
        })
    }
}

/// Rebuilds a `new_configuration` that [`CollectionConfiguration::apply_update`]
/// accepted from the parts it reads, leaving out nulls and the ignored `spann`.
fn checked_configuration_update(update: &Value) -> Value {
    let mut checked = Map::new();
    if let Some(hnsw) = update.get("hnsw").and_then(Value::as_object) {
        let parameters: Map<String, Value> = hnsw
            .iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if !parameters.is_empty() {
            checked.insert("hnsw".into(), Value::Object(parameters));
        }
    }
    if let Some(function) = update
        .get("embedding_function")
        .filter(|value| !value.is_null())
    {
        checked.insert("embedding_function".into(), function.clone());
    }
    Value::Object(checked)
}

/// The record write a batch is for. The rules differ: add and upsert need
/// embeddings, and only upsert and update may delete metadata keys with `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Add,
    Upsert,
    Update,
}

/// `add`, `upsert` and `update`: columns of equal length, one row per record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordBatch {
    pub ids: Vec<String>,
    pub embeddings: Option<Vec<Vec<f32>>>,
    pub documents: Option<Vec<Option<String>>>,
    /// `None` in a row leaves the stored metadata as it is on update; a `None` value
    /// inside a row deletes that key.
    pub metadatas: Option<Vec<Option<MetadataUpdate>>>,
    pub uris: Option<Vec<Option<String>>>,
}

impl RecordBatch {
    pub fn decode(body: &Value, kind: WriteKind, limits: &Limits) -> Result<Self, ApiError> {
        let object = object_with_fields(
            body,
            &["ids", "embeddings", "documents", "metadatas", "uris"],
            "request",
        )?;
        let ids = decode_ids(field(object, "ids"), limits)?
            .ok_or_else(|| ApiError::unprocessable("Invalid request: ids is required"))?;
        reject_duplicate_ids(&ids)?;
        let rows = ids.len();

        let embeddings = match field(object, "embeddings") {
            None if kind == WriteKind::Update => None,
            None => {
                return Err(ApiError::invalid(
                    "Invalid request: embeddings are required; Ravelin does not compute embeddings from documents",
                ))
            }
            Some(value) => {
                let items = column(value, "embeddings", rows)?;
                let vectors = items
                    .iter()
                    .enumerate()
                    .map(|(row, item)| decode_embedding(item, row, limits.max_dimension))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(first) = vectors.first() {
                    if let Some((row, other)) = vectors
                        .iter()
                        .enumerate()
                        .find(|(_, vector)| vector.len() != first.len())
                    {
                        return Err(ApiError::invalid(format!(
                            "Invalid embeddings: the embedding at index {row} has dimension {}, but the one at index 0 has dimension {}",
                            other.len(),
                            first.len()
                        )));
                    }
                }
                Some(vectors)
            }
        };

        let documents = field(object, "documents")
            .map(|value| decode_text_column(value, "documents", rows, limits.max_document_bytes))
            .transpose()?;
        let uris = field(object, "uris")
            .map(|value| decode_text_column(value, "uris", rows, limits.max_document_bytes))
            .transpose()?;

        let nulls = match kind {
            WriteKind::Add => NullValues::Reject,
            WriteKind::Upsert | WriteKind::Update => NullValues::DeleteKey,
        };
        let metadatas = match field(object, "metadatas") {
            None => None,
            Some(value) => {
                let items = column(value, "metadatas", rows)?;
                let decoded = items
                    .iter()
                    .enumerate()
                    .map(|(row, item)| {
                        if item.is_null() {
                            return Ok(None);
                        }
                        decode_metadata(
                            item,
                            nulls,
                            &limits.metadata,
                            &format!("metadata at index {row}"),
                        )
                        .map(Some)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(decoded)
            }
        };

        Ok(RecordBatch {
            ids,
            embeddings,
            documents,
            metadatas,
            uris,
        })
    }
}

/// `delete`.
#[derive(Debug, PartialEq)]
pub struct DeleteRecords {
    pub ids: Option<Vec<String>>,
    pub filter: Filter,
    pub limit: Option<usize>,
}

impl DeleteRecords {
    pub fn decode(body: &Value, limits: &Limits) -> Result<Self, ApiError> {
        let object = object_with_fields(
            body,
            &["ids", "where", "where_document", "limit"],
            "request",
        )?;
        let ids = decode_ids(field(object, "ids"), limits)?;
        let filter = Filter::parse(
            field(object, "where"),
            field(object, "where_document"),
            &limits.filter,
        )?;
        // Chroma's suite expects a delete with limit 0 to delete nothing.
        let limit = decode_count(field(object, "limit"), "limit", 0, limits.max_get_limit)?;
        Ok(DeleteRecords { ids, filter, limit })
    }
}

/// A field a get or query may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeField {
    Documents,
    Embeddings,
    Metadatas,
    Distances,
    Uris,
}

impl IncludeField {
    pub fn name(self) -> &'static str {
        match self {
            IncludeField::Documents => "documents",
            IncludeField::Embeddings => "embeddings",
            IncludeField::Metadatas => "metadatas",
            IncludeField::Distances => "distances",
            IncludeField::Uris => "uris",
        }
    }
}

/// The `include` list, in the order the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include(pub Vec<IncludeField>);

impl Include {
    pub fn contains(&self, field: IncludeField) -> bool {
        self.0.contains(&field)
    }

    fn decode(value: Option<&Value>, default: &[IncludeField]) -> Result<Include, ApiError> {
        let Some(value) = value else {
            return Ok(Include(default.to_vec()));
        };
        let Value::Array(items) = value else {
            return Err(ApiError::unprocessable(
                "Invalid include: expected a list of strings",
            ));
        };
        let mut fields = Vec::with_capacity(items.len());
        for item in items {
            let field = match item.as_str() {
                Some("documents") => IncludeField::Documents,
                Some("embeddings") => IncludeField::Embeddings,
                Some("metadatas") => IncludeField::Metadatas,
                Some("distances") => IncludeField::Distances,
                Some("uris") => IncludeField::Uris,
                _ => {
                    return Err(ApiError::unprocessable(format!(
                        "Invalid include value [{}]: expected one of documents, embeddings, metadatas, distances, uris",
                        printable(&item.to_string())
                    )))
                }
            };
            if !fields.contains(&field) {
                fields.push(field);
            }
        }
        Ok(Include(fields))
    }
}

/// `get`.
#[derive(Debug, PartialEq)]
pub struct GetRecords {
    pub ids: Option<Vec<String>>,
    pub filter: Filter,
    pub limit: Option<usize>,
    pub offset: usize,
    pub include: Include,
}

impl GetRecords {
    pub fn decode(body: &Value, limits: &Limits) -> Result<Self, ApiError> {
        let object = object_with_fields(
            body,
            &[
                "ids",
                "where",
                "where_document",
                "limit",
                "offset",
                "include",
            ],
            "request",
        )?;
        Ok(GetRecords {
            ids: decode_ids(field(object, "ids"), limits)?,
            filter: Filter::parse(
                field(object, "where"),
                field(object, "where_document"),
                &limits.filter,
            )?,
            limit: decode_count(field(object, "limit"), "limit", 1, limits.max_get_limit)?,
            offset: decode_count(field(object, "offset"), "offset", 0, usize::MAX >> 1)?
                .unwrap_or(0),
            include: Include::decode(
                field(object, "include"),
                &[IncludeField::Metadatas, IncludeField::Documents],
            )?,
        })
    }
}

/// `query`.
#[derive(Debug, PartialEq)]
pub struct QueryRecords {
    pub ids: Option<Vec<String>>,
    pub query_embeddings: Vec<Vec<f32>>,
    pub n_results: usize,
    pub filter: Filter,
    pub include: Include,
}

impl QueryRecords {
    pub fn decode(body: &Value, limits: &Limits) -> Result<Self, ApiError> {
        let object = object_with_fields(
            body,
            &[
                "ids",
                "query_embeddings",
                "n_results",
                "where",
                "where_document",
                "include",
            ],
            "request",
        )?;
        let query_embeddings = match field(object, "query_embeddings") {
            Some(value) => decode_float_lists(value, limits.max_batch_size, limits.max_dimension)?,
            None => {
                return Err(ApiError::invalid(
                    "Invalid request: query_embeddings are required; Ravelin does not compute embeddings from query texts",
                ))
            }
        };
        if let Some(first) = query_embeddings.first() {
            if let Some((row, other)) = query_embeddings
                .iter()
                .enumerate()
                .find(|(_, vector)| vector.len() != first.len())
            {
                return Err(ApiError::invalid(format!(
                    "Invalid query_embeddings: the embedding at index {row} has dimension {}, but the one at index 0 has dimension {}",
                    other.len(),
                    first.len()
                )));
            }
        }
        Ok(QueryRecords {
            ids: decode_ids(field(object, "ids"), limits)?,
            query_embeddings,
            n_results: decode_count(
                field(object, "n_results"),
                "n_results",
                1,
                limits.max_n_results,
            )?
            .unwrap_or(10),
            filter: Filter::parse(
                field(object, "where"),
                field(object, "where_document"),
                &limits.filter,
            )?,
            include: Include::decode(
                field(object, "include"),
                &[
                    IncludeField::Metadatas,
                    IncludeField::Documents,
                    IncludeField::Distances,
                ],
            )?,
        })
    }
}

/// Returns the body as an object after checking it has no keys beyond `allowed`.
fn object_with_fields<'a>(
    body: &'a Value,
    allowed: &[&str],
    what: &str,
) -> Result<&'a Map<String, Value>, ApiError> {
    let object = body.as_object().ok_or_else(|| {
        ApiError::unprocessable(format!("Invalid {what}: expected a JSON object"))
    })?;
    if let Some(unknown) = object.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(ApiError::unprocessable(format!(
            "Invalid {what}: unknown field [{}]",
            printable(unknown)
        )));
    }
    Ok(object)
}

/// Returns a field's value, treating `null` as missing.
fn field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

fn required_string(object: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    optional_string(object, key)?
        .ok_or_else(|| ApiError::unprocessable(format!("Invalid request: {key} is required")))
}

fn optional_string(object: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match field(object, key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ApiError::unprocessable(format!(
            "Invalid {key}: expected a string"
        ))),
    }
}

/// Decodes a non-negative integer such as `limit`. Fractions, negatives and values
/// outside `min..=max` are 400.
fn decode_count(
    value: Option<&Value>,
    key: &str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let count = value
        .as_u64()
        .and_then(|number| usize::try_from(number).ok())
        .filter(|number| (min..=max).contains(number));
    match count {
        Some(count) => Ok(Some(count)),
        None => Err(ApiError::invalid(format!(
            "Invalid {key} [{}]: expected an integer from {min} to {max}",
            printable(&value.to_string())
        ))),
    }
}

fn decode_ids(value: Option<&Value>, limits: &Limits) -> Result<Option<Vec<String>>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let Value::Array(items) = value else {
        return Err(ApiError::unprocessable(
            "Invalid ids: expected a list of strings",
        ));
    };
    if items.len() > limits.max_batch_size {
        return Err(ApiError::invalid(format!(
            "Invalid ids: {} ids exceeds the maximum batch size of {}",
            items.len(),
            limits.max_batch_size
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(row, item)| {
            let id = item.as_str().ok_or_else(|| {
                ApiError::unprocessable(format!("Invalid id at index {row}: expected a string"))
            })?;
            if id.is_empty() {
                return Err(ApiError::invalid(format!(
                    "Invalid id at index {row}: ids must not be empty"
                )));
            }
            if id.len() > limits.max_id_bytes {
                return Err(ApiError::invalid(format!(
                    "Invalid id at index {row}: {} bytes exceeds the limit of {} bytes",
                    id.len(),
                    limits.max_id_bytes
                )));
            }
            Ok(id.to_string())
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn reject_duplicate_ids(ids: &[String]) -> Result<(), ApiError> {
    let mut seen = HashSet::with_capacity(ids.len());
    for id in ids {
        if !seen.insert(id.as_str()) {
            return Err(ApiError::invalid(format!(
                "Expected IDs to be unique, found duplicates of: [{}]",
                printable(id)
            )));
        }
    }
    Ok(())
}

/// Returns a column's items after checking it has one item per id.
fn column<'a>(value: &'a Value, name: &str, rows: usize) -> Result<&'a Vec<Value>, ApiError> {
    let Value::Array(items) = value else {
        return Err(ApiError::unprocessable(format!(
            "Invalid {name}: expected a list"
        )));
    };
    if items.len() != rows {
        return Err(ApiError::invalid(format!(
            "Unequal lengths for fields: ids has {rows} items, {name} has {}",
            items.len()
        )));
    }
    Ok(items)
}

fn decode_text_column(
    value: &Value,
    name: &str,
    rows: usize,
    max_bytes: usize,
) -> Result<Vec<Option<String>>, ApiError> {
    column(value, name, rows)?
        .iter()
        .enumerate()
        .map(|(row, item)| match item {
            Value::Null => Ok(None),
            Value::String(text) if text.len() <= max_bytes => Ok(Some(text.clone())),
            Value::String(text) => Err(ApiError::invalid(format!(
                "Invalid {name} at index {row}: {} bytes exceeds the limit of {max_bytes} bytes",
                text.len()
            ))),
            _ => Err(ApiError::unprocessable(format!(
                "Invalid {name} at index {row}: expected a string or null"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_outside_i64_rejected_anywhere() {
        for body in [
            r#"{"metadatas": [{"big": 9223372036854775808}]}"#,
            r#"{"metadatas": [{"big": -9223372036854775809}]}"#,
            r#"{"n": [1, 100000000000000000000000000000]}"#,
        ] {
            let error = parse_json(body.as_bytes()).unwrap_err();
            assert!(
                error.message.contains("signed 64-bit"),
                "{body}: {}",
                error.message
            );
        }
        for body in [
            r#"{"a": 9223372036854775807, "b": -9223372036854775808}"#,
            r#"{"f": 1e30, "g": -2.5E+3, "s": "99999999999999999999"}"#,
            r#"{"escaped": "quote \" 99999999999999999999 \\", "n": 1}"#,
        ] {
            assert!(parse_json(body.as_bytes()).is_ok(), "{body}");
        }
    }

    /// Found by the `request_decode` fuzz target: without serde_json's
    /// `float_roundtrip` feature, `1e-45` parsed one ulp above the nearest f64, so a
    /// metadata float changed when the engine stored it as JSON text and read it back.
    #[test]
    fn floats_parsed_to_nearest_f64() {
        for text in [
            "1e-45",
            "1.0715660391465826e-75",
            "-1.81996730402717e-179",
            "0.1",
        ] {
            let body = format!(r#"{{"f": {text}}}"#);
            let value = parse_json(body.as_bytes()).unwrap();
            let expected: f64 = text.parse().unwrap();
            assert_eq!(
                value["f"].as_f64().unwrap().to_bits(),
                expected.to_bits(),
                "{text}"
            );
            let reread = parse_json(value.to_string().as_bytes()).unwrap();
            assert_eq!(reread, value, "{text}");
        }
    }

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn client_add_body_decoded() {
        let body = json!({"ids": ["a", "b"], "embeddings": ["AACAPwAAAAAAAAAA", [0, 1, 0]],
            "metadatas": [{"k": 1}, null], "documents": ["doc", null], "uris": null});
        let batch = RecordBatch::decode(&body, WriteKind::Add, &limits()).unwrap();
        assert_eq!(batch.ids, ["a", "b"]);
        assert_eq!(batch.embeddings.unwrap()[1], vec![0.0, 1.0, 0.0]);
        assert_eq!(batch.documents.unwrap(), [Some("doc".to_string()), None]);
        assert!(batch.uris.is_none());
    }

    #[test]
    fn duplicate_ids_rejected() {
        for kind in [WriteKind::Add, WriteKind::Upsert, WriteKind::Update] {
            let body = json!({"ids": ["x", "x"], "embeddings": [[1], [2]]});
            let error = RecordBatch::decode(&body, kind, &limits()).unwrap_err();
            assert_eq!(error.status(), 400);
            assert!(error.message.contains("[x]"));
        }
    }

    #[test]
    fn unequal_lengths_rejected() {
        let cases = [
            json!({"ids": ["a", "b"], "embeddings": [[1]]}),
            json!({"ids": ["a"], "embeddings": [[1]], "documents": ["x", "y"]}),
            json!({"ids": ["a"], "embeddings": [[1]], "metadatas": []}),
            json!({"ids": ["a"], "embeddings": [[1]], "uris": ["u", "v"]}),
        ];
        for body in cases {
            let error = RecordBatch::decode(&body, WriteKind::Add, &limits()).unwrap_err();
            assert_eq!(error.status(), 400, "{body}");
        }
    }

    #[test]
    fn mixed_dimensions_rejected() {
        let body = json!({"ids": ["a", "b"], "embeddings": [[1, 2], [1]]});
        assert_eq!(
            RecordBatch::decode(&body, WriteKind::Add, &limits())
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn add_requires_embeddings() {
        let body = json!({"ids": ["a"], "embeddings": null, "documents": ["x"]});
        assert!(RecordBatch::decode(&body, WriteKind::Add, &limits()).is_err());
        assert!(RecordBatch::decode(&body, WriteKind::Update, &limits()).is_ok());
    }

    #[test]
    fn add_rejects_null_metadata_values() {
        let body = json!({"ids": ["a"], "embeddings": [[1]], "metadatas": [{"k": null}]});
        assert!(RecordBatch::decode(&body, WriteKind::Add, &limits()).is_err());
        let batch = RecordBatch::decode(&body, WriteKind::Update, &limits()).unwrap();
        assert_eq!(batch.metadatas.unwrap()[0].as_ref().unwrap()["k"], None);
    }

    #[test]
    fn bad_ids_rejected() {
        let long = "x".repeat(5000);
        for ids in [json!([""]), json!([long]), json!([1])] {
            let body = json!({"ids": ids, "embeddings": [[1]]});
            assert!(RecordBatch::decode(&body, WriteKind::Add, &limits()).is_err());
        }
    }

    #[test]
    fn counts_validated() {
        for (limit, ok) in [
            (json!(5), true),
            (json!(-1), false),
            (json!(2.5), false),
            (json!(1u64 << 63), false),
        ] {
            let body = json!({"limit": limit});
            assert_eq!(GetRecords::decode(&body, &limits()).is_ok(), ok, "{body}");
        }
        let zero = json!({"n_results": 0, "query_embeddings": [[1.0]]});
        assert!(QueryRecords::decode(&zero, &limits()).is_err());
    }

    #[test]
    fn include_defaults_and_unknown_values() {
        let get = GetRecords::decode(&json!({}), &limits()).unwrap();
        assert_eq!(
            get.include.0,
            [IncludeField::Metadatas, IncludeField::Documents]
        );
        let error = GetRecords::decode(&json!({"include": ["data"]}), &limits()).unwrap_err();
        assert_eq!(error.status(), 422);
    }

    #[test]
    fn unknown_fields_rejected() {
        let error = GetRecords::decode(&json!({"wher": {"a": 1}}), &limits()).unwrap_err();
        assert_eq!(error.status(), 422);
    }

    #[test]
    fn create_collection_decoded() {
        let body = json!({"name": "probe1", "metadata": {"topic": "x"}, "configuration": null,
            "schema": null, "get_or_create": false});
        let request = CreateCollection::decode(&body, &limits()).unwrap();
        assert_eq!(request.name, "probe1");
        assert!(!request.get_or_create);
        let bad = json!({"name": "a/b"});
        assert_eq!(
            CreateCollection::decode(&bad, &limits())
                .unwrap_err()
                .status(),
            400
        );
    }

    /// Found by Chroma's test suite (property/test_collections.py): collection
    /// metadata may be null but not an empty object.
    #[test]
    fn empty_collection_metadata_rejected() {
        let create = json!({"name": "abc", "metadata": {}});
        assert_eq!(
            CreateCollection::decode(&create, &limits())
                .unwrap_err()
                .status(),
            400
        );
        let modify = json!({"new_metadata": {}});
        assert_eq!(
            UpdateCollection::decode(&modify, &limits())
                .unwrap_err()
                .status(),
            400
        );
        let null = json!({"name": "abc", "metadata": null});
        assert!(CreateCollection::decode(&null, &limits())
            .unwrap()
            .metadata
            .is_none());
    }

    #[test]
    fn deep_json_rejected() {
        let body = "[".repeat(100_000);
        assert_eq!(parse_json(body.as_bytes()).unwrap_err().status(), 400);
    }
}
