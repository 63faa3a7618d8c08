//! Index upkeep: building, compacting and checkpointing each collection's index.
//!
//! Writers only insert and remove slots. The work that takes seconds runs here instead,
//! one collection at a time, holding that collection's writer lock, so its writes wait
//! and its queries do not:
//!
//! - A collection whose vectors exceed `exact_scan_max_vector_bytes` and that has no
//!   index gets one built from its records. Its queries scan exactly until then.
//! - An index with enough deleted slots is rebuilt without them.
//! - An index with changes that its stored checkpoint lacks is written to the store.
//!   That happens once the changed slots reach [`CHECKPOINT_CHANGES`] or one
//!   [`CHECKPOINT_FRACTION`]th of the index, whichever is more, or
//!   [`CHECKPOINT_INTERVAL`] after the first change, and in the final pass at
//!   shutdown. A restart after a crash replays at most that many changes, or what
//!   arrived within the interval.
//!
//! [`UpkeepWorker`] runs [`Engine::maintain`] on a background thread.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use api::config::HnswConfiguration;
use parking_lot::{Condvar, Mutex};
use uuid::Uuid;

use crate::state::Records;
use crate::vectors::VectorIndex;
use crate::Engine;

/// Slot changes after which a checkpoint is due in a small index. Replaying this many
/// inserts at startup takes about a second at 384 dimensions with the default
/// settings.
pub const CHECKPOINT_CHANGES: usize = 4096;

/// In a large index, a checkpoint is due once this fraction (one over the value) of
/// its slots changed. Every checkpoint writes the whole index, so a fixed count would
/// make a bulk load write the index over and over. With a quarter, a bulk load writes
/// about four times the final index in all, and a crash replays at most a quarter.
pub const CHECKPOINT_FRACTION: usize = 4;

/// The maximum time an index change waits for a checkpoint.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);

/// The kind of pass, which decides the checkpoints it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Those that are due.
    Regular,
    /// Every index with unsaved changes, as at shutdown.
    Final,
}

/// The work a pass of [`Engine::maintain`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpkeepReport {
    pub built: usize,
    pub compacted: usize,
    pub checkpointed: usize,
    /// Checkpoints that failed to store; the error is logged.
    pub failed: usize,
}

/// A collection's vector index, as [`Engine::index_info`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexInfo {
    /// Slots that searches can return.
    pub live: usize,
    /// Slots in the graph, deleted ones included.
    pub slots: usize,
}

impl Engine {
    /// Describes a collection's vector index, or returns `None` while it has none.
    pub fn index_info(
        &self,
        tenant: &str,
        database: &str,
        id: Uuid,
    ) -> Result<Option<IndexInfo>, api::error::ApiError> {
        let records = Arc::clone(
            &self
                .catalog
                .read()
                .collection_in(tenant, database, id)?
                .records,
        );
        let set = records.set.read();
        Ok(set.vectors.as_ref().map(|vectors| IndexInfo {
            live: vectors.len(),
            slots: vectors.slots(),
        }))
    }

    /// Builds, compacts and checkpoints the indexes that need it, one collection at a
    /// time. The server calls it through [`UpkeepWorker`].
    pub fn maintain(&self, pass: Pass) -> UpkeepReport {
        let collections: Vec<(Uuid, Arc<Records>, HnswConfiguration)> = self
            .catalog
            .read()
            .collections
            .values()
            .map(|entry| {
                let hnsw = entry.configuration.hnsw.clone();
                (entry.id, Arc::clone(&entry.records), hnsw)
            })
            .collect();
        let mut report = UpkeepReport::default();
        for (id, records, hnsw) in collections {
            self.maintain_collection(id, &records, &hnsw, pass, &mut report);
        }
        report
    }

