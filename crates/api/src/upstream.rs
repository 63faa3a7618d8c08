//! Responses of an upstream Chroma, decoded and checked before anything of them reaches
//! a client of the gateway.
//!
//! An upstream is trusted no more than a client: its stored data may have been written
//! around the gateway, and a compromised or buggy server may send anything. So every
//! response passes the limits requests pass (id, document, metadata and dimension
//! limits, finite floats, embedding-function records against the same checks), and its
//! shape must match the request: one column entry per id, one result list per query
//! embedding, at most `n_results` results each. The gateway then encodes the checked
//! values with Ravelin's own response types, so no upstream byte is copied through.
//!
//! A decoder's error describes what was wrong, for the server log. The gateway answers
//! the client with a 502 that does not repeat it.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::config::{validate_embedding_function, CollectionConfiguration};
use crate::error::{ApiError, ErrorKind};
use crate::limits::Limits;
use crate::metadata::{decode_metadata_strict, Metadata};
use crate::names::validate_name;
use crate::requests::{Include, IncludeField};
use crate::responses::{
    CollectionResponse, DatabaseResponse, GetResponse, QueryResponse, TenantResponse,
};
use crate::schema::Schema;

/// The maximum length of an upstream error message passed to a client, in characters.
const MAX_MESSAGE_CHARS: usize = 1024;

/// An error response of the upstream: its status and, when the body is Chroma's error
/// JSON, the error name and the message without control characters, cut to 1024
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    pub status: u16,
    pub name: String,
    pub message: String,
}

impl UpstreamError {
    pub fn parse(status: u16, body: &[u8]) -> UpstreamError {
        let parsed = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|value| {
                let name = value.get("error")?.as_str()?.to_string();
                let message = value
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                Some((name, message))
            });
        let (name, message) = parsed.unwrap_or_default();
        UpstreamError {
            status,
            name: clean_message(&name),
            message: clean_message(&message),
        }
    }

    /// Returns true when the upstream failed, or refused the gateway's own
    /// credentials, rather than rejecting what the client asked for. Such an error
    /// reaches the client without the upstream's message, so log it.
    pub fn is_upstream_fault(&self) -> bool {
        self.client_kind().is_none()
    }

    /// Returns the client's error. Where the client caused it, that is Chroma's error
    /// name, status and message. Where the upstream failed or rejected the gateway, it
    /// is a 500 or 502 with a fixed message, because a 5xx message can contain SQL or
    /// paths.
    pub fn to_client_error(&self) -> ApiError {
        let Some(kind) = self.client_kind() else {
            return if self.status == 500 {
                ApiError::internal(
                    "Internal error: the upstream Chroma failed the request; the gateway log has details",
                )
            } else {
                bad_gateway()
            };
        };
        let message = if self.message.is_empty() {
            format!(
                "The upstream Chroma rejected the request with status {}",
                self.status
            )
        } else {
            self.message.clone()
        };
        ApiError::new(kind, message)
    }

    fn client_kind(&self) -> Option<ErrorKind> {
        let kind = match self.status {
            400 => ErrorKind::InvalidArgument,
            // A 401, or a 403 naming authentication, refuses the gateway itself.
            401 => return None,
            403 if self.name == "AuthError" || self.name == "AuthorizationError" => return None,
            403 => ErrorKind::Disabled,
            404 => ErrorKind::NotFound,
            408 => ErrorKind::RequestTimeout,
            409 => ErrorKind::Conflict,
            410 => ErrorKind::Gone,
            413 => ErrorKind::PayloadTooLarge,
            422 => ErrorKind::Unprocessable,
            429 => ErrorKind::TooManyRequests,
            501 => ErrorKind::NotImplemented,
            503 => ErrorKind::Unavailable,
            _ => return None,
        };
        Some(kind)
    }
}

/// Returns the 502 for an upstream that failed or sent something invalid.
pub fn bad_gateway() -> ApiError {
    ApiError::new(
        ErrorKind::BadGateway,
        "Bad gateway: the upstream Chroma sent an invalid response; the gateway log has details",
    )
}

