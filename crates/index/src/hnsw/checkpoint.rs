//! Checkpoints: the whole index as bytes, so its owner can store the graph and load it
//! at startup instead of rebuilding it from the vectors.
//!
//! [`Hnsw::checkpoint`] writes the parts that inserts produced: the parameters, the
//! state of the level-assignment generator, and per slot the deleted flag, level,
//! stored vector and neighbour lists. [`Hnsw::restore`] validates every field and
//! rebuilds the rest (int8 codes, kernels, search buffers). A restored index returns
//! the same search results as the original, and further inserts build the same graph,
//! because the generator continues from the saved state.
//!
//! An owner that must not block the index's writers for the whole serialisation
//! takes a [`CheckpointSnapshot`] instead, which copies only what inserts and removals
//! change, and writes the vectors with a [`CheckpointWriter`] in steps afterwards.
//! [`Hnsw::checkpoint`] is the same in one step.
//!
//! # Byte layout, version 1
//!
//! All integers are little-endian. `usize` values are written as u64.
//!
//! | Field            | Type                 | Meaning                                        |
//! |------------------|----------------------|------------------------------------------------|
//! | magic            | 8 bytes              | `RAVHNSW` followed by a zero byte              |
//! | version          | u32                  | format version, 1                              |
//! | dimension        | u64                  | vector dimension                               |
//! | space            | u8                   | 0 = `l2`, 1 = `ip`, 2 = `cosine`               |
//! | max_neighbors    | u64                  | M, from 2 to [`MAX_NEIGHBORS`]                 |
//! | ef_construction  | u64                  | at least 1                                     |
//! | seed             | u64                  | [`HnswParams::seed`]                           |
//! | rng_state        | u64                  | state of the level-assignment generator        |
//! | slot_count       | u64                  | number of slots, deleted ones included         |
//! | slots            | slot_count records   | see below                                      |
//! | has_entry        | u8                   | 1 if the index has an entry point, else 0      |
//! | entry            | u32                  | entry-point slot, 0 without an entry point     |
//! | max_level        | u8                   | level of the entry point, 0 without one        |
//! | checksum         | u64                  | 64-bit FNV-1a of every preceding byte          |
//!
//! Each slot record:
//!
//! | Field            | Type                 | Meaning                                        |
//! |------------------|----------------------|------------------------------------------------|
//! | deleted          | u8                   | 1 if the slot is deleted, else 0               |
//! | level            | u8                   | top level of the slot, at most 32              |
//! | vector           | dimension × f32      | the vector as stored (normalised for cosine)   |
//! | lists            | level + 1 lists      | levels 0 to `level`, in that order             |
//!
//! Each list is a u32 count followed by that many u32 neighbour slots. A level-0 list
//! contains at most `2 × M` neighbours and an upper-level list at most `M`.
//!
//! [`Hnsw::restore`] rejects any input that does not follow this layout. It also
//! rejects a neighbour slot at or past `slot_count`, a neighbour on level `l` whose own
//! level is below `l`, a live slot whose level is above `max_level`, an entry point
//! whose level is not `max_level`, a missing entry point in a non-empty index, and
//! bytes left over before the checksum. A deleted slot may be above `max_level`,
//! because removing the entry point moves it to the highest live slot, which can be on
//! a lower level.

use std::fmt;

use super::graph::Graph;
use super::insert::MAX_LEVEL;
use super::{Hnsw, HnswParams, SplitMix64};
use crate::Space;

/// The first eight bytes of every checkpoint.
const MAGIC: [u8; 8] = *b"RAVHNSW\0";

/// The format version that [`Hnsw::checkpoint`] writes and [`Hnsw::restore`] reads.
pub const FORMAT_VERSION: u32 = 1;

/// The largest M that [`Hnsw::restore`] accepts. A slot's lists take `4 × (2M + 1)`
/// bytes on level 0 and `4 × (M + 1)` per upper level, however few neighbours the
/// checkpoint stores, so this limit caps the memory a few input bytes can allocate.
///
/// [`Hnsw::new`] clamps M to this value, so every index it builds can be restored.
pub const MAX_NEIGHBORS: usize = 1024;

/// Size of the trailing checksum.
const CHECKSUM_BYTES: usize = 8;

