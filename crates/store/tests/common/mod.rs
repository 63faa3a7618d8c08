//! Helpers shared by the store's integration tests.

#![allow(dead_code)] // Each test binary uses a different part.

use std::path::Path;

use ravelin_store::key::KEY_BYTES;
use ravelin_store::{CollectionRow, MasterKey, RecordRow, RecordWrite, Store};
use rusqlite::{Connection, OpenFlags};

pub const COLLECTION: &str = "c-id";

pub fn key(byte: u8) -> MasterKey {
    MasterKey::from_bytes([byte; KEY_BYTES])
}

/// Builds a record whose id and document are easy to find in plaintext.
pub fn record(number: usize) -> RecordRow {
    RecordRow {
        id: format!("record-{number:05}"),
        position: number as i64,
        seq: 0,
        document: Some(format!("plaintext-document-{number:05}")),
        metadata_json: Some(format!("{{\"n\":{number}}}")),
        uri: None,
        embedding: (number as f32).to_le_bytes().to_vec(),
    }
}

/// Creates a database with one collection, `records` records and an index checkpoint.
pub fn create_database(path: &Path, key: &MasterKey, records: usize) -> Store {
    let mut store = Store::create(path, key).unwrap();
    store.create_tenant("t").unwrap();
    store.create_database("d-id", "t", "d").unwrap();
    store
        .create_collection(&CollectionRow {
            id: COLLECTION.into(),
            database_id: "d-id".into(),
            name: "c".into(),
            dimension: None,
            configuration_json: "{}".into(),
            metadata_json: None,
            schema_json: None,
            position: 0,
        })
        .unwrap();
    write_records(&mut store, 0..records);
    store
        .write_checkpoint(COLLECTION, 1, b"index checkpoint bytes")
        .unwrap();
    store
}

pub fn write_records(store: &mut Store, numbers: std::ops::Range<usize>) {
    let writes: Vec<RecordWrite> = numbers.map(|n| RecordWrite::Put(record(n))).collect();
    for batch in writes.chunks(500) {
        let batch: Vec<RecordWrite> = batch
            .iter()
            .map(|write| match write {
                RecordWrite::Put(row) => RecordWrite::Put(row.clone()),
                RecordWrite::Delete(id) => RecordWrite::Delete(id.clone()),
            })
            .collect();
        store.write_records(COLLECTION, Some(1), &batch).unwrap();
    }
}

/// Returns the ids of every record of the test collection.
pub fn record_ids(store: &Store) -> Vec<String> {
    let mut ids = Vec::new();
    store
        .for_each_record(COLLECTION, |row| {
            ids.push(row.id);
            Ok(())
        })
        .unwrap();
    ids
}

/// Returns whether `key` opens the database, through a read-only connection that
/// changes nothing on disk.
pub fn key_opens(path: &Path, key_hex_byte: u8) -> bool {
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let literal = format!("x'{}'", format!("{key_hex_byte:02x}").repeat(KEY_BYTES));
    connection.pragma_update(None, "key", literal).unwrap();
    connection
        .pragma_update(None, "cipher_log_level", "NONE")
        .unwrap();
    connection
        .query_row("SELECT count(*) FROM sqlite_master", [], |row| {
            row.get::<_, i64>(0)
        })
        .is_ok()
}

/// Returns whether `needle` occurs anywhere in the file.
pub fn file_contains(path: &Path, needle: &[u8]) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|window| window == needle)
}