/// Removes control characters and cuts a message to [`MAX_MESSAGE_CHARS`].
fn clean_message(message: &str) -> String {
    let mut cleaned: String = message
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if message.chars().count() > MAX_MESSAGE_CHARS {
        cleaned.push_str("...");
    }
    cleaned
}

/// Builds the error a decoder returns for a response of the wrong shape.
fn invalid(what: &str, detail: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::BadGateway, format!("{what}: {detail}"))
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ApiError> {
    value
        .as_object()
        .ok_or_else(|| invalid(what, "expected a JSON object"))
}

fn string<'a>(object: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a str, ApiError> {
    object
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(what, format!("{key} is missing or not a string")))
}

fn array<'a>(value: &'a Value, what: &str) -> Result<&'a Vec<Value>, ApiError> {
    value
        .as_array()
        .ok_or_else(|| invalid(what, "expected a list"))
}

/// Returns a field's value, `None` for a missing key or `null`.
fn present<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

/// Decodes a tenant record: `{"name", "resource_name"}`.
pub fn decode_tenant(value: &Value) -> Result<TenantResponse, ApiError> {
    let what = "tenant";
    let object = object(value, what)?;
    let name = string(object, "name", what)?;
    validate_name("tenant", name)?;
    let resource_name = match present(object, "resource_name") {
        None => None,
        Some(Value::String(text)) if text.len() <= 1024 => Some(clean_message(text)),
        Some(_) => return Err(invalid(what, "resource_name is not a short string")),
    };
    Ok(TenantResponse {
        name: name.to_string(),
        resource_name,
    })
}

/// Decodes a database record: `{"id", "name", "tenant"}`.
pub fn decode_database(value: &Value) -> Result<DatabaseResponse, ApiError> {
    let what = "database";
    let object = object(value, what)?;
    let id = string(object, "id", what)?;
    let id = Uuid::try_parse(id).map_err(|_| invalid(what, "id is not a UUID"))?;
    let name = string(object, "name", what)?;
    validate_name("database", name)?;
    let tenant = string(object, "tenant", what)?;
    validate_name("tenant", tenant)?;
    Ok(DatabaseResponse {
        id: id.to_string(),
        name: name.to_string(),
        tenant: tenant.to_string(),
    })
}

/// Decodes a list of databases, at most `max` of them.
pub fn decode_databases(value: &Value, max: usize) -> Result<Vec<DatabaseResponse>, ApiError> {
    let items = array(value, "database list")?;
    if items.len() > max {
        return Err(invalid("database list", format!("more than {max} items")));
    }
    items.iter().map(decode_database).collect()
}

/// Decodes a collection record. The configuration's HNSW parameters and embedding
/// function, and the schema, pass the checks a create request passes; the
/// configuration is then rebuilt from the checked values.
pub fn decode_collection(value: &Value, limits: &Limits) -> Result<CollectionResponse, ApiError> {
    let what = "collection";
    let object = object(value, what)?;
    let id = string(object, "id", what)?;
    let id = Uuid::try_parse(id).map_err(|_| invalid(what, "id is not a UUID"))?;
    let name = string(object, "name", what)?;
    validate_name("collection", name)?;
    let tenant = string(object, "tenant", what)?;
    validate_name("tenant", tenant)?;
    let database = string(object, "database", what)?;
    validate_name("database", database)?;

    let configuration = match present(object, "configuration_json") {
        None => CollectionConfiguration::default(),
        Some(value) => decode_configuration(value, limits)?,
    };
    let schema = present(object, "schema")
        .map(|value| Schema::decode(value, limits).map(|schema| schema.to_json()))
        .transpose()?;
    let metadata = present(object, "metadata")
        .map(|value| decode_metadata_strict(value, &limits.metadata, "collection metadata"))
        .transpose()?;
    let dimension = match present(object, "dimension") {
        None => None,
        Some(value) => Some(
            value
                .as_u64()
                .filter(|dimension| *dimension as usize <= limits.max_dimension)
                .ok_or_else(|| invalid(what, "dimension is not an integer within the limit"))?,
        ),
    };
    let integer = |key: &str| -> Result<i64, ApiError> {
        match present(object, key) {
            None => Ok(0),
            Some(value) => value
                .as_i64()
                .ok_or_else(|| invalid(what, format!("{key} is not an integer"))),
        }
    };

    Ok(CollectionResponse {
        id: id.to_string(),
        name: name.to_string(),
        configuration_json: configuration.to_json(),
        schema,
        metadata,
        dimension,
        tenant: tenant.to_string(),
        database: database.to_string(),
        log_position: integer("log_position")?,
        version: integer("version")?,
    })
}