/// Why [`Hnsw::restore`] rejected a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The input does not start with the checkpoint magic.
    BadMagic,
    /// The format version is not one this build reads.
    UnsupportedVersion(u32),
    /// The input ends inside `field`, which starts at byte `offset`.
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// The trailing checksum does not match the bytes before it.
    ChecksumMismatch { stored: u64, computed: u64 },
    /// A header or slot field contains a value outside its range.
    InvalidField {
        field: &'static str,
        value: u64,
        expected: &'static str,
    },
    /// The slot count needs more bytes than the input has left.
    SlotCountExceedsInput {
        slot_count: u64,
        minimum_bytes: u128,
        available: usize,
    },
    /// A neighbour list contains more neighbours than its level allows.
    ListOverCapacity {
        slot: u32,
        level: usize,
        count: u32,
        capacity: usize,
    },
    /// A neighbour list names a slot that does not exist.
    NeighbourOutOfRange {
        slot: u32,
        level: usize,
        neighbour: u32,
        slot_count: usize,
    },
    /// A neighbour on `level` has a lower top level, so it has no list there.
    NeighbourBelowLevel {
        slot: u32,
        level: usize,
        neighbour: u32,
        neighbour_level: usize,
    },
    /// A live slot's level is above the index's maximum level.
    LevelAboveMax {
        slot: u32,
        level: usize,
        max_level: usize,
    },
    /// The entry point is missing, out of range or not on the maximum level.
    InvalidEntryPoint { reason: String },
    /// Bytes remain between the last field and the checksum.
    TrailingBytes { offset: usize, count: usize },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::BadMagic => {
                write!(
                    formatter,
                    "not an HNSW checkpoint: the magic bytes are invalid"
                )
            }
            CheckpointError::UnsupportedVersion(version) => write!(
                formatter,
                "unsupported checkpoint version {version}; this build reads version \
                 {FORMAT_VERSION}"
            ),
            CheckpointError::Truncated {
                field,
                offset,
                needed,
                available,
            } => write!(
                formatter,
                "checkpoint truncated at byte {offset}: {field} needs {needed} bytes but \
                 {available} remain"
            ),
            CheckpointError::ChecksumMismatch { stored, computed } => write!(
                formatter,
                "checkpoint checksum mismatch: stored {stored:#018x}, computed \
                 {computed:#018x}"
            ),
            CheckpointError::InvalidField {
                field,
                value,
                expected,
            } => write!(
                formatter,
                "invalid checkpoint field {field}: {value}, expected {expected}"
            ),
            CheckpointError::SlotCountExceedsInput {
                slot_count,
                minimum_bytes,
                available,
            } => write!(
                formatter,
                "checkpoint declares {slot_count} slots, which need at least \
                 {minimum_bytes} bytes, but {available} remain"
            ),
            CheckpointError::ListOverCapacity {
                slot,
                level,
                count,
                capacity,
            } => write!(
                formatter,
                "neighbour list of slot {slot} on level {level} is over capacity: \
                 {count} neighbours, capacity {capacity}"
            ),
            CheckpointError::NeighbourOutOfRange {
                slot,
                level,
                neighbour,
                slot_count,
            } => write!(
                formatter,
                "neighbour {neighbour} of slot {slot} on level {level} is out of range: \
                 the checkpoint has {slot_count} slots"
            ),
            CheckpointError::NeighbourBelowLevel {
                slot,
                level,
                neighbour,
                neighbour_level,
            } => write!(
                formatter,
                "neighbour {neighbour} of slot {slot} on level {level} has top level \
                 {neighbour_level}, below the list's level"
            ),
            CheckpointError::LevelAboveMax {
                slot,
                level,
                max_level,
            } => write!(
                formatter,
                "slot {slot} has level {level}, above the maximum level {max_level}"
            ),
            CheckpointError::InvalidEntryPoint { reason } => {
                write!(formatter, "invalid checkpoint entry point: {reason}")
            }
            CheckpointError::TrailingBytes { offset, count } => write!(
                formatter,
                "checkpoint has {count} unexpected bytes at byte {offset} before the \
                 checksum"
            ),
        }
    }
}

impl std::error::Error for CheckpointError {}

