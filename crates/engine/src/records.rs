//! Record operations: add, upsert, update, delete, count, get and query.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::embedding::vector_to_bytes;
use api::error::{collection_not_found, ApiError};
use api::filter::Filter;
use api::metadata::{metadata_to_json, Metadata, MetadataUpdate};
use api::requests::{
    DeleteRecords, GetRecords, Include, IncludeField, QueryRecords, RecordBatch, WriteKind,
};
use api::responses::{GetResponse, QueryResponse, RecordView};
use api::schema::ValueKind;
use parking_lot::RwLock;
use store::{RecordRow, RecordWrite};
use uuid::Uuid;

use crate::state::{Record, RecordSet, Records, Upkeep};
use crate::vectors::VectorIndex;
use crate::{internal, Engine};

/// A change computed under the collection's write lock, applied to memory once the
/// store has committed it.
enum Change {
    Put { position: i64, record: Record },
    Delete { position: i64 },
}

impl Engine {
    fn records_of(&self, tenant: &str, database: &str, id: Uuid) -> Result<Arc<Records>, ApiError> {
        let catalog = self.catalog.read();
        Ok(Arc::clone(
            &catalog.collection_in(tenant, database, id)?.records,
        ))
    }

    /// Returns a collection's records after checking that its schema allows `filter`,
    /// which fails when the filter needs an index the schema disables.
    fn records_for_filter(
        &self,
        tenant: &str,
        database: &str,
        id: Uuid,
        filter: &Filter,
    ) -> Result<Arc<Records>, ApiError> {
        let catalog = self.catalog.read();
        let entry = catalog.collection_in(tenant, database, id)?;
        entry.schema.check_filter(filter)?;
        Ok(Arc::clone(&entry.records))
    }

    /// Writes a batch for add, upsert or update. Returns the number of records
    /// written. On error nothing is written.
    pub fn write(
        &self,
        tenant: &str,
        database: &str,
        id: Uuid,
        kind: WriteKind,
        batch: RecordBatch,
    ) -> Result<usize, ApiError> {
        let records = self.records_of(tenant, database, id)?;
        let (written, stored_kinds) = {
            let mut upkeep = records.writer.lock();
            if records.is_deleted() {
                return Err(collection_not_found(&id.to_string()));
            }
            let (new_dimension, changes) = {
                let set = records.set.read();
                let new_dimension = check_dimension(&set, &batch)?;
                (new_dimension, plan_writes(&set, kind, batch))
            };
            if changes.is_empty() {
                return Ok(0);
            }
            let stored_kinds = metadata_kinds(&changes);
            let written = self.commit(&id, &records, &mut upkeep, new_dimension, changes)?;
            (written, stored_kinds)
        };

        // The records lock is released here, so taking the catalog lock keeps the
        // lock order.
        self.discover_keys(id, &stored_kinds);
        Ok(written)
    }

    /// Records in the collection's schema the metadata keys and value types that a
    /// write stored, as Chroma does. A discovered entry copies the defaults, so it
    /// changes no filter check. If the store fails, the schema stays as it was and the
    /// keys are discovered again from the records at the next start.
    fn discover_keys(&self, id: Uuid, stored_kinds: &[(String, ValueKind)]) {
        {
            let catalog = self.catalog.read();
            let Some(entry) = catalog.collections.get(&id) else {
                return;
            };
            let known = stored_kinds
                .iter()
                .all(|(key, kind)| entry.schema.has_key_kind(key, *kind));
            if known {
                return;
            }
        }

        let mut catalog = self.catalog.write();
        let Some(entry) = catalog.collections.get_mut(&id) else {
            return;
        };
        let mut schema = entry.schema.clone();
        let mut changed = false;
        for (key, kind) in stored_kinds {
            changed |= schema.discover_key(key, *kind);
        }
        if !changed {
            return;
        }
        let previous = std::mem::replace(&mut entry.schema, schema);
        let row = entry.to_row();
        if let Err(error) = self.store.lock().update_collection(&row) {
            tracing::warn!(collection = %id, %error, "failed to store discovered metadata keys in the schema");
            entry.schema = previous;
        }
    }

