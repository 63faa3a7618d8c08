use super::*;
use crate::hnsw::test_support::{vectors, SPACES};

fn build(space: Space, params: HnswParams, data: &[Vec<f32>]) -> Hnsw {
    let mut index = Hnsw::new(data[0].len(), space, params);
    for vector in data {
        index.insert(vector);
    }
    index
}

/// Returns each result as (slot, distance bits), so comparisons are exact.
fn search_bits(
    index: &Hnsw,
    query: &[f32],
    k: usize,
    allow: Option<&dyn Fn(u32) -> bool>,
) -> Vec<(u32, u32)> {
    index
        .search(query, k, 40, allow)
        .into_iter()
        .map(|neighbour| (neighbour.handle, neighbour.distance.to_bits()))
        .collect()
}

/// Replaces the trailing checksum with the one the bytes before it have, so a test
/// can reach the validation behind the checksum.
fn reseal(bytes: &mut [u8]) {
    let body_end = bytes.len() - CHECKSUM_BYTES;
    let checksum = fnv1a(&bytes[..body_end]);
    bytes[body_end..].copy_from_slice(&checksum.to_le_bytes());
}

/// Builds a checkpoint of 12 slots with M = 2, two of them deleted, small enough to
/// damage at every byte.
fn small_checkpoint() -> Vec<u8> {
    let params = HnswParams {
        max_neighbors: 2,
        ef_construction: 8,
        seed: 3,
    };
    let mut index = build(Space::L2, params, &vectors(12, 3, 11));
    index.remove(4);
    index.remove(7);
    index.checkpoint()
}

/// Runs filtered and unfiltered searches and an insert, which must not panic.
fn exercise(index: &mut Hnsw) {
    let dimension = index.dimension();
    for query in vectors(3, dimension, 99) {
        index.search(&query, 3, 10, None);
        index.search(&query, 3, 10, Some(&|slot| slot.is_multiple_of(2)));
    }
    index.insert(&vectors(1, dimension, 98)[0]);
}

#[test]
fn round_trip_same_results_every_space() {
    let data = vectors(600, 16, 1);
    let queries = vectors(20, 16, 2);
    let even = |slot: u32| slot.is_multiple_of(2);
    for space in SPACES {
        let mut original = build(space, HnswParams::default(), &data);
        for slot in (0..600).step_by(7) {
            original.remove(slot);
        }

        let restored = Hnsw::restore(&original.checkpoint()).expect("checkpoint restores");

        assert_eq!(restored.slots(), original.slots());
        assert_eq!(restored.deleted_count(), original.deleted_count());
        assert_eq!(restored.params(), original.params());
        assert_eq!(restored.space(), space);
        assert_eq!(restored.checkpoint(), original.checkpoint());
        for query in &queries {
            assert_eq!(
                search_bits(&restored, query, 10, None),
                search_bits(&original, query, 10, None),
                "{space:?}"
            );
            assert_eq!(
                search_bits(&restored, query, 10, Some(&even)),
                search_bits(&original, query, 10, Some(&even)),
                "{space:?} with a filter"
            );
        }
    }
}

#[test]
fn inserts_after_restore_match() {
    let data = vectors(400, 8, 5);
    let more = vectors(200, 8, 6);
    let queries = vectors(20, 8, 7);
    for space in SPACES {
        let mut original = build(space, HnswParams::default(), &data);
        let mut restored = Hnsw::restore(&original.checkpoint()).expect("checkpoint restores");

        for vector in &more {
            assert_eq!(restored.insert(vector), original.insert(vector));
        }

        assert_eq!(restored.checkpoint(), original.checkpoint(), "{space:?}");
        for query in &queries {
            assert_eq!(
                search_bits(&restored, query, 10, None),
                search_bits(&original, query, 10, None),
                "{space:?}"
            );
        }
    }
}

/// A checkpoint written in steps from a snapshot, while the index takes inserts and
/// removals, is byte for byte the checkpoint of the index at the snapshot.
#[test]
fn snapshot_written_in_steps_ignores_later_changes() {
    let data = vectors(500, 12, 21);
    let more = vectors(300, 12, 22);
    for space in SPACES {
        let mut index = build(space, HnswParams::default(), &data);
        index.remove(17);
        let expected = index.checkpoint();

        let mut writer = CheckpointWriter::new(index.snapshot(), b"owner".to_vec());
        let mut added = more.iter();
        while writer.remaining_slots() > 0 {
            writer.write_slots(&index, 64).expect("same index");
            for vector in added.by_ref().take(40) {
                index.insert(vector);
            }
            index.remove(index.slots() as u32 / 3);
        }
        let bytes = writer.finish().expect("every slot written");

        assert_eq!(&bytes[..5], b"owner");
        assert!(bytes[5..] == expected[..], "{space:?}");
    }
}

#[test]
fn snapshot_rejects_other_index_and_early_finish() {
    let data = vectors(50, 4, 23);
    let first = build(Space::L2, HnswParams::default(), &data);
    let second = build(Space::L2, HnswParams::default(), &data);

    let mut writer = CheckpointWriter::new(first.snapshot(), Vec::new());
    assert_eq!(
        writer.write_slots(&second, 10),
        Err(CheckpointWriteError::OtherIndex)
    );
    writer.write_slots(&first, 10).expect("same index");
    assert_eq!(
        writer.finish().err(),
        Some(CheckpointWriteError::Incomplete {
            written: 10,
            slots: 50
        })
    );
}