/// The parts of an index that inserts and removals change (deleted flags, levels,
/// neighbour lists, entry point and generator state), copied at one moment by
/// [`Hnsw::snapshot`].
///
/// A slot's vector never changes once inserted. A [`CheckpointWriter`] therefore reads
/// the vectors from the live index later, in as many short steps as its owner likes,
/// and the checkpoint still shows the index exactly as it was at the snapshot. Slots
/// inserted after the snapshot are not in it.
pub struct CheckpointSnapshot {
    index_id: u64,
    dimension: usize,
    space: Space,
    params: HnswParams,
    rng_state: u64,
    deleted: Vec<bool>,
    graph: Graph,
}

impl CheckpointSnapshot {
    /// Returns the number of slots in the snapshot, deleted ones included.
    pub fn slots(&self) -> usize {
        self.graph.slots()
    }
}

/// A checkpoint being written from a [`CheckpointSnapshot`]: the header first, then the
/// slot records in steps of [`CheckpointWriter::write_slots`], then the entry point and
/// checksum in [`CheckpointWriter::finish`].
pub struct CheckpointWriter {
    snapshot: CheckpointSnapshot,
    bytes: Vec<u8>,
    /// The offset of the checkpoint in `bytes`, after the owner's own header.
    start: usize,
    next_slot: usize,
}

/// An error that stops a [`CheckpointWriter`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointWriteError {
    /// [`CheckpointWriter::write_slots`] was given another index than the one the
    /// snapshot was taken from, whose vectors may differ.
    OtherIndex,
    /// [`CheckpointWriter::finish`] was called before every slot was written.
    Incomplete { written: usize, slots: usize },
}

impl fmt::Display for CheckpointWriteError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointWriteError::OtherIndex => write!(
                formatter,
                "the index is not the one the checkpoint snapshot was taken from"
            ),
            CheckpointWriteError::Incomplete { written, slots } => write!(
                formatter,
                "the checkpoint is incomplete: {written} of {slots} slots written"
            ),
        }
    }
}

impl std::error::Error for CheckpointWriteError {}

impl CheckpointWriter {
    /// Starts a checkpoint of `snapshot` at the end of `bytes`, which may already
    /// contain the owner's own header. The checksum covers only the checkpoint.
    pub fn new(snapshot: CheckpointSnapshot, mut bytes: Vec<u8>) -> CheckpointWriter {
        let slots = snapshot.slots();
        let list_bytes = 4 * (2 * snapshot.params.max_neighbors + 1);
        bytes.reserve(slots * (2 + snapshot.dimension * 4 + list_bytes) + 128);
        let start = bytes.len();
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        put_u64(&mut bytes, snapshot.dimension as u64);
        bytes.push(space_tag(snapshot.space));
        put_u64(&mut bytes, snapshot.params.max_neighbors as u64);
        put_u64(&mut bytes, snapshot.params.ef_construction as u64);
        put_u64(&mut bytes, snapshot.params.seed);
        put_u64(&mut bytes, snapshot.rng_state);
        put_u64(&mut bytes, slots as u64);
        CheckpointWriter {
            snapshot,
            bytes,
            start,
            next_slot: 0,
        }
    }

    /// Returns the number of slots not written yet.
    pub fn remaining_slots(&self) -> usize {
        self.snapshot.slots() - self.next_slot
    }

    /// Writes the records of the next `count` slots, or of all that remain if fewer,
    /// reading their vectors from `index`. `index` must be the index the snapshot was
    /// taken from, in any later state.
    pub fn write_slots(&mut self, index: &Hnsw, count: usize) -> Result<(), CheckpointWriteError> {
        if index.id != self.snapshot.index_id || index.slots() < self.snapshot.slots() {
            return Err(CheckpointWriteError::OtherIndex);
        }
        self.append_slots(index, count);
        Ok(())
    }