    /// Deletes records by ids, by filter, or both (records must match both). With
    /// neither, deletes nothing. Returns the number of records removed.
    pub fn delete_records(
        &self,
        tenant: &str,
        database: &str,
        id: Uuid,
        request: DeleteRecords,
    ) -> Result<usize, ApiError> {
        let records = self.records_for_filter(tenant, database, id, &request.filter)?;
        let mut upkeep = records.writer.lock();
        if records.is_deleted() {
            return Err(collection_not_found(&id.to_string()));
        }
        if request.ids.is_none() && request.filter.is_empty() {
            return Ok(0);
        }

        let changes: Vec<Change> = {
            let set = records.set.read();
            matching(&set, request.ids.as_deref(), &request.filter)
                .map(|(position, _)| Change::Delete { position })
                .take(request.limit.unwrap_or(usize::MAX))
                .collect()
        };
        if changes.is_empty() {
            return Ok(0);
        }
        self.commit(&id, &records, &mut upkeep, None, changes)
    }

    /// Stores a batch, then shows it in memory. The caller holds `records.writer`, so
    /// the records do not change under it. Index work runs in short steps under the
    /// write lock: new embeddings get hidden slots first, then one step publishes them
    /// with the records and hides the slots they replace, and the replaced slots are
    /// removed from the graph last.
    fn commit(
        &self,
        id: &Uuid,
        records: &Records,
        upkeep: &mut Upkeep,
        new_dimension: Option<usize>,
        mut changes: Vec<Change>,
    ) -> Result<usize, ApiError> {
        let (writes, mut index_plan) = {
            let set = records.set.read();
            (
                store_writes(&set, &changes),
                IndexPlan::new(&set, &mut changes),
            )
        };

        let stored_dimension = new_dimension.map(|d| d as i64);
        let written = self
            .store
            .lock()
            .write_records(&id.to_string(), stored_dimension, &writes);
        match written {
            Ok(_) => {}
            // The collection was deleted between the lookup and this write.
            Err(store::StoreError::CollectionMissing(_)) => {
                return Err(collection_not_found(&id.to_string()))
            }
            Err(error) => return Err(internal(error)),
        }

        in_steps(&records.set, &index_plan.inserts, |set, &change| {
            if let (Some(vectors), Change::Put { record, .. }) =
                (set.vectors.as_mut(), &mut changes[change])
            {
                record.slot = Some(vectors.insert_hidden(&record.embedding));
            }
        });

        let count = changes.len();
        {
            let mut set = records.set.write();
            if new_dimension.is_some() {
                set.dimension = new_dimension;
            }
            for change in changes {
                match change {
                    Change::Put { position, record } => {
                        if let (Some(vectors), Some(slot)) = (set.vectors.as_mut(), record.slot) {
                            vectors.publish(slot, position);
                        }
                        set.next_position = set.next_position.max(position + 1);
                        set.positions.insert(record.id.clone(), position);
                        set.records.insert(position, record);
                    }
                    Change::Delete { position } => {
                        if let Some(record) = set.records.remove(&position) {
                            set.positions.remove(&record.id);
                            index_plan.removals.extend(record.slot);
                        }
                    }
                }
            }
            if let Some(vectors) = set.vectors.as_mut() {
                for slot in &index_plan.removals {
                    vectors.hide(*slot);
                }
            }
        }

        in_steps(&records.set, &index_plan.removals, |set, &slot| {
            if let Some(vectors) = set.vectors.as_mut() {
                vectors.remove(slot);
            }
        });
        upkeep.note_changes(index_plan.inserts.len() + index_plan.removals.len());
        Ok(count)
    }

    pub fn count(&self, tenant: &str, database: &str, id: Uuid) -> Result<usize, ApiError> {
        let records = self.records_of(tenant, database, id)?;
        let set = records.set.read();
        Ok(set.records.len())
    }

    /// Returns records in insertion order, filtered, then paged by offset and limit.
    pub fn get(
        &self,
        tenant: &str,
        database: &str,
        id: Uuid,
        request: GetRecords,
    ) -> Result<GetResponse, ApiError> {
        let records = self.records_for_filter(tenant, database, id, &request.filter)?;
        let set = records.set.read();
        let views = matching(&set, request.ids.as_deref(), &request.filter)
            .skip(request.offset)
            .take(request.limit.unwrap_or(usize::MAX))
            .map(|(_, record)| view(record, &request.include))
            .collect();
        Ok(GetResponse::new(views, request.include))
    }

