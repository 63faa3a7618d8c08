//! The in-memory catalog and record sets, mirrored from the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use api::config::CollectionConfiguration;
use api::embedding::vector_from_bytes;
use api::metadata::{decode_metadata_strict, Metadata, MetadataLimits};
use api::schema::{Schema, ValueKind};
use index::Space;
use parking_lot::{Mutex, RwLock};
use store::{Snapshot, Store};
use uuid::Uuid;

use crate::upkeep::{Pass, CHECKPOINT_CHANGES, CHECKPOINT_FRACTION, CHECKPOINT_INTERVAL};
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
    pub records: Arc<Records>,
}

/// A collection's records and the lock that orders its writers.
///
/// Lock order: the catalog, then `writer`, then `set`, then the store. A writer holds
/// `writer` for its whole batch and takes `set` for writing only in short steps, so
/// queries, which take `set` for reading, wait at most one step.
pub(crate) struct Records {
    /// Held by a writer from planning its batch until memory shows it, so writers
    /// never interleave. Index upkeep takes it only for short steps that need no
    /// write in progress.
    pub writer: Mutex<Upkeep>,
    pub set: RwLock<RecordSet>,
    /// Set when the collection is deleted, so a writer that raced the delete stops.
    deleted: AtomicBool,
}

impl Records {
    pub fn new(set: RecordSet, upkeep: Upkeep) -> Arc<Records> {
        Arc::new(Records {
            writer: Mutex::new(upkeep),
            set: RwLock::new(set),
            deleted: AtomicBool::new(false),
        })
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }
}

/// The state of a collection's index relative to its stored checkpoint.
#[derive(Default)]
pub(crate) struct Upkeep {
    /// Slots inserted or removed since the stored checkpoint was taken, which a
    /// restart would replay.
    pub unsaved_changes: usize,
    /// When the first of those changes happened.
    pub unsaved_since: Option<Instant>,
    /// When storing a checkpoint last failed; the next try waits
    /// [`CHECKPOINT_INTERVAL`].
    pub failed_at: Option<Instant>,
    /// The store's sequence number of the last write to the collection that memory
    /// shows. While the writer lock is held, no write is half applied, so the index
    /// contains exactly the writes up to this one.
    pub applied_seq: i64,
}

impl Upkeep {
    pub fn new(applied_seq: i64) -> Upkeep {
        Upkeep {
            applied_seq,
            ..Upkeep::default()
        }
    }

    pub fn note_changes(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        self.unsaved_changes = self.unsaved_changes.saturating_add(count);
        self.unsaved_since.get_or_insert_with(Instant::now);
    }

    /// Records that a checkpoint taken at `taken_at`, when `changes` changes were
    /// unsaved, is stored. Changes made after it stay unsaved.
    pub fn saved(&mut self, changes: usize, taken_at: Instant) {
        self.unsaved_changes = self.unsaved_changes.saturating_sub(changes);
        self.unsaved_since = (self.unsaved_changes > 0).then_some(taken_at);
        self.failed_at = None;
    }

    /// Whether a pass should store a checkpoint of an index with `live` slots now.
    pub fn checkpoint_due(&self, pass: Pass, live: usize) -> bool {
        if self.unsaved_changes == 0 {
            return false;
        }
        let waited = |since: Option<Instant>| {
            since.is_some_and(|since| since.elapsed() >= CHECKPOINT_INTERVAL)
        };
        if pass == Pass::Final {
            return true;
        }
        if self.failed_at.is_some() && !waited(self.failed_at) {
            return false;
        }
        let enough = CHECKPOINT_CHANGES.max(live / CHECKPOINT_FRACTION);
        self.unsaved_changes >= enough || waited(self.unsaved_since)
    }
}

/// The records of one collection, in insertion order.
pub(crate) struct RecordSet {
    pub space: Space,
    /// Fixed by the first embedding written.
    pub dimension: Option<usize>,
    pub records: BTreeMap<i64, Record>,
    pub positions: HashMap<String, i64>,
    pub next_position: i64,
    /// The HNSW index, built by index upkeep once the vectors exceed
    /// `exact_scan_max_vector_bytes`.
    pub vectors: Option<VectorIndex>,
    /// While a build or compaction copies the records: the positions of the records
    /// whose embedding writers added, replaced or deleted since it began, which it
    /// replays onto the new index afterwards.
    pub rebuild_journal: Option<BTreeSet<i64>>,
    /// The index that a build or compaction is bringing up to date before it replaces
    /// `vectors`. Writers change it as they change `vectors`, and queries never read it.
    pub rebuilt: Option<VectorIndex>,
}

#[derive(Clone)]
pub(crate) struct Record {
    pub id: String,
    pub embedding: Vec<f32>,
    pub inverse_norm: f32,
    pub document: Option<String>,
    pub metadata: Option<Metadata>,
    pub uri: Option<String>,
}