    /// Writes the records of the next `count` slots with the vectors of `index`, which
    /// the caller checked.
    fn append_slots(&mut self, index: &Hnsw, count: usize) {
        let end = self
            .next_slot
            .saturating_add(count)
            .min(self.snapshot.slots());
        let graph = &self.snapshot.graph;
        for slot in self.next_slot as u32..end as u32 {
            let level = graph.level(slot);
            self.bytes
                .push(u8::from(self.snapshot.deleted[slot as usize]));
            self.bytes.push(level as u8);
            for value in index.vector(slot) {
                self.bytes.extend_from_slice(&value.to_le_bytes());
            }
            for list_level in 0..=level {
                let neighbours = graph.neighbours(slot, list_level);
                self.bytes
                    .extend_from_slice(&(neighbours.len() as u32).to_le_bytes());
                for neighbour in neighbours {
                    self.bytes.extend_from_slice(&neighbour.to_le_bytes());
                }
            }
        }
        self.next_slot = end;
    }

    /// Writes the entry point and the checksum, and returns all the bytes, the owner's
    /// header included.
    pub fn finish(self) -> Result<Vec<u8>, CheckpointWriteError> {
        if self.remaining_slots() != 0 {
            return Err(CheckpointWriteError::Incomplete {
                written: self.next_slot,
                slots: self.snapshot.slots(),
            });
        }
        Ok(self.seal())
    }

    /// Writes the entry point and the checksum after the last slot record.
    fn seal(mut self) -> Vec<u8> {
        let graph = &self.snapshot.graph;
        let entry = graph.entry();
        self.bytes.push(u8::from(entry.is_some()));
        self.bytes
            .extend_from_slice(&entry.unwrap_or(0).to_le_bytes());
        self.bytes.push(graph.max_level() as u8);

        let checksum = fnv1a(&self.bytes[self.start..]);
        put_u64(&mut self.bytes, checksum);
        self.bytes
    }
}

impl Hnsw {
    /// Serialises the index in the format described in the module documentation.
    pub fn checkpoint(&self) -> Vec<u8> {
        let mut writer = CheckpointWriter::new(self.snapshot(), Vec::new());
        writer.append_slots(self, usize::MAX);
        writer.seal()
    }

    /// Copies the parts of the index that inserts and removals change, for a
    /// [`CheckpointWriter`]. The copy takes about 4 × (2M + 1) bytes per slot, far less
    /// than the vectors.
    pub fn snapshot(&self) -> CheckpointSnapshot {
        CheckpointSnapshot {
            index_id: self.id,
            dimension: self.dimension,
            space: self.space,
            params: self.params,
            rng_state: self.rng.0,
            deleted: self.deleted.clone(),
            graph: self.graph.clone(),
        }
    }

    /// Rebuilds an index from a [`Hnsw::checkpoint`] output, validating every field.
    /// Damaged or hostile input returns an error instead of panicking; the tests feed
    /// it every truncation and single-byte change of sample checkpoints. It allocates
    /// only after checking a length against the bytes that remain, except for the
    /// fixed-size neighbour lists, which [`MAX_NEIGHBORS`] bounds.
    pub fn restore(bytes: &[u8]) -> Result<Hnsw, CheckpointError> {
        let mut reader = Reader::new(bytes);
        if reader.take(MAGIC.len(), "magic")? != MAGIC {
            return Err(CheckpointError::BadMagic);
        }
        let version = reader.u32("version")?;
        if version != FORMAT_VERSION {
            return Err(CheckpointError::UnsupportedVersion(version));
        }

        // The database that stores checkpoints already authenticates its pages, so
        // this checksum is not a defence against tampering. It catches encoder bugs
        // and truncated or damaged copies, and everything below is validated anyway.
        let body_end = bytes.len().saturating_sub(CHECKSUM_BYTES);
        if body_end < reader.offset {
            return Err(CheckpointError::Truncated {
                field: "checksum",
                offset: reader.offset,
                needed: CHECKSUM_BYTES,
                available: bytes.len() - reader.offset,
            });
        }
        let mut stored = [0u8; CHECKSUM_BYTES];
        stored.copy_from_slice(&bytes[body_end..]);
        let stored = u64::from_le_bytes(stored);
        let computed = fnv1a(&bytes[..body_end]);
        if stored != computed {
            return Err(CheckpointError::ChecksumMismatch { stored, computed });
        }
        reader.bytes = &bytes[..body_end];

        let mut index = read_header(&mut reader)?;
        read_slots(&mut reader, &mut index)?;
        check_upper_levels(&index.graph)?;
        read_entry_point(&mut reader, &mut index.graph, &index.deleted)?;

        if reader.remaining() != 0 {
            return Err(CheckpointError::TrailingBytes {
                offset: reader.offset,
                count: reader.remaining(),
            });
        }
        Ok(index)
    }
}

