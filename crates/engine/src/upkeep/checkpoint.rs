//! Checkpoints of an index, copied and stored while writes go on; see the
//! documentation of the `upkeep` module.

use std::time::Instant;

use store::StoreError;
use uuid::Uuid;

use super::{Pass, UpkeepReport, UpkeepStep, CHECKPOINT_COPY_SLOTS};
use crate::state::Records;
use crate::Engine;

impl Engine {
    /// Stores a checkpoint of the collection's index if one is due; see the module
    /// documentation.
    pub(super) fn checkpoint(
        &self,
        id: Uuid,
        records: &Records,
        pass: Pass,
        report: &mut UpkeepReport,
    ) {
        let (mut checkpoint, seq, changes, taken_at) = {
            let upkeep = records.writer.lock();
            let taken_at = Instant::now();
            if records.is_deleted() {
                return;
            }
            let set = records.set.read();
            let Some(vectors) = set.vectors.as_ref() else {
                return;
            };
            if !upkeep.checkpoint_due(pass, vectors.len()) {
                return;
            }
            (
                vectors.begin_checkpoint(),
                upkeep.applied_seq,
                upkeep.unsaved_changes,
                taken_at,
            )
        };
        let writer_lock_held = taken_at.elapsed();
        self.upkeep_step(UpkeepStep::CheckpointTaken { collection: id });

        let mut written = Ok(());
        while written.is_ok() && !checkpoint.is_complete() {
            let set = records.set.read();
            written = match set.vectors.as_ref() {
                Some(vectors) => checkpoint.write_slots(vectors, CHECKPOINT_COPY_SLOTS),
                None => Err(index::hnsw::CheckpointWriteError::OtherIndex),
            };
        }
        let bytes = match written.and_then(|()| checkpoint.finish()) {
            Ok(bytes) => bytes,
            // Only upkeep replaces the index, one pass at a time, so this is a bug.
            Err(error) => {
                tracing::error!(collection = %id, %error, "cannot write a checkpoint of the vector index");
                report.failed += 1;
                return;
            }
        };

        let started = Instant::now();
        match self.store_checkpoint(id, seq, &bytes) {
            Ok(()) => {
                records.writer.lock().saved(changes, taken_at);
                tracing::info!(
                    collection = %id,
                    seq,
                    bytes = bytes.len(),
                    replay_saved = changes,
                    seconds = started.elapsed().as_secs_f64(),
                    writer_lock_ms = writer_lock_held.as_secs_f64() * 1e3,
                    "stored a checkpoint of the vector index"
                );
                report.checkpointed += 1;
            }
            // Deleted since the pass started; its index went with it.
            Err(StoreError::CollectionMissing(_)) => {}
            Err(error) => {
                tracing::warn!(collection = %id, %error, "cannot store a checkpoint of the vector index; retrying later");
                records.writer.lock().failed_at = Some(Instant::now());
                report.failed += 1;
            }
        }
    }

    /// Stores a checkpoint with the steps of [`store::Store::begin_checkpoint`],
    /// taking the store's lock for one step at a time, so writers of every collection
    /// wait at most one chunk.
    fn store_checkpoint(&self, id: Uuid, seq: i64, bytes: &[u8]) -> Result<(), StoreError> {
        let collection = id.to_string();
        let mut staged = self
            .store
            .lock()
            .begin_checkpoint(&collection, seq, bytes.len())?;
        while !staged.is_complete() {
            self.store
                .lock()
                .write_checkpoint_chunk(&mut staged, bytes)?;
            self.upkeep_step(UpkeepStep::CheckpointChunkStored { collection: id });
        }
        self.store.lock().finish_checkpoint(staged)?;

        // The new checkpoint is in use, so a failure here only leaves old chunks for
        // the next checkpoint to delete.
        loop {
            match self
                .store
                .lock()
                .delete_superseded_checkpoint_chunk(&collection)
            {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(error) => {
                    tracing::warn!(collection = %id, %error, "cannot delete a chunk of the previous checkpoint; the next checkpoint retries");
                    return Ok(());
                }
            }
        }
    }
}