impl RecordSet {
    pub fn new(space: Space, dimension: Option<usize>) -> RecordSet {
        RecordSet {
            space,
            dimension,
            records: BTreeMap::new(),
            positions: HashMap::new(),
            next_position: 1,
            vectors: None,
            rebuild_journal: None,
            rebuilt: None,
        }
    }

    /// Returns the bytes of all the collection's vectors.
    pub fn vector_bytes(&self) -> usize {
        self.records.len() * self.dimension.unwrap_or(0) * std::mem::size_of::<f32>()
    }

    /// Returns the indexes that writers keep up to date: `vectors`, then `rebuilt`.
    pub fn indexes_mut(&mut self) -> [Option<&mut VectorIndex>; 2] {
        [self.vectors.as_mut(), self.rebuilt.as_mut()]
    }

    /// Returns whether the collection is large enough for an index and has none yet.
    pub fn needs_index(&self, exact_scan_max_vector_bytes: usize) -> bool {
        self.vectors.is_none()
            && self.dimension.is_some()
            && self.vector_bytes() > exact_scan_max_vector_bytes
    }

    /// Makes `index` the collection's index and brings it up to date. The index comes
    /// from a checkpoint that contains every record write up to `covered_seq`, and
    /// `seqs` maps each record to its last write. Slots whose record is gone or was
    /// written after the checkpoint are removed, and records written after it are
    /// inserted. Returns the number of slots changed, or why the checkpoint does not
    /// fit the records.
    pub fn attach_checkpoint(
        &mut self,
        mut index: VectorIndex,
        covered_seq: i64,
        seqs: &HashMap<i64, i64>,
    ) -> Result<usize, String> {
        if Some(index.dimension()) != self.dimension || index.space() != self.space {
            return Err(format!(
                "it holds {}-dimension {} vectors and the collection {} {} vectors",
                index.dimension(),
                index.space().name(),
                self.dimension.map_or("no".to_string(), |dimension| format!(
                    "{dimension}-dimension"
                )),
                self.space.name(),
            ));
        }
        let stale: Vec<u32> = index
            .live_slots()
            .filter(|(_, position)| seqs.get(position).is_none_or(|seq| *seq > covered_seq))
            .map(|(slot, _)| slot)
            .collect();
        for slot in &stale {
            index.remove(*slot);
        }
        let mut changes = stale.len();
        for (position, record) in &self.records {
            if index.slot_of(*position).is_none() {
                let slot = index.insert_hidden(&record.embedding);
                index.publish(slot, *position);
                changes += 1;
            }
        }
        self.vectors = Some(index);
        Ok(changes)
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
    /// Loads the catalog and every record, and each collection's index from its
    /// checkpoint. A large collection whose checkpoint is missing or damaged is left
    /// without an index, for index upkeep to build. Its queries scan exactly until
    /// then.
    pub fn load(
        store: &Store,
        snapshot: Snapshot,
        exact_scan_max_vector_bytes: usize,
    ) -> Result<Catalog, OpenError> {
        let damaged = |what: &str, detail: String| OpenError::Damaged(format!("{what}: {detail}"));

        let last_seq = snapshot.last_seq;
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

            let mut records = RecordSet::new(space, dimension);
            let mut seqs = HashMap::new();
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
                seqs.insert(record.position, record.seq);
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
                    },
                );
                Ok(())
            })?;
            // Every write up to the store's last sequence number is in memory now.
            let mut upkeep = Upkeep::new(last_seq);
            upkeep.note_changes(load_index(
                store,
                &id,
                &mut records,
                &seqs,
                exact_scan_max_vector_bytes,
            ));
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
                    records: Records::new(records, upkeep),
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

/// Loads a collection's index from its checkpoint and replays the writes after it.
/// Returns the number of slots the replay changed. Logs why a large collection has no
/// index after this.
fn load_index(
    store: &Store,
    id: &Uuid,
    records: &mut RecordSet,
    seqs: &HashMap<i64, i64>,
    exact_scan_max_vector_bytes: usize,
) -> usize {
    let problem = match store.read_checkpoint(&id.to_string()) {
        Ok(Some(checkpoint)) => {
            let started = Instant::now();
            let attached = VectorIndex::restore(&checkpoint.bytes)
                .and_then(|index| records.attach_checkpoint(index, checkpoint.seq, seqs));
            match attached {
                Ok(replayed) => {
                    tracing::info!(
                        collection = %id,
                        records = records.records.len(),
                        replayed,
                        milliseconds = started.elapsed().as_millis() as u64,
                        "loaded the vector index from its checkpoint"
                    );
                    return replayed;
                }
                Err(problem) => format!("its checkpoint is damaged ({problem})"),
            }
        }
        Ok(None) => "it has no checkpoint".to_string(),
        Err(error) => format!("its checkpoint cannot be read ({error})"),
    };
    if records.needs_index(exact_scan_max_vector_bytes) {
        tracing::warn!(
            collection = %id,
            records = records.records.len(),
            "rebuilding the vector index from the records, because {problem}; queries scan exactly until it is built"
        );
    } else {
        tracing::debug!(collection = %id, "no vector index loaded, because {problem}");
    }
    0
}