/// Reads the fields up to `slot_count` and returns an empty index with the stored
/// parameters and generator state.
fn read_header(reader: &mut Reader<'_>) -> Result<Hnsw, CheckpointError> {
    let dimension = reader.usize("dimension", "a size that fits in memory")?;
    let space = match reader.u8("space")? {
        0 => Space::L2,
        1 => Space::InnerProduct,
        2 => Space::Cosine,
        tag => {
            return Err(CheckpointError::InvalidField {
                field: "space",
                value: u64::from(tag),
                expected: "0 (l2), 1 (ip) or 2 (cosine)",
            })
        }
    };
    let max_neighbors = reader.usize("max_neighbors", "2 to 1024")?;
    if !(2..=MAX_NEIGHBORS).contains(&max_neighbors) {
        return Err(CheckpointError::InvalidField {
            field: "max_neighbors",
            value: max_neighbors as u64,
            expected: "2 to 1024",
        });
    }
    let ef_construction = reader.usize("ef_construction", "at least 1")?;
    if ef_construction == 0 {
        return Err(CheckpointError::InvalidField {
            field: "ef_construction",
            value: 0,
            expected: "at least 1",
        });
    }
    let seed = reader.u64("seed")?;
    let rng_state = reader.u64("rng_state")?;

    let params = HnswParams {
        max_neighbors,
        ef_construction,
        seed,
    };
    let mut index = Hnsw::new(dimension, space, params);
    index.rng = SplitMix64(rng_state);
    Ok(index)
}

/// Reads `slot_count` and the slot records into `index`.
fn read_slots(reader: &mut Reader<'_>, index: &mut Hnsw) -> Result<(), CheckpointError> {
    let slot_count = reader.u64("slot_count")?;

    // A slot record takes at least its flag, level, vector and level-0 count. Checking
    // that much against the input bounds every allocation below by the input size.
    let minimum_record = 2 + 4 * index.dimension as u128 + 4;
    let minimum_bytes = u128::from(slot_count) * minimum_record;
    if minimum_bytes > reader.remaining() as u128 || slot_count > u64::from(u32::MAX) {
        return Err(CheckpointError::SlotCountExceedsInput {
            slot_count,
            minimum_bytes,
            available: reader.remaining(),
        });
    }
    let slot_count = slot_count as usize;
    index.vectors.reserve_exact(slot_count * index.dimension);
    index.deleted.reserve_exact(slot_count);

    for slot in 0..slot_count as u32 {
        let deleted = match reader.u8("deleted")? {
            0 => false,
            1 => true,
            flag => {
                return Err(CheckpointError::InvalidField {
                    field: "deleted",
                    value: u64::from(flag),
                    expected: "0 or 1",
                })
            }
        };
        let level = usize::from(reader.u8("level")?);
        if level > MAX_LEVEL {
            return Err(CheckpointError::InvalidField {
                field: "level",
                value: level as u64,
                expected: "at most 32",
            });
        }

        let start = index.vectors.len();
        let vector = reader.take(index.dimension * 4, "vector")?;
        index.vectors.extend(
            vector
                .chunks_exact(4)
                .map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        );
        if let Some(codes) = &mut index.codes {
            codes.push(&index.vectors[start..]);
        }
        index.deleted.push(deleted);
        index.deleted_count += usize::from(deleted);

        index.graph.push(level);
        for list_level in 0..=level {
            read_list(reader, &mut index.graph, slot, list_level, slot_count)?;
        }
    }
    Ok(())
}

/// Reads one neighbour list, checking its count and slots, and stores it in `graph`.
fn read_list(
    reader: &mut Reader<'_>,
    graph: &mut Graph,
    slot: u32,
    level: usize,
    slot_count: usize,
) -> Result<(), CheckpointError> {
    let count = reader.u32("neighbour count")?;
    let capacity = graph.capacity(level);
    if count as usize > capacity {
        return Err(CheckpointError::ListOverCapacity {
            slot,
            level,
            count,
            capacity,
        });
    }
    let list = reader.take(count as usize * 4, "neighbour list")?;
    let mut neighbours = Vec::with_capacity(count as usize);
    for bytes in list.chunks_exact(4) {
        let neighbour = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if neighbour as usize >= slot_count {
            return Err(CheckpointError::NeighbourOutOfRange {
                slot,
                level,
                neighbour,
                slot_count,
            });
        }
        neighbours.push(neighbour);
    }
    graph.set_neighbours(slot, level, &neighbours);
    Ok(())
}

