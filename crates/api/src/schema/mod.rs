//! Collection schemas: which indexes a collection keeps, for each metadata value type,
//! by default and per key.
//!
//! A schema has the JSON shape of Chroma 1.5.9's `Schema`. Its `defaults` map each value
//! type (`string`, `int`, `float`, `bool`, `float_list`, `sparse_vector`) to its indexes.
//! Its `keys` override them for single metadata keys and for the two special keys
//! `#embedding` (the vector index) and `#document` (the full-text index). Every index is
//! `{"enabled": bool, "config": {...}}`.
//!
//! Ravelin scans records exactly, so the schema does not change how records are stored
//! or searched. It changes three things, as it does in Chroma:
//!
//! - A filter on a key whose inverted index for the operand's value type is disabled,
//!   and a document filter when the `#document` full-text index is disabled, fail with
//!   400 ([`Schema::check_filter`]).
//! - The vector index settings of `#embedding` (space, HNSW parameters, embedding
//!   function) are the collection configuration: [`Schema::configuration`] derives the
//!   `configuration_json` that responses echo, so the two never disagree.
//! - Clients rebuild the embedding function from the schema, so it is stored verbatim.
//!
//! Each write records the metadata keys and value types it stores in `keys`, with a
//! copy of the defaults ([`Schema::discover_key`]), as Chroma does.
//!
//! On create, [`Schema::reconcile`] combines the request's schema with its configuration:
//! a schema with only default settings yields to the configuration, a configuration with
//! only default settings yields to the schema, and setting both is an error. On modify,
//! [`Schema::apply_configuration_update`] applies the new HNSW parameters and embedding
//! function to the schema.
//!
//! The embedding-function records inside a schema pass the same checks as the one in a
//! configuration (name syntax, size cap, no `trust_remote_code`), and are never run.
//!
//! # Differences from Chroma
//!
//! - SPANN sections are accepted and dropped, and the HNSW defaults fill their place,
//!   as Chroma's single-node server does. Ravelin has no SPANN index.
//! - A sparse vector index cannot be enabled, as in Chroma's single-node server.
//! - `cmek` (a cloud encryption key) is rejected: Ravelin encrypts its whole store with
//!   its own key.
//! - Chroma ignores unknown fields in the schema, its value types and their index
//!   entries, and so does this decoder. It rejects unknown fields inside index configs.

mod discover;
mod filter;
mod reconcile;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::limits::Limits;

pub use discover::ValueKind;

/// The key whose `float_list` vector index contains the collection's embeddings.
pub const EMBEDDING_KEY: &str = "#embedding";
/// The key whose `string` full-text index covers the record documents.
pub const DOCUMENT_KEY: &str = "#document";

/// A collection schema, as Chroma's clients send and read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// Indexes of each value type for keys without an entry in `keys`.
    pub defaults: ValueTypes,
    /// Per-key overrides, including `#embedding` and `#document`.
    #[serde(alias = "key_overrides")]
    pub keys: BTreeMap<String, ValueTypes>,
    /// A cloud encryption key. Decoded only so that a schema naming one is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmek: Option<Value>,
    /// Set by Chroma for collections that a server-side function writes. Decoded only so
    /// that a schema naming one is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_attached_function_id: Option<Value>,
}

/// The indexes of each value type. An absent value type has no settings here, so
/// lookups fall back to the schema's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValueTypes {
    #[serde(default, alias = "#string", skip_serializing_if = "Option::is_none")]
    pub string: Option<StringIndexes>,
    #[serde(
        default,
        alias = "#float_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub float_list: Option<FloatListIndexes>,
    #[serde(
        default,
        alias = "#sparse_vector",
        skip_serializing_if = "Option::is_none"
    )]
    pub sparse_vector: Option<SparseVectorIndexes>,
    #[serde(default, alias = "#int", skip_serializing_if = "Option::is_none")]
    pub int: Option<IntIndexes>,
    #[serde(default, alias = "#float", skip_serializing_if = "Option::is_none")]
    pub float: Option<FloatIndexes>,
    #[serde(
        default,
        rename = "bool",
        alias = "#bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub boolean: Option<BoolIndexes>,
}