    fn maintain_collection(
        &self,
        id: Uuid,
        records: &Records,
        hnsw: &HnswConfiguration,
        pass: Pass,
        report: &mut UpkeepReport,
    ) {
        let mut upkeep = records.writer.lock();
        if records.is_deleted() {
            return;
        }

        let built = {
            let set = records.set.read();
            match set.dimension {
                Some(dimension) if set.needs_index(self.limits.exact_scan_max_vector_bytes) => {
                    let started = Instant::now();
                    let (index, slots) = VectorIndex::build(
                        dimension,
                        set.space,
                        hnsw,
                        set.records
                            .iter()
                            .map(|(position, record)| (*position, record.embedding.as_slice())),
                    );
                    Some((index, slots, started.elapsed()))
                }
                _ => None,
            }
        };
        if let Some((index, slots, took)) = built {
            let mut set = records.set.write();
            for (position, slot) in slots {
                if let Some(record) = set.records.get_mut(&position) {
                    record.slot = Some(slot);
                }
            }
            tracing::info!(
                collection = %id,
                records = index.len(),
                seconds = took.as_secs_f64(),
                "built the vector index"
            );
            upkeep.note_changes(index.len());
            set.vectors = Some(index);
            report.built += 1;
        }

        // NOTE: a build or compaction holds the collection's writer lock for as long
        // as inserting every live record takes (about 20 s for 100,000 records of 384
        // dimensions on one core), so the collection's writes wait that long. Building
        // from a copy and replaying the writes made meanwhile would remove the wait.
        let compacted = {
            let set = records.set.read();
            set.vectors
                .as_ref()
                .filter(|vectors| vectors.needs_compaction())
                .map(|vectors| (vectors.slots(), vectors.compacted()))
        };
        if let Some((old_slots, (index, mapping))) = compacted {
            let mut set = records.set.write();
            VectorIndex::renumber(&mut set.records, &mapping);
            tracing::info!(
                collection = %id,
                removed = old_slots - index.slots(),
                slots = index.slots(),
                "compacted the vector index"
            );
            upkeep.note_changes(old_slots - index.slots());
            set.vectors = Some(index);
            report.compacted += 1;
        }

        let live = records
            .set
            .read()
            .vectors
            .as_ref()
            .map_or(0, VectorIndex::len);
        if !upkeep.checkpoint_due(pass, live) {
            return;
        }
        let snapshot = {
            let set = records.set.read();
            let Some(vectors) = set.vectors.as_ref() else {
                return;
            };
            // The writer lock is held, so every write to this collection up to the
            // store's last sequence number is in memory.
            self.store
                .lock()
                .last_seq()
                .map(|seq| (seq, vectors.checkpoint()))
        };
        let stored = snapshot.and_then(|(seq, bytes)| {
            let started = Instant::now();
            self.store
                .lock()
                .write_checkpoint(&id.to_string(), seq, &bytes)
                .map(|_| (seq, bytes.len(), started.elapsed()))
        });
        match stored {
            Ok((seq, bytes, took)) => {
                tracing::info!(
                    collection = %id,
                    seq,
                    bytes,
                    replay_saved = upkeep.unsaved_changes,
                    seconds = took.as_secs_f64(),
                    "stored a checkpoint of the vector index"
                );
                upkeep.saved();
                report.checkpointed += 1;
            }
            // Deleted since the pass started; its index went with it.
            Err(store::StoreError::CollectionMissing(_)) => {}
            Err(error) => {
                tracing::warn!(collection = %id, %error, "cannot store a checkpoint of the vector index; retrying later");
                upkeep.failed_at = Some(Instant::now());
                report.failed += 1;
            }
        }
    }
}

/// A background thread that runs [`Engine::maintain`] every `period`, and a final
/// pass when stopped.
pub struct UpkeepWorker {
    engine: Arc<Engine>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl UpkeepWorker {
    pub fn start(engine: Arc<Engine>, period: Duration) -> std::io::Result<UpkeepWorker> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let engine = Arc::clone(&engine);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("index-upkeep".into())
                .spawn(move || loop {
                    {
                        let (stopped, wake) = &*stop;
                        let mut stopped = stopped.lock();
                        if !*stopped {
                            wake.wait_for(&mut stopped, period);
                        }
                        if *stopped {
                            return;
                        }
                    }
                    engine.maintain(Pass::Regular);
                })?
        };
        Ok(UpkeepWorker {
            engine,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread after its current pass, then checkpoints every index with
    /// unsaved changes, so the next start replays nothing.
    pub fn stop(mut self) -> UpkeepReport {
        self.halt();
        self.engine.maintain(Pass::Final)
    }

    fn halt(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock() = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the index upkeep thread panicked");
            }
        }
    }
}

impl Drop for UpkeepWorker {
    fn drop(&mut self) {
        self.halt();
    }
}