    /// Returns the `n_results` records nearest to each query embedding among those that
    /// match the ids and filter, by exact scan.
    pub fn query(
        &self,
        tenant: &str,
        database: &str,
        id: Uuid,
        request: QueryRecords,
    ) -> Result<QueryResponse, ApiError> {
        let ef_search = self
            .catalog
            .read()
            .collection_in(tenant, database, id)?
            .configuration
            .hnsw
            .ef_search;
        let ef_search = usize::try_from(ef_search).unwrap_or(usize::MAX);
        let records = self.records_for_filter(tenant, database, id, &request.filter)?;
        let set = records.set.read();

        if let (Some(dimension), Some(query)) = (set.dimension, request.query_embeddings.first()) {
            if query.len() != dimension {
                return Err(dimension_error(dimension, query.len()));
            }
        }

        // Chroma rejects a query restricted to an id that does not exist, where a get
        // would return nothing for it.
        if let Some(missing) = request
            .ids
            .iter()
            .flatten()
            .find(|id| !set.positions.contains_key(id.as_str()))
        {
            return Err(ApiError::invalid(format!(
                "Error finding id [{}]: it does not exist in the collection",
                api::metadata::printable(missing)
            )));
        }

        let restricted = request.ids.is_some() || !request.filter.is_empty();
        let candidates: Vec<(i64, &Record)> = if restricted {
            matching(&set, request.ids.as_deref(), &request.filter).collect()
        } else {
            Vec::new()
        };
        let candidate_count = if restricted {
            candidates.len()
        } else {
            set.records.len()
        };
        let vector_bytes =
            candidate_count * set.dimension.unwrap_or(0) * std::mem::size_of::<f32>();
        let approximate = set
            .vectors
            .as_ref()
            .filter(|_| vector_bytes > self.limits.exact_scan_max_vector_bytes);

        let deadline = Instant::now() + self.limits.query_timeout;
        let mut results = Vec::with_capacity(request.query_embeddings.len());
        for query in &request.query_embeddings {
            if Instant::now() >= deadline {
                return Err(query_timeout(self.limits.query_timeout));
            }
            let wanted = request.n_results.min(candidate_count);
            if let Some(vectors) = approximate {
                let found = search_index(
                    vectors,
                    query,
                    request.n_results,
                    ef_search,
                    restricted,
                    &candidates,
                );
                // The graph can come up short under a narrow filter or after many
                // deletes. An exact scan then returns the full result.
                if found.len() >= wanted {
                    results.push(
                        found
                            .into_iter()
                            .filter_map(|(position, distance)| {
                                set.records
                                    .get(&position)
                                    .map(|record| (view(record, &request.include), distance))
                            })
                            .collect(),
                    );
                    continue;
                }
            }
            let scanned: Box<dyn Iterator<Item = &Record>> = if restricted {
                Box::new(candidates.iter().map(|(_, record)| *record))
            } else {
                Box::new(set.records.values())
            };
            let nearest = exact_nearest(set.space, query, request.n_results, scanned, deadline)
                .ok_or_else(|| query_timeout(self.limits.query_timeout))?;
            results.push(
                nearest
                    .into_iter()
                    .map(|(record, distance)| (view(record, &request.include), distance))
                    .collect(),
            );
        }
        Ok(QueryResponse::new(results, request.include))
    }
}

/// The maximum time a writer keeps a collection's write lock for one step of index
/// work, and so about the maximum time a query waits for a write.
const WRITE_STEP: Duration = Duration::from_millis(5);

/// Calls `work` on each item, taking the write lock for steps of at most
/// [`WRITE_STEP`] (and at least one item), so queries run between the steps.
fn in_steps<T>(set: &RwLock<RecordSet>, items: &[T], mut work: impl FnMut(&mut RecordSet, &T)) {
    let mut remaining = items.iter().peekable();
    while remaining.peek().is_some() {
        let mut guard = set.write();
        let started = Instant::now();
        for item in remaining.by_ref() {
            work(&mut guard, item);
            if started.elapsed() >= WRITE_STEP {
                break;
            }
        }
    }
}

/// The index work of a batch, decided before the batch is stored.
struct IndexPlan {
    /// Indexes into the batch's changes of the puts whose embedding needs a new slot.
    inserts: Vec<usize>,
    /// Slots whose records the batch replaces or deletes.
    removals: Vec<u32>,
}

impl IndexPlan {
    /// Plans the slots of `changes`, and gives each put that keeps its embedding its
    /// current slot. Without an index there is nothing to do.
    fn new(set: &RecordSet, changes: &mut [Change]) -> IndexPlan {
        let mut plan = IndexPlan {
            inserts: Vec::new(),
            removals: Vec::new(),
        };
        if set.vectors.is_none() {
            return plan;
        }
        for (index, change) in changes.iter_mut().enumerate() {
            let Change::Put { position, record } = change else {
                continue;
            };
            let previous = set.records.get(position);
            let previous_slot = previous.and_then(|old| old.slot);
            if previous.is_some_and(|old| old.embedding == record.embedding) {
                record.slot = previous_slot;
                continue;
            }
            record.slot = None;
            plan.inserts.push(index);
            plan.removals.extend(previous_slot);
        }
        plan
    }
}