/// Checks that every neighbour on a level above 0 has a list on that level, since a
/// search moves to it and reads that list. Every slot has a level-0 list.
fn check_upper_levels(graph: &Graph) -> Result<(), CheckpointError> {
    for slot in 0..graph.slots() as u32 {
        for level in 1..=graph.level(slot) {
            for &neighbour in graph.neighbours(slot, level) {
                let neighbour_level = graph.level(neighbour);
                if neighbour_level < level {
                    return Err(CheckpointError::NeighbourBelowLevel {
                        slot,
                        level,
                        neighbour,
                        neighbour_level,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Reads the entry point and maximum level and checks them against the slots.
/// `deleted` contains the deleted flag of every slot.
fn read_entry_point(
    reader: &mut Reader<'_>,
    graph: &mut Graph,
    deleted: &[bool],
) -> Result<(), CheckpointError> {
    let has_entry = reader.u8("has_entry")?;
    let entry = reader.u32("entry")?;
    let max_level = usize::from(reader.u8("max_level")?);
    let invalid = |reason: String| Err(CheckpointError::InvalidEntryPoint { reason });

    match has_entry {
        0 => {
            if graph.slots() != 0 {
                return invalid(format!("missing in an index of {} slots", graph.slots()));
            }
            if entry != 0 || max_level != 0 {
                return invalid(format!(
                    "an empty index must store entry 0 and max_level 0, not {entry} and \
                     {max_level}"
                ));
            }
            Ok(())
        }
        1 => {
            if entry as usize >= graph.slots() {
                return invalid(format!(
                    "slot {entry} is out of range: the checkpoint has {} slots",
                    graph.slots()
                ));
            }
            if graph.level(entry) != max_level {
                return invalid(format!(
                    "slot {entry} has level {}, but max_level is {max_level}",
                    graph.level(entry)
                ));
            }
            for slot in 0..graph.slots() as u32 {
                if graph.level(slot) > max_level && !deleted[slot as usize] {
                    return Err(CheckpointError::LevelAboveMax {
                        slot,
                        level: graph.level(slot),
                        max_level,
                    });
                }
            }
            graph.set_entry(entry, max_level);
            Ok(())
        }
        flag => Err(CheckpointError::InvalidField {
            field: "has_entry",
            value: u64::from(flag),
            expected: "0 or 1",
        }),
    }
}

fn space_tag(space: Space) -> u8 {
    match space {
        Space::L2 => 0,
        Space::InnerProduct => 1,
        Space::Cosine => 2,
    }
}

fn put_u64(bytes: &mut Vec<u8>, value: u64) {
    bytes.extend_from_slice(&value.to_le_bytes());
}

/// Returns the 64-bit FNV-1a hash of `bytes`.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// A cursor over checkpoint bytes whose reads fail with [`CheckpointError::Truncated`]
/// instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, offset: 0 }
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    fn take(&mut self, count: usize, field: &'static str) -> Result<&'a [u8], CheckpointError> {
        if count > self.remaining() {
            return Err(CheckpointError::Truncated {
                field,
                offset: self.offset,
                needed: count,
                available: self.remaining(),
            });
        }
        let taken = &self.bytes[self.offset..self.offset + count];
        self.offset += count;
        Ok(taken)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, CheckpointError> {
        Ok(self.take(1, field)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, CheckpointError> {
        let bytes = self.take(4, field)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, CheckpointError> {
        let mut value = [0u8; 8];
        value.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_le_bytes(value))
    }

    /// Reads a u64 that must fit in a `usize`.
    fn usize(
        &mut self,
        field: &'static str,
        expected: &'static str,
    ) -> Result<usize, CheckpointError> {
        let value = self.u64(field)?;
        usize::try_from(value).map_err(|_| CheckpointError::InvalidField {
            field,
            value,
            expected,
        })
    }
}

#[cfg(test)]
mod tests;