/// One index: whether it is enabled, and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index<C> {
    pub enabled: bool,
    pub config: C,
}

impl<C> Index<C> {
    fn new(enabled: bool, config: C) -> Index<C> {
        Index { enabled, config }
    }
}

/// The settings of an index that has none: always `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StringIndexes {
    #[serde(default, alias = "$fts_index", skip_serializing_if = "Option::is_none")]
    pub fts_index: Option<Index<NoSettings>>,
    #[serde(
        default,
        alias = "$string_inverted_index",
        skip_serializing_if = "Option::is_none"
    )]
    pub string_inverted_index: Option<Index<NoSettings>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloatListIndexes {
    #[serde(
        default,
        alias = "$vector_index",
        skip_serializing_if = "Option::is_none"
    )]
    pub vector_index: Option<Index<VectorIndexConfig>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparseVectorIndexes {
    #[serde(
        default,
        alias = "$sparse_vector_index",
        skip_serializing_if = "Option::is_none"
    )]
    pub sparse_vector_index: Option<Index<SparseVectorIndexConfig>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntIndexes {
    #[serde(
        default,
        alias = "$int_inverted_index",
        skip_serializing_if = "Option::is_none"
    )]
    pub int_inverted_index: Option<Index<NoSettings>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloatIndexes {
    #[serde(
        default,
        alias = "$float_inverted_index",
        skip_serializing_if = "Option::is_none"
    )]
    pub float_inverted_index: Option<Index<NoSettings>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoolIndexes {
    #[serde(
        default,
        alias = "$bool_inverted_index",
        skip_serializing_if = "Option::is_none"
    )]
    pub bool_inverted_index: Option<Index<NoSettings>>,
}

/// Distance space of a vector index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Space {
    L2,
    Cosine,
    Ip,
}

impl Space {
    /// Returns the space's name as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Space::L2 => "l2",
            Space::Cosine => "cosine",
            Space::Ip => "ip",
        }
    }

    /// Parses `l2`, `cosine` or `ip`.
    pub fn from_name(name: &str) -> Option<Space> {
        match name {
            "l2" => Some(Space::L2),
            "cosine" => Some(Space::Cosine),
            "ip" => Some(Space::Ip),
            _ => None,
        }
    }
}

/// Settings of a dense vector index. Unset fields take the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorIndexConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<Space>,
    /// An embedding-function record, checked by the configuration rules and stored
    /// verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_function: Option<Value>,
    /// The field the client embeds into this vector. Only `#document` is valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hnsw: Option<HnswIndexConfig>,
    /// Accepted on input and dropped on reconciliation, because Ravelin has no SPANN
    /// index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spann: Option<SpannIndexConfig>,
}

/// HNSW parameters, named and bounded as in the collection configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HnswIndexConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_construction: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_neighbors: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_search: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_threads: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_threshold: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_factor: Option<f64>,
}

/// SPANN parameters with Chroma's field names. Ravelin only reads them to decide
/// whether a schema changes any default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpannIndexConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_nprobe: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_rng_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_rng_epsilon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nreplica_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_rng_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_rng_epsilon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_threshold: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_samples_kmeans: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_lambda: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reassign_neighbor_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_threshold: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_centers_to_merge_to: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_nprobe: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_construction: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_search: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_neighbors: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_drift_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize: Option<String>,
}

/// Settings of a sparse vector index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseVectorIndexConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_function: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bm25: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<SparseAlgorithm>,
}

/// Query algorithm of a sparse vector index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SparseAlgorithm {
    Wand,
    MaxScore,
}

/// A scalar metadata value type, which selects an inverted index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    String,
    Int,
    Float,
    Bool,
}

