//! Index upkeep: building, compacting and checkpointing each collection's index.
//!
//! Writers only insert and remove slots. The work that takes seconds runs here instead,
//! one collection at a time, mostly with no lock of the collection held, so its writes
//! and queries go on meanwhile:
//!
//! - A collection whose vectors exceed `exact_scan_max_vector_bytes` and that has no
//!   index gets one built from its records. Its queries scan exactly until then.
//! - An index with enough deleted slots is rebuilt from the records without them.
//! - An index with changes that its stored checkpoint lacks is written to the store.
//!   That happens once the changed slots reach [`CHECKPOINT_CHANGES`] or one
//!   [`CHECKPOINT_FRACTION`]th of the index, whichever is more, or
//!   [`CHECKPOINT_INTERVAL`] after the first change, and in the final pass at
//!   shutdown. A restart after a crash replays at most that many changes, or what
//!   arrived within the interval.
//!
//! A build or compaction is one rebuild. It starts a journal under the writer lock,
//! copies the records in steps of [`REBUILD_COPY_RECORDS`] under the records' read
//! lock, and inserts each step into a new index with no lock held. Meanwhile every
//! writer adds to the journal the positions whose embedding it added, replaced or
//! deleted. The rebuild then takes the writer lock for a moment to end the journal and
//! put the new index next to the old one, where writers change both from then on. It
//! replays the journal onto the new index one position per hold of the records' write
//! lock, and swaps the new index in under the writer lock. Writes during a
//! rebuild therefore wait for it for one such step at most, but those after the copy
//! pay for their index work twice.
//!
//! A checkpoint copies, under the writer lock, the slot positions and what writers
//! change in the graph (neighbour lists, deleted flags, entry point), together with
//! the sequence number of the last write that memory shows. That copy takes about 150
//! bytes per slot with M = 16, so the hold grows with the index, but slowly: a few
//! milliseconds per 100,000 slots. The vectors of existing slots never change, so it
//! copies them afterwards in steps of [`CHECKPOINT_COPY_SLOTS`] under the read lock,
//! and the checkpoint contains exactly the writes up to its sequence number. The store
//! writes it one chunk per transaction, next to the previous checkpoint, and switches
//! to it in a last short transaction.
//!
//! [`UpkeepWorker`] runs [`Engine::maintain`] on a background thread.

mod checkpoint;
mod rebuild;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use api::config::HnswConfiguration;
use parking_lot::{Condvar, Mutex};
use uuid::Uuid;

use crate::state::Records;
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

/// Records a rebuild copies per hold of the records' read lock: at most 6 MiB of
/// embeddings at 1,536 dimensions.
pub const REBUILD_COPY_RECORDS: usize = 1024;

/// Slots whose vectors a checkpoint copies per hold of the records' read lock: 6 MiB
/// at 384 dimensions.
pub const CHECKPOINT_COPY_SLOTS: usize = 4096;

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

/// A point in a pass of index upkeep at which it calls the hook of
/// [`Engine::set_upkeep_hook`]. Upkeep holds no lock of the collection there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpkeepStep {
    /// A rebuild copied a step of the records into the new index.
    RebuildCopied { collection: Uuid },
    /// A rebuild put the new index next to the old one, for writers to keep up to
    /// date, and has yet to replay the `pending` positions that writers changed while
    /// it copied.
    RebuildInstalled { collection: Uuid, pending: usize },
    /// A checkpoint took its copy of the graph and has yet to copy the vectors.
    CheckpointTaken { collection: Uuid },
    /// A checkpoint stored a chunk.
    CheckpointChunkStored { collection: Uuid },
}

/// A function that [`Engine::set_upkeep_hook`] installs.
pub type UpkeepHook = Arc<dyn Fn(UpkeepStep) + Send + Sync>;

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

    /// Checks that a collection's index agrees exactly with its records: one live slot
    /// per record, holding the record's embedding, and no other. A collection without
    /// an index passes. The check holds the collection's writer lock and reads every
    /// record, so it is for tests and diagnostics.
    pub fn verify_index(&self, tenant: &str, database: &str, id: Uuid) -> Result<(), String> {
        let records = Arc::clone(
            &self
                .catalog
                .read()
                .collection_in(tenant, database, id)
                .map_err(|error| error.message)?
                .records,
        );
        let _writer = records.writer.lock();
        let set = records.set.read();
        match &set.vectors {
            Some(vectors) => vectors.verify(&set.records),
            None => Ok(()),
        }
    }

    /// Builds, compacts and checkpoints the indexes that need it, one collection at a
    /// time. The server calls it through [`UpkeepWorker`]. Passes run one at a time.
    pub fn maintain(&self, pass: Pass) -> UpkeepReport {
        let _pass = self.upkeep_pass.lock();
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
            self.rebuild(id, &records, &hnsw, &mut report);
            self.checkpoint(id, &records, pass, &mut report);
        }
        report
    }

    /// Installs a function that index upkeep calls at each [`UpkeepStep`], or removes
    /// it. Tests use it to hold upkeep at a known point while they write. It slows
    /// upkeep down by as long as the function takes.
    pub fn set_upkeep_hook(&self, hook: Option<UpkeepHook>) {
        *self.upkeep_hook.write() = hook;
    }

    fn upkeep_step(&self, step: UpkeepStep) {
        let hook = self.upkeep_hook.read().clone();
        if let Some(hook) = hook {
            hook(step);
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
