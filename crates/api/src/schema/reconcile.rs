//! The default schema, merging a requested schema over it, and keeping the schema and
//! the collection configuration in agreement.

use serde_json::Value;

use super::{
    BoolIndexes, FloatIndexes, FloatListIndexes, HnswIndexConfig, Index, IntIndexes, NoSettings,
    Schema, Space, SpannIndexConfig, SparseVectorIndexConfig, SparseVectorIndexes, StringIndexes,
    ValueTypes, VectorIndexConfig, DOCUMENT_KEY, EMBEDDING_KEY,
};
use crate::config::{CollectionConfiguration, HnswConfiguration};
use crate::error::ApiError;

/// Chroma's default HNSW `batch_size`.
const DEFAULT_BATCH_SIZE: u64 = 100;

/// Chroma's defaults for the SPANN parameters, used only to tell whether a requested
/// schema changes any of them. Each entry is a field name and its default.
const SPANN_DEFAULTS: &[(&str, f64)] = &[
    ("search_nprobe", 64.0),
    ("search_rng_factor", 1.0),
    ("search_rng_epsilon", 10.0),
    ("nreplica_count", 8.0),
    ("write_rng_factor", 1.0),
    ("write_rng_epsilon", 5.0),
    ("split_threshold", 50.0),
    ("num_samples_kmeans", 1000.0),
    ("initial_lambda", 100.0),
    ("reassign_neighbor_count", 64.0),
    ("merge_threshold", 25.0),
    ("num_centers_to_merge_to", 8.0),
    ("write_nprobe", 32.0),
    ("ef_construction", 200.0),
    ("ef_search", 200.0),
    ("max_neighbors", 64.0),
    ("center_drift_threshold", 0.125),
];

/// Returns the HNSW `num_threads` a schema reports when none was requested: the
/// server's available parallelism, as Chroma 1.5.9 does. Ravelin's exact scan does not
/// use it.
pub(crate) fn default_num_threads() -> u64 {
    // NOTE: inside the server's sandbox the cgroup files are unreadable, so this
    // counts the CPUs of the affinity mask and ignores a CPU quota.
    std::thread::available_parallelism().map_or(1, |threads| threads.get() as u64)
}

impl Schema {
    /// Builds the full schema of a collection whose only settings are `configuration`:
    /// inverted indexes on for every scalar type, the full-text index on `#document`,
    /// and the vector index on `#embedding` with the configuration's space, HNSW
    /// parameters and embedding function.
    pub fn from_configuration(configuration: &CollectionConfiguration) -> Schema {
        let hnsw = &configuration.hnsw;
        let vector = VectorIndexConfig {
            space: Some(Space::from_name(&hnsw.space).unwrap_or(Space::L2)),
            embedding_function: configuration.embedding_function.clone(),
            source_key: None,
            hnsw: Some(HnswIndexConfig {
                ef_construction: Some(hnsw.ef_construction),
                max_neighbors: Some(hnsw.max_neighbors),
                ef_search: Some(hnsw.ef_search),
                num_threads: Some(hnsw.num_threads.unwrap_or_else(default_num_threads)),
                batch_size: Some(hnsw.batch_size.unwrap_or(DEFAULT_BATCH_SIZE)),
                sync_threshold: Some(hnsw.sync_threshold),
                resize_factor: Some(hnsw.resize_factor),
            }),
            spann: None,
        };
        let embedding_vector = VectorIndexConfig {
            source_key: Some(DOCUMENT_KEY.to_string()),
            ..vector.clone()
        };

        let defaults = ValueTypes {
            string: Some(StringIndexes {
                fts_index: Some(Index::new(false, NoSettings {})),
                string_inverted_index: Some(Index::new(true, NoSettings {})),
            }),
            float_list: Some(FloatListIndexes {
                vector_index: Some(Index::new(false, vector)),
            }),
            sparse_vector: Some(SparseVectorIndexes {
                sparse_vector_index: Some(Index::new(
                    false,
                    SparseVectorIndexConfig {
                        embedding_function: Some(serde_json::json!({"type": "unknown"})),
                        source_key: None,
                        bm25: Some(false),
                        algorithm: None,
                    },
                )),
            }),
            int: Some(IntIndexes {
                int_inverted_index: Some(Index::new(true, NoSettings {})),
            }),
            float: Some(FloatIndexes {
                float_inverted_index: Some(Index::new(true, NoSettings {})),
            }),
            boolean: Some(BoolIndexes {
                bool_inverted_index: Some(Index::new(true, NoSettings {})),
            }),
        };
        let embedding = ValueTypes {
            float_list: Some(FloatListIndexes {
                vector_index: Some(Index::new(true, embedding_vector)),
            }),
            ..ValueTypes::default()
        };
        let document = ValueTypes {
            string: Some(StringIndexes {
                fts_index: Some(Index::new(true, NoSettings {})),
                string_inverted_index: Some(Index::new(false, NoSettings {})),
            }),
            ..ValueTypes::default()
        };

        Schema {
            defaults,
            keys: [
                (EMBEDDING_KEY.to_string(), embedding),
                (DOCUMENT_KEY.to_string(), document),
            ]
            .into(),
            cmek: None,
            source_attached_function_id: None,
        }
    }