/// Returns the store writes of a batch.
fn store_writes(set: &RecordSet, changes: &[Change]) -> Vec<RecordWrite> {
    changes
        .iter()
        .filter_map(|change| match change {
            Change::Put { position, record } => Some(RecordWrite::Put(RecordRow {
                id: record.id.clone(),
                position: *position,
                seq: 0,
                document: record.document.clone(),
                metadata_json: record
                    .metadata
                    .as_ref()
                    .map(|m| metadata_to_json(m).to_string()),
                uri: record.uri.clone(),
                embedding: vector_to_bytes(&record.embedding),
            })),
            Change::Delete { position } => set
                .records
                .get(position)
                .map(|record| RecordWrite::Delete(record.id.clone())),
        })
        .collect()
}

/// Searches the vector index, restricted to `candidates` when the query is filtered.
fn search_index(
    vectors: &VectorIndex,
    query: &[f32],
    k: usize,
    ef_search: usize,
    restricted: bool,
    candidates: &[(i64, &Record)],
) -> Vec<(i64, f32)> {
    let ef = ef_search.max(k);
    if !restricted {
        return vectors.search(query, k, ef, None);
    }
    let allowed: HashSet<i64> = candidates.iter().map(|(position, _)| *position).collect();
    let allow = |position: i64| allowed.contains(&position);
    vectors.search(query, k, ef, Some(&allow))
}

/// Returns the `k` records nearest the query by exact distance, nearest first, or
/// `None` when the scan passes `deadline`.
fn exact_nearest<'a>(
    space: index::Space,
    query: &[f32],
    k: usize,
    records: impl Iterator<Item = &'a Record>,
    deadline: Instant,
) -> Option<Vec<(&'a Record, f32)>> {
    /// Records scored between two looks at the clock.
    const CLOCK_EVERY: usize = 4096;
    let query_inverse_norm = index::inverse_norm(query);
    let mut late = false;
    let scored = records
        .enumerate()
        .take_while(|(scanned, _)| {
            if scanned % CLOCK_EVERY == CLOCK_EVERY - 1 && Instant::now() >= deadline {
                late = true;
            }
            !late
        })
        .map(|(_, record)| {
            let distance = index::distance(
                space,
                query,
                query_inverse_norm,
                &record.embedding,
                record.inverse_norm,
            );
            (record, distance)
        });
    let nearest = index::exact::nearest(k, scored)
        .into_iter()
        .map(|neighbour| (neighbour.handle, neighbour.distance))
        .collect();
    (!late).then_some(nearest)
}

fn query_timeout(limit: Duration) -> ApiError {
    ApiError::new(
        api::error::ErrorKind::RequestTimeout,
        format!(
            "Query exceeded the time limit of {} ms; send fewer query embeddings per request or narrow the filter",
            limit.as_millis()
        ),
    )
}

fn dimension_error(expected: usize, got: usize) -> ApiError {
    ApiError::invalid(format!(
        "Collection expecting embedding with dimension of {expected}, got {got}"
    ))
}

/// Checks the batch's embeddings against the collection's dimension. Returns the
/// dimension to record if this batch is the collection's first.
fn check_dimension(set: &RecordSet, batch: &RecordBatch) -> Result<Option<usize>, ApiError> {
    let Some(first) = batch
        .embeddings
        .as_ref()
        .and_then(|embeddings| embeddings.first())
    else {
        return Ok(None);
    };
    match set.dimension {
        Some(dimension) if dimension != first.len() => Err(dimension_error(dimension, first.len())),
        Some(_) => Ok(None),
        None => Ok(Some(first.len())),
    }
}

