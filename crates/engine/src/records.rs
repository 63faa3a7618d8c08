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
use parking_lot::{MutexGuard, RwLock};
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

impl Change {
    fn position(&self) -> i64 {
        match self {
            Change::Put { position, .. } | Change::Delete { position } => *position,
        }
    }
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
            let upkeep = records.writer.lock();
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
            let written = self.commit(&id, &records, upkeep, new_dimension, changes)?;
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
        let upkeep = records.writer.lock();
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
        self.commit(&id, &records, upkeep, None, changes)
    }

    /// Stores a batch, then shows it in memory. The caller holds `records.writer`, so
    /// the records do not change under it. Index work runs in short steps under the
    /// write lock, in the index that queries use and in the one that a rebuild is
    /// bringing up to date, if any. New embeddings get hidden slots first. Then one
    /// step publishes them with the records and hides the slots they replace, and the
    /// replaced slots are removed from the graph last.
    ///
    /// It releases the writer lock fairly, to the writer that has waited longest.
    /// Otherwise a writer that arrives as the lock comes free takes it first, and
    /// under a steady stream of writes some wait for many batches in a row.
    fn commit(
        &self,
        id: &Uuid,
        records: &Records,
        mut upkeep: MutexGuard<'_, Upkeep>,
        new_dimension: Option<usize>,
        changes: Vec<Change>,
    ) -> Result<usize, ApiError> {
        let (writes, inserts, live_index, rebuilt_index) = {
            let set = records.set.read();
            (
                store_writes(&set, &changes),
                new_embeddings(&set, &changes),
                set.vectors.is_some(),
                set.rebuilt.is_some(),
            )
        };
        // The positions whose slot changes, for a rebuild of the index in progress.
        let deletes = changes
            .iter()
            .filter(|change| matches!(change, Change::Delete { .. }));
        let touched: Vec<i64> = inserts
            .iter()
            .map(|&index| &changes[index])
            .chain(deletes)
            .map(Change::position)
            .collect();

        let stored_dimension = new_dimension.map(|d| d as i64);
        let written = self
            .store
            .lock()
            .write_records(&id.to_string(), stored_dimension, &writes);
        let seq = match written {
            Ok(seq) => seq,
            // The collection was deleted between the lookup and this write.
            Err(store::StoreError::CollectionMissing(_)) => {
                return Err(collection_not_found(&id.to_string()))
            }
            Err(error) => return Err(internal(error)),
        };

        // Only index upkeep adds or replaces an index, under the writer lock that this
        // write holds, so the indexes present now stay until the write is done.
        let mut new_slots: Vec<(usize, [Option<u32>; 2])> = Vec::with_capacity(inserts.len());
        if live_index || rebuilt_index {
            in_steps(&records.set, &inserts, |set, &change| {
                if let Change::Put { record, .. } = &changes[change] {
                    let slots = set
                        .indexes_mut()
                        .map(|index| index.map(|index| index.insert_hidden(&record.embedding)));
                    new_slots.push((change, slots));
                }
            });
        }

        let count = changes.len();
        let removals = {
            let mut set = records.set.write();
            if new_dimension.is_some() {
                set.dimension = new_dimension;
            }
            if let Some(journal) = set.rebuild_journal.as_mut() {
                journal.extend(touched);
            }
            publish_batch(&mut set, changes, new_slots)
        };

        in_steps(&records.set, &removals, |set, &(which, slot)| {
            if let Some(vectors) = set.indexes_mut().into_iter().nth(which).flatten() {
                vectors.remove(slot);
            }
        });
        upkeep.applied_seq = seq;
        if live_index {
            let live_removals = removals.iter().filter(|(which, _)| *which == 0).count();
            upkeep.note_changes(inserts.len() + live_removals);
        }
        MutexGuard::unlock_fair(upkeep);
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

/// Shows a stored batch in memory: stores its records, publishes the new slots of
/// their embeddings in every index, and hides the slots that they replace or whose
/// records the batch deletes. `new_slots` contains the index of each put in `changes`
/// that got new slots, with its slot in each index of [`RecordSet::indexes_mut`].
/// Returns the hidden slots, each with the number of its index there, for the caller
/// to remove from the graph.
fn publish_batch(
    set: &mut RecordSet,
    changes: Vec<Change>,
    new_slots: Vec<(usize, [Option<u32>; 2])>,
) -> Vec<(usize, u32)> {
    let mut hidden = Vec::new();
    let mut new_slots = new_slots.into_iter().peekable();
    for (index, change) in changes.into_iter().enumerate() {
        match change {
            Change::Put { position, record } => {
                let slots = new_slots
                    .next_if(|(change, _)| *change == index)
                    .map_or([None; 2], |(_, slots)| slots);
                for (which, (vectors, slot)) in set.indexes_mut().into_iter().zip(slots).enumerate()
                {
                    if let (Some(vectors), Some(slot)) = (vectors, slot) {
                        let replaced = vectors.publish(slot, position);
                        hidden.extend(replaced.map(|slot| (which, slot)));
                    }
                }
                set.next_position = set.next_position.max(position + 1);
                set.positions.insert(record.id.clone(), position);
                set.records.insert(position, record);
            }
            Change::Delete { position } => {
                if let Some(record) = set.records.remove(&position) {
                    set.positions.remove(&record.id);
                    for (which, vectors) in set.indexes_mut().into_iter().enumerate() {
                        let removed = vectors.and_then(|vectors| vectors.unpublish(position));
                        hidden.extend(removed.map(|slot| (which, slot)));
                    }
                }
            }
        }
    }
    hidden
}

/// Returns the indexes into `changes` of the puts whose embedding needs a new slot
/// in the index: new records and replaced embeddings, in batch order.
fn new_embeddings(set: &RecordSet, changes: &[Change]) -> Vec<usize> {
    changes
        .iter()
        .enumerate()
        .filter_map(|(index, change)| match change {
            Change::Put { position, record } => {
                let unchanged = set
                    .records
                    .get(position)
                    .is_some_and(|old| old.embedding == record.embedding);
                (!unchanged).then_some(index)
            }
            Change::Delete { .. } => None,
        })
        .collect()
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
