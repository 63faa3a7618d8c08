//! The in-memory catalog and record sets, mirrored from the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use api::config::{CollectionConfiguration, HnswConfiguration};
use api::embedding::vector_from_bytes;
use api::metadata::{decode_metadata_strict, Metadata, MetadataLimits};
use api::schema::{Schema, ValueKind};
use index::Space;
use parking_lot::RwLock;
use store::{Snapshot, Store};
use uuid::Uuid;

use crate::vectors::VectorIndex;
use crate::OpenError;

pub(crate) struct Catalog {
    /// Tenant names in creation order.
    pub tenants: Vec<String>,
    /// Databases by tenant and name.
    pub databases: BTreeMap<(String, String), DatabaseEntry>,
    pub collections: HashMap<Uuid, CollectionEntry>,
}

pub(crate) struct DatabaseEntry {
    pub id: String,
    pub position: usize,
}

pub(crate) struct CollectionEntry {
    pub id: Uuid,
    pub name: String,
    pub tenant: String,
    pub database: String,
    pub database_id: String,
    /// Derived from `schema` by [`Schema::configuration`], so the two always agree.
    pub configuration: CollectionConfiguration,
    pub metadata: Option<Metadata>,
    pub schema: Schema,
    pub position: i64,
    pub records: Arc<RwLock<RecordSet>>,
}

/// The records of one collection, in insertion order.
pub(crate) struct RecordSet {
    /// Set when the collection is deleted, so a writer that raced the delete stops.
    pub deleted: bool,
    pub space: Space,
    /// Fixed by the first embedding written.
    pub dimension: Option<usize>,
    pub records: BTreeMap<i64, Record>,
    pub positions: HashMap<String, i64>,
    pub next_position: i64,
    /// The HNSW index, created with the first embedding.
    pub vectors: Option<VectorIndex>,
    /// The HNSW settings the index is built with.
    pub hnsw: HnswConfiguration,
}

#[derive(Clone)]
pub(crate) struct Record {
    pub id: String,
    pub embedding: Vec<f32>,
    pub inverse_norm: f32,
    pub document: Option<String>,
    pub metadata: Option<Metadata>,
    pub uri: Option<String>,
    /// The record's slot in the collection's vector index.
    pub slot: Option<u32>,
}

impl RecordSet {
    pub fn new(space: Space, dimension: Option<usize>, hnsw: HnswConfiguration) -> RecordSet {
        RecordSet {
            deleted: false,
            space,
            dimension,
            records: BTreeMap::new(),
            positions: HashMap::new(),
            next_position: 1,
            vectors: None,
            hnsw,
        }
    }

    /// Returns the bytes of all the collection's vectors.
    pub fn vector_bytes(&self) -> usize {
        self.records.len() * self.dimension.unwrap_or(0) * std::mem::size_of::<f32>()
    }

    /// Builds the HNSW index from every record, in position order, once the vectors
    /// exceed `exact_scan_max_vector_bytes`. Smaller collections never need it, since
    /// every query on them scans exactly, so their writes skip the insert cost.
    // NOTE: the index is rebuilt from the records at every start, and the write that
    // crosses the threshold builds it in full under the collection's write lock (an
    // estimated third of a millisecond per 384-dimension record with the default
    // settings). Checkpoints in the database are not implemented yet.
    pub fn index_if_large(&mut self, exact_scan_max_vector_bytes: usize) {
        if self.vectors.is_some() || self.vector_bytes() <= exact_scan_max_vector_bytes {
            return;
        }
        let Some(dimension) = self.dimension else {
            return;
        };
        let mut vectors = VectorIndex::new(dimension, self.space, &self.hnsw);
        for (position, record) in self.records.iter_mut() {
            record.slot = Some(vectors.insert(*position, &record.embedding));
        }
        self.vectors = Some(vectors);
    }
}

/// Limits for data read back from the store, which passed validation when written.
/// Unbounded, so lowering a limit never makes stored data unreadable.
fn stored_metadata_limits() -> MetadataLimits {
    MetadataLimits {
        max_keys: usize::MAX,
        max_key_bytes: usize::MAX,
        max_string_bytes: usize::MAX,
        max_array_items: usize::MAX,
    }
}

/// Decodes metadata JSON written by the engine.
pub(crate) fn decode_stored_metadata(json: Option<&str>) -> Result<Option<Metadata>, String> {
    let Some(json) = json else {
        return Ok(None);
    };
    let value: serde_json::Value = serde_json::from_str(json).map_err(|error| error.to_string())?;
    decode_metadata_strict(&value, &stored_metadata_limits(), "stored metadata")
        .map(Some)
        .map_err(|error| error.message)
}