    /// Combines a create request's schema with its configuration, following Chroma
    /// 1.5.9. When the schema changes no default, the configuration decides and the
    /// schema is built from it. When the configuration changes no default, the schema is
    /// merged over the defaults field by field, and the configuration is then derived
    /// from it. A request that changes defaults in both is rejected.
    ///
    /// # Errors
    ///
    /// 400 when both carry settings, or when the result enables a sparse vector index.
    pub fn reconcile(
        requested: Option<&Schema>,
        configuration: &CollectionConfiguration,
    ) -> Result<Schema, ApiError> {
        let custom_schema = requested.filter(|schema| !schema.is_default());
        let reconciled = match custom_schema {
            Some(_) if !is_default_configuration(configuration) => {
                return Err(ApiError::invalid(
                    "Invalid schema: the collection configuration and the schema cannot both be set. Put the embedding function and index settings in the schema only",
                ))
            }
            Some(schema) => merge(
                &Schema::from_configuration(&CollectionConfiguration::default()),
                schema,
            ),
            None => Schema::from_configuration(configuration),
        };

        if reconciled.is_sparse_index_enabled() {
            return Err(ApiError::invalid(
                "Invalid schema: Sparse vector indexing is not enabled in local mode, and Ravelin has no sparse vector index",
            ));
        }
        Ok(reconciled)
    }

    /// Derives the collection configuration from the `#embedding` vector index (or the
    /// default vector index), filling unset fields with the defaults.
    pub fn configuration(&self) -> CollectionConfiguration {
        let mut configuration = CollectionConfiguration::default();
        let Some(index) = self.embedding_vector_index() else {
            return configuration;
        };
        let settings = &index.config;
        let hnsw = &mut configuration.hnsw;
        if let Some(space) = settings.space {
            hnsw.space = space.name().to_string();
        }
        if let Some(parameters) = &settings.hnsw {
            copy_hnsw_parameters(parameters, hnsw);
        }
        configuration.embedding_function = settings.embedding_function.clone();
        configuration
    }