impl ScalarType {
    /// Returns the value type's name as schemas spell it.
    pub fn name(self) -> &'static str {
        match self {
            ScalarType::String => "string",
            ScalarType::Int => "int",
            ScalarType::Float => "float",
            ScalarType::Bool => "bool",
        }
    }
}

impl Schema {
    /// Decodes and validates a schema from a create request.
    ///
    /// # Errors
    ///
    /// 422 when the JSON does not have the schema's shape, and 400 when a setting is
    /// invalid: an index enabled where Chroma does not allow it, a reserved key, an
    /// HNSW parameter out of bounds, or an invalid embedding-function record.
    pub fn decode(value: &Value, limits: &Limits) -> Result<Schema, ApiError> {
        let schema = Schema::from_json(value)?;
        validate::validate(&schema, limits)?;
        Ok(schema)
    }

    /// Reads a schema stored by [`Schema::to_json`], without the request checks.
    pub fn from_stored(value: &Value) -> Result<Schema, ApiError> {
        Schema::from_json(value)
    }

    fn from_json(value: &Value) -> Result<Schema, ApiError> {
        Schema::deserialize(value)
            .map_err(|error| ApiError::unprocessable(format!("Invalid schema: {error}")))
    }

    /// Returns the schema as JSON for responses and for the store.
    pub fn to_json(&self) -> Value {
        // Serialization cannot fail: every map key is a string, and a non-finite float
        // becomes `null`.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Returns the vector index of `#embedding`, or the default one when `#embedding`
    /// has none.
    pub fn embedding_vector_index(&self) -> Option<&Index<VectorIndexConfig>> {
        self.keys
            .get(EMBEDDING_KEY)
            .and_then(|types| types.float_list.as_ref())
            .and_then(|float_list| float_list.vector_index.as_ref())
            .or_else(|| {
                self.defaults
                    .float_list
                    .as_ref()
                    .and_then(|float_list| float_list.vector_index.as_ref())
            })
    }

    /// Returns whether the `#document` full-text index is enabled. A schema that does
    /// not mention it leaves it enabled.
    pub fn is_fts_enabled(&self) -> bool {
        let document = self
            .keys
            .get(DOCUMENT_KEY)
            .and_then(|types| types.string.as_ref())
            .and_then(|string| string.fts_index.as_ref());
        let default = self
            .defaults
            .string
            .as_ref()
            .and_then(|string| string.fts_index.as_ref());
        document.or(default).is_none_or(|index| index.enabled)
    }

    /// Returns whether values of `value_type` under `key` have an enabled inverted
    /// index. The key's own setting wins over the default, and a schema that has
    /// neither leaves the index enabled.
    pub fn is_inverted_index_enabled(&self, key: &str, value_type: ScalarType) -> bool {
        let own = self
            .keys
            .get(key)
            .and_then(|types| inverted_index(types, value_type));
        let default = inverted_index(&self.defaults, value_type);
        own.or(default).is_none_or(|index| index.enabled)
    }

    /// Returns whether any sparse vector index is enabled.
    pub fn is_sparse_index_enabled(&self) -> bool {
        std::iter::once(&self.defaults)
            .chain(self.keys.values())
            .filter_map(|types| types.sparse_vector.as_ref())
            .filter_map(|sparse| sparse.sparse_vector_index.as_ref())
            .any(|index| index.enabled)
    }
}

fn inverted_index(types: &ValueTypes, value_type: ScalarType) -> Option<&Index<NoSettings>> {
    match value_type {
        ScalarType::String => types
            .string
            .as_ref()
            .and_then(|string| string.string_inverted_index.as_ref()),
        ScalarType::Int => types
            .int
            .as_ref()
            .and_then(|int| int.int_inverted_index.as_ref()),
        ScalarType::Float => types
            .float
            .as_ref()
            .and_then(|float| float.float_inverted_index.as_ref()),
        ScalarType::Bool => types
            .boolean
            .as_ref()
            .and_then(|boolean| boolean.bool_inverted_index.as_ref()),
    }
}
