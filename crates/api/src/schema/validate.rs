//! Checks on a schema from a create request, before it is reconciled.
//!
//! The rules on where each index may be enabled are Chroma 1.5.9's. The checks on
//! embedding-function records and HNSW parameters are the collection configuration's.

use super::{
    Index, Schema, SparseVectorIndexConfig, ValueTypes, VectorIndexConfig, DOCUMENT_KEY,
    EMBEDDING_KEY,
};
use crate::config::{check_hnsw_parameters, validate_embedding_function};
use crate::error::ApiError;
use crate::limits::Limits;
use crate::metadata::printable;

pub(super) fn validate(schema: &Schema, limits: &Limits) -> Result<(), ApiError> {
    if schema.source_attached_function_id.is_some() {
        return Err(invalid(
            "source_attached_function_id is set by the server and cannot be sent",
        ));
    }
    if schema.cmek.is_some() {
        return Err(invalid(
            "cmek is not supported, because Ravelin encrypts the whole store with its own key",
        ));
    }

    validate_defaults(&schema.defaults)?;
    let mut sparse_key: Option<&str> = None;
    for (key, types) in &schema.keys {
        validate_key(key, types, limits)?;
        if sparse_vector_index(types).is_some_and(|index| index.enabled) {
            if let Some(first) = sparse_key {
                return Err(invalid(format!(
                    "at most one key can have a sparse vector index, but [{}] and [{}] both enable one",
                    printable(first),
                    printable(key)
                )));
            }
            sparse_key = Some(key);
        }
    }

    for types in std::iter::once(&schema.defaults).chain(schema.keys.values()) {
        if let Some(index) = vector_index(types) {
            validate_vector_settings(&index.config, limits)?;
        }
        if let Some(index) = sparse_vector_index(types) {
            validate_sparse_settings(&index.config, limits)?;
        }
    }
    Ok(())
}

fn invalid(reason: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("Invalid schema: {reason}"))
}

fn vector_index(types: &ValueTypes) -> Option<&Index<VectorIndexConfig>> {
    types
        .float_list
        .as_ref()
        .and_then(|float_list| float_list.vector_index.as_ref())
}

fn sparse_vector_index(types: &ValueTypes) -> Option<&Index<SparseVectorIndexConfig>> {
    types
        .sparse_vector
        .as_ref()
        .and_then(|sparse| sparse.sparse_vector_index.as_ref())
}

fn fts_enabled(types: &ValueTypes) -> bool {
    types
        .string
        .as_ref()
        .and_then(|string| string.fts_index.as_ref())
        .is_some_and(|index| index.enabled)
}

/// The vector, sparse vector and full-text indexes belong to single keys, so the
/// defaults must leave them off.
fn validate_defaults(defaults: &ValueTypes) -> Result<(), ApiError> {
    if vector_index(defaults).is_some_and(|index| index.enabled) {
        return Err(invalid(
            "the vector index cannot be enabled in defaults, because it is always enabled on #embedding",
        ));
    }
    if sparse_vector_index(defaults).is_some_and(|index| index.enabled) {
        return Err(invalid(
            "a sparse vector index cannot be enabled in defaults, only on one metadata key",
        ));
    }
    if fts_enabled(defaults) {
        return Err(invalid(
            "the full-text index cannot be enabled in defaults, only on #document",
        ));
    }
    Ok(())
}

fn validate_key(key: &str, types: &ValueTypes, limits: &Limits) -> Result<(), ApiError> {
    let max_key_bytes = limits.metadata.max_key_bytes;
    if key.len() > max_key_bytes {
        return Err(invalid(format!(
            "a key of {} bytes exceeds the limit of {max_key_bytes} bytes",
            key.len()
        )));
    }
    if key.starts_with('#') && key != DOCUMENT_KEY && key != EMBEDDING_KEY {
        return Err(invalid(format!(
            "key [{}] cannot begin with '#', which is reserved for #document and #embedding",
            printable(key)
        )));
    }

    let has_scalar_types = types.int.is_some() || types.float.is_some() || types.boolean.is_some();
    if key == DOCUMENT_KEY
        && (has_scalar_types || types.float_list.is_some() || types.sparse_vector.is_some())
    {
        return Err(invalid("#document can only have string indexes"));
    }
    if key == EMBEDDING_KEY
        && (has_scalar_types || types.string.is_some() || types.sparse_vector.is_some())
    {
        return Err(invalid(
            "#embedding can only have a float_list vector index",
        ));
    }

    if let Some(index) = vector_index(types) {
        if index.enabled && key != EMBEDDING_KEY {
            return Err(invalid(format!(
                "the vector index can only be enabled on #embedding, not on [{}]",
                printable(key)
            )));
        }
        if let Some(source) = index
            .config
            .source_key
            .as_deref()
            .filter(|source| *source != DOCUMENT_KEY)
        {
            return Err(invalid(format!(
                "a vector index can only embed #document, not [{}]",
                printable(source)
            )));
        }
    }

    if let Some(index) = sparse_vector_index(types) {
        let config = &index.config;
        if index.enabled && config.source_key.is_some() && config.embedding_function.is_none() {
            return Err(invalid(
                "a sparse vector index with a source_key needs an embedding_function, because there is no default one",
            ));
        }
        if let Some(source) = config
            .source_key
            .as_deref()
            .filter(|source| source.starts_with('#') && *source != DOCUMENT_KEY)
        {
            return Err(invalid(format!(
                "source_key [{}] cannot begin with '#', except #document",
                printable(source)
            )));
        }
    }

    if fts_enabled(types) && key != DOCUMENT_KEY {
        return Err(invalid(format!(
            "the full-text index can only be enabled on #document, not on [{}]",
            printable(key)
        )));
    }
    let string_inverted_enabled = types
        .string
        .as_ref()
        .and_then(|string| string.string_inverted_index.as_ref())
        .is_some_and(|index| index.enabled);
    if string_inverted_enabled && key == DOCUMENT_KEY {
        return Err(invalid(
            "#document cannot have a string inverted index. Filter documents with where_document",
        ));
    }
    Ok(())
}

fn validate_vector_settings(settings: &VectorIndexConfig, limits: &Limits) -> Result<(), ApiError> {
    if settings.hnsw.is_some() && settings.spann.is_some() {
        return Err(invalid(
            "a vector index cannot have both hnsw and spann settings",
        ));
    }
    if let Some(hnsw) = &settings.hnsw {
        let parameters = serde_json::to_value(hnsw).map_err(invalid)?;
        check_hnsw_parameters(&parameters)?;
    }
    if let Some(function) = &settings.embedding_function {
        validate_embedding_function(function, limits.max_embedding_function_bytes)?;
    }
    Ok(())
}

fn validate_sparse_settings(
    settings: &SparseVectorIndexConfig,
    limits: &Limits,
) -> Result<(), ApiError> {
    if let Some(function) = &settings.embedding_function {
        validate_embedding_function(function, limits.max_embedding_function_bytes)?;
    }
    Ok(())
}