    /// Applies a modify request's `new_configuration` to the default and `#embedding`
    /// vector indexes. `update` is the request's JSON, already applied to `updated` by
    /// [`CollectionConfiguration::apply_update`], which also checked it. Only the HNSW
    /// parameters the update names change, and only in indexes that have HNSW settings.
    pub fn apply_configuration_update(
        &mut self,
        update: &Value,
        updated: &CollectionConfiguration,
    ) {
        let hnsw_fields: Vec<&str> = update
            .get("hnsw")
            .and_then(Value::as_object)
            .map(|fields| {
                fields
                    .iter()
                    .filter(|(_, value)| !value.is_null())
                    .map(|(name, _)| name.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let new_function = update
            .get("embedding_function")
            .is_some_and(|value| !value.is_null())
            .then(|| updated.embedding_function.clone());

        let apply = |index: &mut Index<VectorIndexConfig>| {
            if let Some(parameters) = index.config.hnsw.as_mut() {
                for field in &hnsw_fields {
                    update_hnsw_parameter(parameters, field, &updated.hnsw);
                }
            }
            if let Some(function) = &new_function {
                index.config.embedding_function = function.clone();
            }
        };
        if let Some(index) = self
            .defaults
            .float_list
            .as_mut()
            .and_then(|float_list| float_list.vector_index.as_mut())
        {
            apply(index);
        }
        if let Some(index) = self
            .keys
            .get_mut(EMBEDDING_KEY)
            .and_then(|types| types.float_list.as_mut())
            .and_then(|float_list| float_list.vector_index.as_mut())
        {
            apply(index);
        }
    }

    /// Returns true when the schema changes none of Chroma's defaults, so that the
    /// configuration may decide the collection's settings.
    pub(crate) fn is_default(&self) -> bool {
        let special_keys_only = self
            .keys
            .keys()
            .all(|key| key == EMBEDDING_KEY || key == DOCUMENT_KEY);
        let embedding_default = self
            .keys
            .get(EMBEDDING_KEY)
            .is_none_or(is_default_embedding_types);
        let document_default = self
            .keys
            .get(DOCUMENT_KEY)
            .is_none_or(is_default_document_types);
        special_keys_only
            && is_default_types(&self.defaults)
            && embedding_default
            && document_default
            && self.cmek.is_none()
    }
}

/// Returns true when a configuration changes no default: the default embedding function
/// (or none), space `l2` and the default HNSW parameters.
pub(crate) fn is_default_configuration(configuration: &CollectionConfiguration) -> bool {
    let hnsw = &configuration.hnsw;
    let default = HnswConfiguration::default();
    is_default_embedding_function(configuration.embedding_function.as_ref())
        && hnsw.space == default.space
        && hnsw.ef_construction == default.ef_construction
        && hnsw.ef_search == default.ef_search
        && hnsw.max_neighbors == default.max_neighbors
        && hnsw.resize_factor == default.resize_factor
        && hnsw.sync_threshold == default.sync_threshold
        && hnsw
            .num_threads
            .is_none_or(|threads| threads == default_num_threads())
        && hnsw
            .batch_size
            .is_none_or(|batch_size| batch_size == DEFAULT_BATCH_SIZE)
}

/// Returns true for no function, an `unknown` one, or the known function `default`.
/// A `legacy` record is not a default, as in Chroma.
fn is_default_embedding_function(function: Option<&Value>) -> bool {
    let Some(function) = function else {
        return true;
    };
    match function.get("type").and_then(Value::as_str) {
        Some("unknown") => true,
        Some("known") => function.get("name").and_then(Value::as_str) == Some("default"),
        _ => false,
    }
}

fn copy_hnsw_parameters(parameters: &HnswIndexConfig, hnsw: &mut HnswConfiguration) {
    if let Some(ef_construction) = parameters.ef_construction {
        hnsw.ef_construction = ef_construction;
    }
    if let Some(ef_search) = parameters.ef_search {
        hnsw.ef_search = ef_search;
    }
    if let Some(max_neighbors) = parameters.max_neighbors {
        hnsw.max_neighbors = max_neighbors;
    }
    if let Some(resize_factor) = parameters.resize_factor {
        hnsw.resize_factor = resize_factor;
    }
    if let Some(sync_threshold) = parameters.sync_threshold {
        hnsw.sync_threshold = sync_threshold;
    }
    // The configuration leaves defaults unset, so its `configuration_json` omits them.
    hnsw.num_threads = parameters
        .num_threads
        .filter(|threads| *threads != default_num_threads());
    hnsw.batch_size = parameters
        .batch_size
        .filter(|batch_size| *batch_size != DEFAULT_BATCH_SIZE);
}

fn update_hnsw_parameter(
    parameters: &mut HnswIndexConfig,
    field: &str,
    updated: &HnswConfiguration,
) {
    match field {
        "ef_search" => parameters.ef_search = Some(updated.ef_search),
        "max_neighbors" => parameters.max_neighbors = Some(updated.max_neighbors),
        "resize_factor" => parameters.resize_factor = Some(updated.resize_factor),
        "sync_threshold" => parameters.sync_threshold = Some(updated.sync_threshold),
        "num_threads" => {
            parameters.num_threads = Some(updated.num_threads.unwrap_or_else(default_num_threads))
        }
        "batch_size" => {
            parameters.batch_size = Some(updated.batch_size.unwrap_or(DEFAULT_BATCH_SIZE))
        }
        // `space` and `ef_construction` are immutable, and the update check rejects them.
        _ => {}
    }
}

/// Merges `requested` over `base`. A requested key or value type that `base` lacks is
/// taken whole. Where both have one, each index of the request replaces the base's,
/// except vector and sparse vector indexes, whose settings merge field by field. SPANN
/// settings are dropped everywhere.
fn merge(base: &Schema, requested: &Schema) -> Schema {
    let mut keys = base.keys.clone();
    for (key, types) in &requested.keys {
        let merged = match keys.get(key) {
            Some(base_types) => merge_types(base_types, types),
            None => types.clone(),
        };
        keys.insert(key.clone(), merged);
    }

    let mut merged = Schema {
        defaults: merge_types(&base.defaults, &requested.defaults),
        keys,
        cmek: None,
        source_attached_function_id: None,
    };
    for types in std::iter::once(&mut merged.defaults).chain(merged.keys.values_mut()) {
        if let Some(index) = types
            .float_list
            .as_mut()
            .and_then(|float_list| float_list.vector_index.as_mut())
        {
            index.config.spann = None;
        }
    }
    merged
}

fn merge_types(base: &ValueTypes, requested: &ValueTypes) -> ValueTypes {
    ValueTypes {
        string: merge_option(&base.string, &requested.string, |base, requested| {
            StringIndexes {
                fts_index: requested.fts_index.clone().or(base.fts_index.clone()),
                string_inverted_index: requested
                    .string_inverted_index
                    .clone()
                    .or(base.string_inverted_index.clone()),
            }
        }),
        float_list: merge_option(
            &base.float_list,
            &requested.float_list,
            |base, requested| FloatListIndexes {
                vector_index: merge_option(
                    &base.vector_index,
                    &requested.vector_index,
                    |base, requested| Index {
                        enabled: requested.enabled,
                        config: merge_vector_settings(&base.config, &requested.config),
                    },
                ),
            },
        ),
        sparse_vector: merge_option(
            &base.sparse_vector,
            &requested.sparse_vector,
            |base, requested| SparseVectorIndexes {
                sparse_vector_index: merge_option(
                    &base.sparse_vector_index,
                    &requested.sparse_vector_index,
                    |base, requested| Index {
                        enabled: requested.enabled,
                        config: merge_sparse_settings(&base.config, &requested.config),
                    },
                ),
            },
        ),
        int: merge_option(&base.int, &requested.int, |base, requested| IntIndexes {
            int_inverted_index: requested
                .int_inverted_index
                .clone()
                .or(base.int_inverted_index.clone()),
        }),
        float: merge_option(&base.float, &requested.float, |base, requested| {
            FloatIndexes {
                float_inverted_index: requested
                    .float_inverted_index
                    .clone()
                    .or(base.float_inverted_index.clone()),
            }
        }),
        boolean: merge_option(&base.boolean, &requested.boolean, |base, requested| {
            BoolIndexes {
                bool_inverted_index: requested
                    .bool_inverted_index
                    .clone()
                    .or(base.bool_inverted_index.clone()),
            }
        }),
    }
}

/// Merges two optional values: both present go through `both`, otherwise the present
/// one is kept.
fn merge_option<T: Clone>(
    base: &Option<T>,
    requested: &Option<T>,
    both: impl FnOnce(&T, &T) -> T,
) -> Option<T> {
    match (base, requested) {
        (Some(base), Some(requested)) => Some(both(base, requested)),
        (Some(only), None) | (None, Some(only)) => Some(only.clone()),
        (None, None) => None,
    }
}

fn merge_vector_settings(
    base: &VectorIndexConfig,
    requested: &VectorIndexConfig,
) -> VectorIndexConfig {
    let hnsw = merge_option(&base.hnsw, &requested.hnsw, |base, requested| {
        HnswIndexConfig {
            ef_construction: requested.ef_construction.or(base.ef_construction),
            max_neighbors: requested.max_neighbors.or(base.max_neighbors),
            ef_search: requested.ef_search.or(base.ef_search),
            num_threads: requested.num_threads.or(base.num_threads),
            batch_size: requested.batch_size.or(base.batch_size),
            sync_threshold: requested.sync_threshold.or(base.sync_threshold),
            resize_factor: requested.resize_factor.or(base.resize_factor),
        }
    });
    VectorIndexConfig {
        space: requested.space.or(base.space),
        embedding_function: requested
            .embedding_function
            .clone()
            .or(base.embedding_function.clone()),
        source_key: requested.source_key.clone().or(base.source_key.clone()),
        hnsw,
        spann: None,
    }
}

fn merge_sparse_settings(
    base: &SparseVectorIndexConfig,
    requested: &SparseVectorIndexConfig,
) -> SparseVectorIndexConfig {
    SparseVectorIndexConfig {
        embedding_function: requested
            .embedding_function
            .clone()
            .or(base.embedding_function.clone()),
        source_key: requested.source_key.clone().or(base.source_key.clone()),
        bm25: requested.bm25.or(base.bm25),
        algorithm: requested.algorithm.or(base.algorithm),
    }
}

/// Checks the `defaults` of a requested schema: scalar inverted indexes on, the
/// full-text, vector and sparse vector indexes off with default settings.
fn is_default_types(types: &ValueTypes) -> bool {
    let string_default = types.string.as_ref().is_none_or(|string| {
        index_is(&string.string_inverted_index, true) && index_is(&string.fts_index, false)
    });
    let scalars_default = types
        .int
        .as_ref()
        .is_none_or(|int| index_is(&int.int_inverted_index, true))
        && types
            .float
            .as_ref()
            .is_none_or(|float| index_is(&float.float_inverted_index, true))
        && types
            .boolean
            .as_ref()
            .is_none_or(|boolean| index_is(&boolean.bool_inverted_index, true));
    let vector_default = vector_index_of(types).is_none_or(|index| {
        !index.enabled
            && index.config.source_key.is_none()
            && is_default_vector_settings(&index.config)
    });
    let sparse_default = types
        .sparse_vector
        .as_ref()
        .and_then(|sparse| sparse.sparse_vector_index.as_ref())
        .is_none_or(|index| {
            !index.enabled
                && is_default_embedding_function(index.config.embedding_function.as_ref())
                && index.config.source_key.is_none()
                && index.config.bm25 != Some(true)
        });
    string_default && scalars_default && vector_default && sparse_default
}

/// Checks `keys["#embedding"]`: only a `float_list` vector index, enabled, embedding
/// `#document`, with default settings.
fn is_default_embedding_types(types: &ValueTypes) -> bool {
    let only_float_list = types.string.is_none()
        && types.sparse_vector.is_none()
        && types.int.is_none()
        && types.float.is_none()
        && types.boolean.is_none();
    only_float_list
        && vector_index_of(types).is_none_or(|index| {
            index.enabled
                && index.config.source_key.as_deref() == Some(DOCUMENT_KEY)
                && is_default_vector_settings(&index.config)
        })
}

/// Checks `keys["#document"]`: only `string` indexes, full-text on and inverted off.
fn is_default_document_types(types: &ValueTypes) -> bool {
    let only_string = types.float_list.is_none()
        && types.sparse_vector.is_none()
        && types.int.is_none()
        && types.float.is_none()
        && types.boolean.is_none();
    only_string
        && types.string.as_ref().is_none_or(|string| {
            index_is(&string.fts_index, true) && index_is(&string.string_inverted_index, false)
        })
}

/// Returns true when the index is absent or has the given state.
fn index_is<C>(index: &Option<Index<C>>, enabled: bool) -> bool {
    index.as_ref().is_none_or(|index| index.enabled == enabled)
}

fn vector_index_of(types: &ValueTypes) -> Option<&Index<VectorIndexConfig>> {
    types
        .float_list
        .as_ref()
        .and_then(|float_list| float_list.vector_index.as_ref())
}

/// Space `l2` or unset, the default embedding function, and default HNSW or SPANN
/// parameters. `num_threads` is not compared, because its default depends on the
/// machine.
fn is_default_vector_settings(settings: &VectorIndexConfig) -> bool {
    let default = HnswConfiguration::default();
    let hnsw_default = settings.hnsw.as_ref().is_none_or(|hnsw| {
        hnsw.ef_construction
            .is_none_or(|value| value == default.ef_construction)
            && hnsw
                .max_neighbors
                .is_none_or(|value| value == default.max_neighbors)
            && hnsw
                .ef_search
                .is_none_or(|value| value == default.ef_search)
            && hnsw
                .batch_size
                .is_none_or(|value| value == DEFAULT_BATCH_SIZE)
            && hnsw
                .sync_threshold
                .is_none_or(|value| value == default.sync_threshold)
            && hnsw
                .resize_factor
                .is_none_or(|value| value == default.resize_factor)
    });
    let spann_default = settings.spann.as_ref().is_none_or(is_default_spann);
    settings.space.is_none_or(|space| space == Space::L2)
        && is_default_embedding_function(settings.embedding_function.as_ref())
        && !(settings.hnsw.is_some() && settings.spann.is_some())
        && hnsw_default
        && spann_default
}

fn is_default_spann(spann: &SpannIndexConfig) -> bool {
    let Ok(Value::Object(fields)) = serde_json::to_value(spann) else {
        return false;
    };
    fields.iter().all(|(name, value)| {
        if name == "quantize" {
            return value.as_str() == Some("none");
        }
        let default = SPANN_DEFAULTS
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, default)| *default);
        match (value.as_f64(), default) {
            (Some(value), Some(default)) => value == default,
            _ => false,
        }
    })
}