/// Computes the changes of an add, upsert or update. Add skips ids that exist, update
/// skips ids that do not, and upsert updates existing ids and inserts the rest.
fn plan_writes(set: &RecordSet, kind: WriteKind, batch: RecordBatch) -> Vec<Change> {
    let RecordBatch {
        ids,
        embeddings,
        documents,
        metadatas,
        uris,
    } = batch;
    let mut embeddings = embeddings.map(Vec::into_iter);
    let mut documents = documents.map(Vec::into_iter);
    let mut metadatas = metadatas.map(Vec::into_iter);
    let mut uris = uris.map(Vec::into_iter);

    let mut changes = Vec::with_capacity(ids.len());
    let mut next_position = set.next_position;
    for id in ids {
        let embedding = embeddings.as_mut().and_then(Iterator::next);
        let document = documents.as_mut().and_then(Iterator::next).flatten();
        let metadata = metadatas.as_mut().and_then(Iterator::next).flatten();
        let uri = uris.as_mut().and_then(Iterator::next).flatten();

        let existing = set.positions.get(&id).copied();
        match (kind, existing) {
            (WriteKind::Add, Some(_)) | (WriteKind::Update, None) => continue,
            (WriteKind::Add | WriteKind::Upsert, None) => {
                // Add and upsert carry embeddings for every row; the decoder checks it.
                let Some(embedding) = embedding else { continue };
                let record = Record {
                    inverse_norm: index::inverse_norm(&embedding),
                    id,
                    embedding,
                    document,
                    metadata: metadata.map(insert_metadata).filter(|m| !m.is_empty()),
                    uri,
                    slot: None,
                };
                changes.push(Change::Put {
                    position: next_position,
                    record,
                });
                next_position += 1;
            }
            (WriteKind::Upsert | WriteKind::Update, Some(position)) => {
                let Some(current) = set.records.get(&position) else {
                    continue;
                };
                let mut record = current.clone();
                if let Some(embedding) = embedding {
                    record.inverse_norm = index::inverse_norm(&embedding);
                    record.embedding = embedding;
                }
                if document.is_some() {
                    record.document = document;
                }
                if uri.is_some() {
                    record.uri = uri;
                }
                if let Some(update) = metadata {
                    record.metadata = merge_metadata(record.metadata.take(), update);
                }
                changes.push(Change::Put { position, record });
            }
        }
    }
    changes
}

/// Returns each distinct metadata key and value type among the records a write stores.
fn metadata_kinds(changes: &[Change]) -> Vec<(String, ValueKind)> {
    let mut kinds = BTreeSet::new();
    for change in changes {
        if let Change::Put {
            record:
                Record {
                    metadata: Some(metadata),
                    ..
                },
            ..
        } = change
        {
            for (key, value) in metadata {
                kinds.insert((key.as_str(), ValueKind::of(value)));
            }
        }
    }
    kinds
        .into_iter()
        .map(|(key, kind)| (key.to_string(), kind))
        .collect()
}

/// Metadata of a new record: keys set to `null` are simply absent.
fn insert_metadata(update: MetadataUpdate) -> Metadata {
    update
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| (key, value)))
        .collect()
}

/// Applies an update to stored metadata: values replace, `null` deletes the key.
fn merge_metadata(current: Option<Metadata>, update: MetadataUpdate) -> Option<Metadata> {
    let mut merged = current.unwrap_or_default();
    for (key, value) in update {
        match value {
            Some(value) => {
                merged.insert(key, value);
            }
            None => {
                merged.remove(&key);
            }
        }
    }
    (!merged.is_empty()).then_some(merged)
}

/// Iterates the records that match `ids` (when given) and the filter, in insertion
/// order.
fn matching<'a>(
    set: &'a RecordSet,
    ids: Option<&'a [String]>,
    filter: &'a Filter,
) -> Box<dyn Iterator<Item = (i64, &'a Record)> + 'a> {
    let passes = move |record: &Record| {
        filter.is_empty() || filter.matches(record.metadata.as_ref(), record.document.as_deref())
    };
    match ids {
        Some(ids) => {
            let mut positions: Vec<i64> = ids
                .iter()
                .filter_map(|id| set.positions.get(id).copied())
                .collect::<HashSet<i64>>()
                .into_iter()
                .collect();
            positions.sort_unstable();
            Box::new(positions.into_iter().filter_map(move |position| {
                set.records
                    .get(&position)
                    .filter(|record| passes(record))
                    .map(|record| (position, record))
            }))
        }
        None => Box::new(
            set.records
                .iter()
                .filter(move |(_, record)| passes(record))
                .map(|(position, record)| (*position, record)),
        ),
    }
}

fn view(record: &Record, include: &Include) -> RecordView {
    RecordView {
        id: record.id.clone(),
        embedding: include
            .contains(IncludeField::Embeddings)
            .then(|| record.embedding.clone()),
        document: include
            .contains(IncludeField::Documents)
            .then(|| record.document.clone())
            .flatten(),
        metadata: include
            .contains(IncludeField::Metadatas)
            .then(|| record.metadata.clone())
            .flatten(),
        uri: include
            .contains(IncludeField::Uris)
            .then(|| record.uri.clone())
            .flatten(),
    }
}