/// Checks a stored `configuration_json`: HNSW parameters within their bounds and an
/// embedding-function record that passes the request checks.
///
/// NOTE: a `spann` section is dropped and the HNSW settings are reported, as for
/// serve's collections, so a SPANN collection of distributed Chroma shows HNSW
/// defaults to the gateway's clients.
fn decode_configuration(
    value: &Value,
    limits: &Limits,
) -> Result<CollectionConfiguration, ApiError> {
    let object = object(value, "configuration_json")?;
    let hnsw = object
        .get("hnsw")
        .filter(|value| !value.is_null())
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut checked = Map::new();
    checked.insert("hnsw".into(), hnsw);
    let mut configuration = CollectionConfiguration::from_stored(&Value::Object(checked))?;
    if let Some(function) = object.get("embedding_function") {
        configuration.embedding_function =
            validate_embedding_function(function, limits.max_embedding_function_bytes)?;
    }
    Ok(configuration)
}

/// Decodes a list of collections, at most `max` of them.
pub fn decode_collections(
    value: &Value,
    max: usize,
    limits: &Limits,
) -> Result<Vec<CollectionResponse>, ApiError> {
    let items = array(value, "collection list")?;
    if items.len() > max {
        return Err(invalid("collection list", format!("more than {max} items")));
    }
    items
        .iter()
        .map(|item| decode_collection(item, limits))
        .collect()
}

/// Decodes a bare non-negative integer, as a count returns it.
pub fn decode_count(value: &Value) -> Result<u64, ApiError> {
    value
        .as_u64()
        .ok_or_else(|| invalid("count", "expected a non-negative integer"))
}

/// Decodes the `deleted` count of a record delete. Chroma versions that send `{}`
/// count as 0.
pub fn decode_deleted(value: &Value) -> Result<u64, ApiError> {
    let object = object(value, "delete response")?;
    match present(object, "deleted") {
        None => Ok(0),
        Some(value) => decode_count(value),
    }
}

/// Decodes a healthcheck body into its two readiness flags.
pub fn decode_health(value: &Value) -> Result<(bool, bool), ApiError> {
    let object = object(value, "healthcheck")?;
    let flag = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_bool)
            .ok_or_else(|| invalid("healthcheck", format!("{key} is not a bool")))
    };
    Ok((flag("is_executor_ready")?, flag("is_log_client_ready")?))
}

/// The columns of one list of records, checked and aligned with its ids.
struct Columns {
    ids: Vec<String>,
    embeddings: Option<Vec<Vec<f32>>>,
    documents: Option<Vec<Option<String>>>,
    uris: Option<Vec<Option<String>>>,
    metadatas: Option<Vec<Option<Metadata>>>,
    distances: Option<Vec<f32>>,
}

