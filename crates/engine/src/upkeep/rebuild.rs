//! Builds and compactions, which rebuild an index from the records while writes go
//! on; see the documentation of the `upkeep` module.

use std::collections::BTreeSet;
use std::time::Instant;

use api::config::HnswConfiguration;
use index::Space;
use parking_lot::RwLockWriteGuard;
use uuid::Uuid;

use super::{UpkeepReport, UpkeepStep, REBUILD_COPY_RECORDS};
use crate::state::{Record, RecordSet, Records};
use crate::vectors::VectorIndex;
use crate::Engine;

impl Engine {
    /// Builds the collection's index, or compacts it, if it needs that; see the
    /// module documentation.
    pub(super) fn rebuild(
        &self,
        id: Uuid,
        records: &Records,
        hnsw: &HnswConfiguration,
        report: &mut UpkeepReport,
    ) {
        let Some(rebuild) = self.start_rebuild(records) else {
            return;
        };
        let started = Instant::now();
        let mut index = VectorIndex::new(rebuild.dimension, rebuild.space, hnsw);

        // Copy the records in position order, as a build from scratch inserts them.
        // Records in the journal are left for the replay, which would otherwise delete
        // their copy from the new index again.
        let mut next_position = i64::MIN;
        loop {
            let (step, last): (Vec<(i64, Vec<f32>)>, Option<i64>) = {
                let set = records.set.read();
                let journal = set.rebuild_journal.as_ref();
                let range: Vec<(&i64, &Record)> = set
                    .records
                    .range(next_position..)
                    .take(REBUILD_COPY_RECORDS)
                    .collect();
                let last = range.last().map(|(position, _)| **position);
                let step = range
                    .into_iter()
                    .filter(|(position, _)| {
                        journal.is_none_or(|journal| !journal.contains(position))
                    })
                    .map(|(position, record)| (*position, record.embedding.clone()))
                    .collect();
                (step, last)
            };
            let Some(last) = last else {
                break;
            };
            next_position = last + 1;
            for (position, embedding) in step {
                let slot = index.insert_hidden(&embedding);
                index.publish(slot, position);
            }
            self.upkeep_step(UpkeepStep::RebuildCopied { collection: id });
            if records.is_deleted() {
                return;
            }
        }

        // From here on, writers change the new index too, so the journal is complete.
        let journal = {
            let _writer = records.writer.lock();
            if records.is_deleted() {
                return;
            }
            let mut set = records.set.write();
            set.rebuilt = Some(index);
            set.rebuild_journal.take().unwrap_or_default()
        };
        let replayed = journal.len();
        self.upkeep_step(UpkeepStep::RebuildInstalled {
            collection: id,
            pending: replayed,
        });
        // One position per hold of the write lock, so that writers, which wait for it
        // between their steps now that they change the new index too, wait for at
        // most one insert and one removal.
        for position in journal {
            if records.is_deleted() {
                return;
            }
            let mut set = records.set.write();
            replay(&mut set, position);
            RwLockWriteGuard::unlock_fair(set);
        }

        let (old, live, writer_lock_held) = {
            let mut upkeep = records.writer.lock();
            let held_from = Instant::now();
            let mut set = records.set.write();
            let Some(index) = set.rebuilt.take() else {
                return;
            };
            let live = index.len();
            let old = set.vectors.replace(index);
            // A restart from the stored checkpoint would replay the whole build, or
            // nothing of a compaction. Counting the removed slots still makes the
            // compacted index's checkpoint due in time.
            upkeep.note_changes(match (&rebuild.kind, &old) {
                (RebuildKind::Compaction, Some(old)) => old.slots().saturating_sub(live),
                _ => live,
            });
            (old, live, held_from.elapsed())
        };
        let previous_slots = old.as_ref().map_or(0, VectorIndex::slots);
        // Freeing the old index takes a moment, so it happens with no lock held.
        drop(old);

        let message = match rebuild.kind {
            RebuildKind::Build => {
                report.built += 1;
                "built the vector index"
            }
            RebuildKind::Compaction => {
                report.compacted += 1;
                "compacted the vector index"
            }
        };
        tracing::info!(
            collection = %id,
            records = live,
            previous_slots,
            replayed,
            seconds = started.elapsed().as_secs_f64(),
            writer_lock_ms = writer_lock_held.as_secs_f64() * 1e3,
            "{message}"
        );
    }

    /// Decides whether the collection's index needs a build or compaction, and if so
    /// starts the rebuild's journal. Writers publish their changes under the write
    /// lock taken here, so each change is either in the copy or in the journal.
    fn start_rebuild(&self, records: &Records) -> Option<Rebuild> {
        if records.is_deleted() {
            return None;
        }
        let mut set = records.set.write();
        let dimension = set.dimension?;
        let kind = match &set.vectors {
            None if set.needs_index(self.limits.exact_scan_max_vector_bytes) => RebuildKind::Build,
            Some(vectors) if vectors.needs_compaction() => RebuildKind::Compaction,
            _ => return None,
        };
        set.rebuild_journal = Some(BTreeSet::new());
        Some(Rebuild {
            kind,
            dimension,
            space: set.space,
        })
    }
}

/// A build or compaction that [`Engine::start_rebuild`] started.
struct Rebuild {
    kind: RebuildKind,
    dimension: usize,
    space: Space,
}

enum RebuildKind {
    Build,
    Compaction,
}

/// Brings the record at `position` up to date in the index being rebuilt: removes its
/// slot, if any, and inserts its current embedding, if it still has a record.
///
/// NOTE: a record whose embedding changed after the copy took it leaves a deleted slot
/// here, so under steady updates a compacted index starts with some deleted slots and
/// the next compaction comes sooner than after a compaction without writes.
fn replay(set: &mut RecordSet, position: i64) {
    let RecordSet {
        records, rebuilt, ..
    } = set;
    let Some(index) = rebuilt.as_mut() else {
        return;
    };
    if let Some(slot) = index.slot_of(position) {
        index.remove(slot);
    }
    if let Some(record) = records.get(&position) {
        let slot = index.insert_hidden(&record.embedding);
        index.publish(slot, position);
    }
}