#[test]
fn empty_index_round_trips() {
    let original = Hnsw::new(5, Space::Cosine, HnswParams::default());
    let mut restored = Hnsw::restore(&original.checkpoint()).expect("checkpoint restores");

    assert_eq!(restored.slots(), 0);
    assert_eq!(restored.dimension(), 5);
    assert_eq!(restored.space(), Space::Cosine);
    assert!(restored.search(&[1.0; 5], 3, 10, None).is_empty());
    assert_eq!(restored.insert(&[1.0; 5]), 0);
    assert_eq!(restored.search(&[1.0; 5], 3, 10, None).len(), 1);
}

#[test]
fn high_dimension_without_codes_round_trips() {
    let dimension = crate::kernels::MAX_EXACT_CODE_BYTES + 1;
    let data = vectors(50, dimension, 8);
    let original = build(Space::L2, HnswParams::default(), &data);
    let restored = Hnsw::restore(&original.checkpoint()).expect("checkpoint restores");

    assert!(restored.codes.is_none());
    assert_eq!(
        search_bits(&restored, &data[3], 5, None),
        search_bits(&original, &data[3], 5, None)
    );
}

#[test]
fn every_truncation_rejected() {
    let bytes = small_checkpoint();
    for length in 0..bytes.len() {
        assert!(
            Hnsw::restore(&bytes[..length]).is_err(),
            "prefix of {length} bytes"
        );
    }
}

#[test]
fn every_truncated_body_rejected_behind_checksum() {
    let bytes = small_checkpoint();
    let body_end = bytes.len() - CHECKSUM_BYTES;
    for length in 12..body_end {
        let mut truncated = bytes[..length].to_vec();
        truncated.extend_from_slice(&[0; CHECKSUM_BYTES]);
        reseal(&mut truncated);
        let error = Hnsw::restore(&truncated).err();
        assert!(
            matches!(
                error,
                Some(
                    CheckpointError::Truncated { .. }
                        | CheckpointError::SlotCountExceedsInput { .. }
                )
            ),
            "body of {length} bytes: {error:?}"
        );
    }
}

#[test]
fn every_flipped_byte_caught_by_checksum() {
    let bytes = small_checkpoint();
    for position in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[position] ^= 0x01;
        assert!(Hnsw::restore(&damaged).is_err(), "byte {position}");
    }
}

/// With the checksum recomputed, a damaged byte must either be rejected by the
/// field checks or decode into an index that searches and inserts without panicking.
#[test]
fn every_flipped_byte_resealed_safe() {
    let bytes = small_checkpoint();
    let body_end = bytes.len() - CHECKSUM_BYTES;
    let mut decoded = 0;
    for position in 0..body_end {
        for mask in [0x01, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[position] ^= mask;
            reseal(&mut damaged);
            if let Ok(mut index) = Hnsw::restore(&damaged) {
                decoded += 1;
                exercise(&mut index);
            }
        }
    }
    // Flipped vector bits and seeds still decode, so the second branch ran.
    assert!(decoded > 0);
}

#[test]
fn huge_slot_count_rejected() {
    let mut bytes = Hnsw::new(4, Space::L2, HnswParams::default()).checkpoint();
    // The slot count follows magic, version, dimension, space and five u64 fields.
    let slot_count_offset = 8 + 4 + 8 + 1 + 8 * 4;
    bytes[slot_count_offset..slot_count_offset + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    reseal(&mut bytes);

    let error = Hnsw::restore(&bytes).err();

    assert!(
        matches!(
            error,
            Some(CheckpointError::SlotCountExceedsInput {
                slot_count: 0x100_0000_0000,
                ..
            })
        ),
        "{error:?}"
    );
}

#[test]
fn unsupported_version_rejected() {
    let mut bytes = small_checkpoint();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    reseal(&mut bytes);

    let error = Hnsw::restore(&bytes).err();

    assert_eq!(error, Some(CheckpointError::UnsupportedVersion(2)));
    let message = error.map(|error| error.to_string()).unwrap_or_default();
    assert_eq!(
        message,
        "unsupported checkpoint version 2; this build reads version 1"
    );
}

#[test]
fn bad_magic_rejected() {
    let mut bytes = small_checkpoint();
    bytes[0] = b'X';
    assert_eq!(Hnsw::restore(&bytes).err(), Some(CheckpointError::BadMagic));
}

#[test]
fn out_of_range_neighbour_rejected() {
    let mut bytes = small_checkpoint();
    // Slot 0's record starts after the header: flag, level, three f32s, then its
    // level-0 count and first neighbour.
    let header = 8 + 4 + 8 + 1 + 8 * 5;
    let first_neighbour = header + 2 + 12 + 4;
    bytes[first_neighbour..first_neighbour + 4].copy_from_slice(&12u32.to_le_bytes());
    reseal(&mut bytes);

    let error = Hnsw::restore(&bytes).err();

    assert!(
        matches!(
            error,
            Some(CheckpointError::NeighbourOutOfRange {
                slot: 0,
                level: 0,
                neighbour: 12,
                slot_count: 12,
            })
        ),
        "{error:?}"
    );
}

#[test]
fn over_capacity_list_rejected() {
    let mut bytes = small_checkpoint();
    let header = 8 + 4 + 8 + 1 + 8 * 5;
    let count = header + 2 + 12;
    bytes[count..count + 4].copy_from_slice(&5u32.to_le_bytes());
    reseal(&mut bytes);

    let error = Hnsw::restore(&bytes).err();

    assert!(
        matches!(
            error,
            Some(CheckpointError::ListOverCapacity {
                slot: 0,
                level: 0,
                count: 5,
                capacity: 4,
            })
        ),
        "{error:?}"
    );
}

#[test]
fn checksum_mismatch_message() {
    let mut bytes = small_checkpoint();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;

    let message = Hnsw::restore(&bytes)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();

    assert!(
        message.starts_with("checkpoint checksum mismatch: stored 0x"),
        "{message}"
    );
}