/// Decodes the response of a get made with `include`, with at most `max_records`
/// records.
pub fn decode_get(
    value: &Value,
    include: &Include,
    max_records: usize,
    limits: &Limits,
) -> Result<GetResponse, ApiError> {
    let object = object(value, "get response")?;
    let column = |key: &str| object.get(key).unwrap_or(&Value::Null);
    let columns = decode_columns(
        [
            column("ids"),
            column("embeddings"),
            column("documents"),
            column("uris"),
            column("metadatas"),
            &Value::Null,
        ],
        include,
        max_records,
        limits,
    )?;
    Ok(GetResponse {
        ids: columns.ids,
        embeddings: columns.embeddings,
        documents: columns.documents,
        uris: columns.uris,
        metadatas: columns.metadatas,
        include: include.clone(),
    })
}

/// Decodes the response of a query with `queries` query embeddings and `n_results`,
/// made with `include`.
pub fn decode_query(
    value: &Value,
    include: &Include,
    queries: usize,
    n_results: usize,
    limits: &Limits,
) -> Result<QueryResponse, ApiError> {
    let what = "query response";
    let object = object(value, what)?;
    let ids = array(object.get("ids").unwrap_or(&Value::Null), what)?;
    if ids.len() != queries {
        return Err(invalid(
            what,
            format!("{} result lists for {queries} query embeddings", ids.len()),
        ));
    }
    // Each nested column has one list per query; a column outside `include` may be
    // missing or null as a whole.
    let nested = |key: &str, index: usize| -> Result<&Value, ApiError> {
        match present(object, key) {
            None => Ok(&Value::Null),
            Some(lists) => array(lists, what)?
                .get(index)
                .ok_or_else(|| invalid(what, format!("{key} has fewer lists than ids"))),
        }
    };

    let mut response = QueryResponse {
        ids: Vec::with_capacity(queries),
        embeddings: include.contains(IncludeField::Embeddings).then(Vec::new),
        documents: include.contains(IncludeField::Documents).then(Vec::new),
        uris: include.contains(IncludeField::Uris).then(Vec::new),
        metadatas: include.contains(IncludeField::Metadatas).then(Vec::new),
        distances: include.contains(IncludeField::Distances).then(Vec::new),
        include: include.clone(),
    };
    for (index, query_ids) in ids.iter().enumerate() {
        let columns = decode_columns(
            [
                query_ids,
                nested("embeddings", index)?,
                nested("documents", index)?,
                nested("uris", index)?,
                nested("metadatas", index)?,
                nested("distances", index)?,
            ],
            include,
            n_results,
            limits,
        )?;
        response.ids.push(columns.ids);
        push(&mut response.embeddings, columns.embeddings);
        push(&mut response.documents, columns.documents);
        push(&mut response.uris, columns.uris);
        push(&mut response.metadatas, columns.metadatas);
        push(&mut response.distances, columns.distances);
    }
    Ok(response)
}

fn push<T>(target: &mut Option<Vec<T>>, column: Option<T>) {
    if let (Some(target), Some(column)) = (target, column) {
        target.push(column);
    }
}