/// Reads a collection's stored schema. Every write since schemas were reconciled stores
/// the configuration derived from the schema, so the two agree. Before that, the schema
/// column held the client's schema unchecked and the configuration held the
/// collection's settings, so a schema that is missing, unreadable or disagrees with the
/// configuration is rebuilt from the configuration.
fn load_schema(id: &Uuid, json: Option<&str>, configuration: &CollectionConfiguration) -> Schema {
    let Some(json) = json else {
        return Schema::from_configuration(configuration);
    };
    let stored = serde_json::from_str::<serde_json::Value>(json)
        .map_err(|error| error.to_string())
        .and_then(|value| Schema::from_stored(&value).map_err(|error| error.message));
    match stored {
        Ok(schema) if agrees(&schema.configuration(), configuration) => schema,
        Ok(_) => {
            tracing::warn!(collection = %id, "stored schema disagrees with the stored configuration; rebuilding it from the configuration");
            Schema::from_configuration(configuration)
        }
        Err(error) => {
            tracing::warn!(collection = %id, %error, "stored schema is unreadable; rebuilding it from the configuration");
            Schema::from_configuration(configuration)
        }
    }
}

/// Compares the settings that decide search results and client behaviour. `num_threads`
/// is left out, because its default depends on the machine.
fn agrees(derived: &CollectionConfiguration, stored: &CollectionConfiguration) -> bool {
    let (left, right) = (&derived.hnsw, &stored.hnsw);
    left.space == right.space
        && left.ef_construction == right.ef_construction
        && left.ef_search == right.ef_search
        && left.max_neighbors == right.max_neighbors
        && left.resize_factor == right.resize_factor
        && left.sync_threshold == right.sync_threshold
        && left.batch_size == right.batch_size
        && derived.embedding_function == stored.embedding_function
}

impl Catalog {
    /// Loads the catalog and every record. Collections whose vectors exceed
    /// `exact_scan_max_vector_bytes` get their HNSW index built.
    pub fn load(
        store: &Store,
        snapshot: Snapshot,
        exact_scan_max_vector_bytes: usize,
    ) -> Result<Catalog, OpenError> {
        let damaged = |what: &str, detail: String| OpenError::Damaged(format!("{what}: {detail}"));

        let tenants = snapshot.tenants.into_iter().map(|row| row.name).collect();
        let mut databases = BTreeMap::new();
        let mut database_names = HashMap::new();
        for (position, row) in snapshot.databases.into_iter().enumerate() {
            database_names.insert(row.id.clone(), (row.tenant.clone(), row.name.clone()));
            databases.insert(
                (row.tenant, row.name),
                DatabaseEntry {
                    id: row.id,
                    position,
                },
            );
        }

        let mut collections = HashMap::new();
        for row in snapshot.collections {
            let id = Uuid::try_parse(&row.id)
                .map_err(|error| damaged("collection id", error.to_string()))?;
            let (tenant, database) = database_names
                .get(&row.database_id)
                .cloned()
                .ok_or_else(|| damaged("collection", format!("{id} has no database")))?;
            let configuration_json: serde_json::Value =
                serde_json::from_str(&row.configuration_json)
                    .map_err(|error| damaged("collection configuration", error.to_string()))?;
            let stored_configuration = CollectionConfiguration::from_stored(&configuration_json)
                .map_err(|error| damaged("collection configuration", error.message))?;
            let metadata = decode_stored_metadata(row.metadata_json.as_deref())
                .map_err(|detail| damaged("collection metadata", detail))?;
            let mut schema = load_schema(&id, row.schema_json.as_deref(), &stored_configuration);
            let configuration = schema.configuration();
            let space = Space::from_name(&configuration.hnsw.space)
                .ok_or_else(|| damaged("collection space", configuration.hnsw.space.clone()))?;
            let dimension = row
                .dimension
                .map(|dimension| usize::try_from(dimension).unwrap_or(0));

            let mut records = RecordSet::new(space, dimension, configuration.hnsw.clone());
            store.for_each_record(&row.id, |record| {
                let embedding = vector_from_bytes(&record.embedding).ok_or_else(|| {
                    store::StoreError::BadValue(format!("embedding of a record in collection {id}"))
                })?;
                let metadata = decode_stored_metadata(record.metadata_json.as_deref())
                    .map_err(store::StoreError::BadValue)?;
                // Writes record their keys in the stored schema after the records
                // commit, so a crash between the two loses keys that this restores.
                for (key, value) in metadata.iter().flatten() {
                    schema.discover_key(key, ValueKind::of(value));
                }
                records.next_position = records.next_position.max(record.position + 1);
                records.positions.insert(record.id.clone(), record.position);
                records.records.insert(
                    record.position,
                    Record {
                        id: record.id,
                        inverse_norm: index::inverse_norm(&embedding),
                        embedding,
                        document: record.document,
                        metadata,
                        uri: record.uri,
                        slot: None,
                    },
                );
                Ok(())
            })?;
            records.index_if_large(exact_scan_max_vector_bytes);
            tracing::debug!(collection = %id, records = records.records.len(), "loaded collection");

            collections.insert(
                id,
                CollectionEntry {
                    id,
                    name: row.name,
                    tenant,
                    database,
                    database_id: row.database_id,
                    configuration,
                    metadata,
                    schema,
                    position: row.position,
                    records: Arc::new(RwLock::new(records)),
                },
            );
        }

        Ok(Catalog {
            tenants,
            databases,
            collections,
        })
    }
}