/// Decodes one list of records given as columns: ids, embeddings, documents, uris,
/// metadatas, distances. A column in `include` must have one entry per id; a column
/// outside it is ignored.
fn decode_columns(
    [ids, embeddings, documents, uris, metadatas, distances]: [&Value; 6],
    include: &Include,
    max_records: usize,
    limits: &Limits,
) -> Result<Columns, ApiError> {
    let what = "records";
    let ids = array(ids, what)?;
    if ids.len() > max_records {
        return Err(invalid(
            what,
            format!(
                "{} records, more than the {max_records} requested",
                ids.len()
            ),
        ));
    }
    let ids = ids
        .iter()
        .map(|id| match id.as_str() {
            Some(id) if !id.is_empty() && id.len() <= limits.max_id_bytes => Ok(id.to_string()),
            _ => Err(invalid(what, "an id is not a string within the id limit")),
        })
        .collect::<Result<Vec<String>, ApiError>>()?;
    let rows = ids.len();
    let aligned = |value: &Value, key: &str| -> Result<Vec<Value>, ApiError> {
        let items = array(value, key)?;
        if items.len() != rows {
            return Err(invalid(
                what,
                format!("{key} has {} entries for {rows} ids", items.len()),
            ));
        }
        Ok(items.clone())
    };

    let embeddings = include
        .contains(IncludeField::Embeddings)
        .then(|| {
            aligned(embeddings, "embeddings")?
                .iter()
                .map(|item| decode_vector(item, limits.max_dimension))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let text = |value: &Value, key: &str| -> Result<Vec<Option<String>>, ApiError> {
        aligned(value, key)?
            .into_iter()
            .map(|item| match item {
                Value::Null => Ok(None),
                Value::String(text) if text.len() <= limits.max_document_bytes => Ok(Some(text)),
                _ => Err(invalid(
                    what,
                    format!("an entry of {key} is not a string within the document limit"),
                )),
            })
            .collect()
    };
    let documents = include
        .contains(IncludeField::Documents)
        .then(|| text(documents, "documents"))
        .transpose()?;
    let uris = include
        .contains(IncludeField::Uris)
        .then(|| text(uris, "uris"))
        .transpose()?;
    let metadatas = include
        .contains(IncludeField::Metadatas)
        .then(|| {
            aligned(metadatas, "metadatas")?
                .iter()
                .map(|item| match item {
                    Value::Null => Ok(None),
                    item => {
                        decode_metadata_strict(item, &limits.metadata, "record metadata").map(Some)
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let distances = include
        .contains(IncludeField::Distances)
        .then(|| {
            aligned(distances, "distances")?
                .iter()
                .map(|item| {
                    finite_f32(item)
                        .ok_or_else(|| invalid(what, "a distance is not a finite number"))
                })
                .collect::<Result<Vec<f32>, _>>()
        })
        .transpose()?;

    Ok(Columns {
        ids,
        embeddings,
        documents,
        uris,
        metadatas,
        distances,
    })
}

fn decode_vector(value: &Value, max_dimension: usize) -> Result<Vec<f32>, ApiError> {
    let what = "embedding";
    let items = array(value, what)?;
    if items.len() > max_dimension {
        return Err(invalid(what, format!("dimension over {max_dimension}")));
    }
    items
        .iter()
        .map(|item| {
            finite_f32(item).ok_or_else(|| invalid(what, "a value is not a finite float32"))
        })
        .collect()
}

/// Returns a JSON number as an f32 when it is finite as an f32.
fn finite_f32(value: &Value) -> Option<f32> {
    let narrowed = value.as_f64()? as f32;
    narrowed.is_finite().then_some(narrowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn include(fields: &[IncludeField]) -> Include {
        Include(fields.to_vec())
    }

    fn error_from_upstream(status: u16, body: &[u8]) -> ApiError {
        UpstreamError::parse(status, body).to_client_error()
    }

    #[test]
    fn upstream_errors_keep_client_names() {
        let body = br#"{"error":"NotFoundError","message":"Collection [x] does not exist"}"#;
        let error = error_from_upstream(404, body);
        assert_eq!(error.kind, ErrorKind::NotFound);
        assert_eq!(error.message, "Collection [x] does not exist");

        let body = br#"{"error":"ChromaError","message":"Collection [x] already exists"}"#;
        assert_eq!(error_from_upstream(409, body).kind, ErrorKind::Conflict);
        let body = br#"{"error":"ChromaError","message":"Reset is disabled by config"}"#;
        assert_eq!(error_from_upstream(403, body).kind, ErrorKind::Disabled);
    }

    #[test]
    fn upstream_failures_hide_their_body() {
        let body =
            br#"{"error":"InternalError","message":"UNIQUE constraint failed: collections.name"}"#;
        let error = error_from_upstream(500, body);
        assert_eq!(error.status(), 500);
        assert!(!error.message.contains("UNIQUE"), "{}", error.message);

        let error = error_from_upstream(401, b"<html>secret</html>");
        assert_eq!(error.status(), 502);
        assert!(!error.message.contains("secret"));
        assert_eq!(error_from_upstream(418, b"").status(), 502);
    }

    #[test]
    fn upstream_messages_cleaned() {
        let long = "x".repeat(5000);
        let body =
            json!({"error": "InvalidArgumentError", "message": format!("a\u{1b}[31m{long}")});
        let error = error_from_upstream(400, body.to_string().as_bytes());
        assert!(!error.message.contains('\u{1b}'));
        assert!(error.message.len() <= MAX_MESSAGE_CHARS + 3);
    }

    fn collection() -> Value {
        json!({
            "id": "6f1a7b36-0d3f-4c1e-9d53-3c4b7d1f2a10", "name": "probe1",
            "configuration_json": {"hnsw": {"space": "cosine", "ef_construction": 100, "ef_search": 100,
                "max_neighbors": 16, "resize_factor": 1.2, "sync_threshold": 1000},
                "spann": null, "embedding_function": {"type": "known", "name": "default", "config": {}}},
            "schema": null, "metadata": {"topic": "x"}, "dimension": 3,
            "tenant": "default_tenant", "database": "default_database",
            "log_position": 0, "version": 0
        })
    }

    #[test]
    fn collection_decoded() {
        let decoded = decode_collection(&collection(), &Limits::default()).unwrap();
        assert_eq!(decoded.name, "probe1");
        assert_eq!(decoded.configuration_json["hnsw"]["space"], "cosine");
        assert_eq!(decoded.dimension, Some(3));
    }

    #[test]
    fn poisoned_collection_config_rejected() {
        let mut poisoned = collection();
        poisoned["configuration_json"]["embedding_function"] = json!({"type": "known",
            "name": "sentence_transformer", "config": {"kwargs": {"trust_remote_code": true}}});
        assert!(decode_collection(&poisoned, &Limits::default()).is_err());

        let mut bad_name = collection();
        bad_name["name"] = json!("../etc");
        assert!(decode_collection(&bad_name, &Limits::default()).is_err());

        let mut bad_metadata = collection();
        bad_metadata["metadata"] = json!({"$key": 1});
        assert!(decode_collection(&bad_metadata, &Limits::default()).is_err());
    }

    #[test]
    fn get_columns_checked() {
        let fields = include(&[IncludeField::Embeddings, IncludeField::Documents]);
        let good = json!({"ids": ["a"], "embeddings": [[0.5, 1]], "documents": ["d"],
            "metadatas": null, "uris": null, "include": ["embeddings", "documents"]});
        let decoded = decode_get(&good, &fields, 10, &Limits::default()).unwrap();
        assert_eq!(decoded.embeddings, Some(vec![vec![0.5, 1.0]]));

        let misaligned =
            json!({"ids": ["a", "b"], "embeddings": [[0.5]], "documents": ["d", null]});
        assert!(decode_get(&misaligned, &fields, 10, &Limits::default()).is_err());
        let too_many =
            json!({"ids": ["a", "b"], "embeddings": [[1], [2]], "documents": [null, null]});
        assert!(decode_get(&too_many, &fields, 1, &Limits::default()).is_err());
        let huge = json!({"ids": ["a"], "embeddings": [[1e300]], "documents": [null]});
        assert!(decode_get(&huge, &fields, 10, &Limits::default()).is_err());
    }

    #[test]
    fn query_shape_checked() {
        let fields = include(&[IncludeField::Distances]);
        let good = json!({"ids": [["a", "b"]], "distances": [[0.1, 0.2]]});
        let decoded = decode_query(&good, &fields, 1, 2, &Limits::default()).unwrap();
        assert_eq!(decoded.distances, Some(vec![vec![0.1, 0.2]]));

        assert!(decode_query(&good, &fields, 2, 2, &Limits::default()).is_err());
        assert!(decode_query(&good, &fields, 1, 1, &Limits::default()).is_err());
        let nan = json!({"ids": [["a"]], "distances": [[null]]});
        assert!(decode_query(&nan, &fields, 1, 2, &Limits::default()).is_err());
    }
}
