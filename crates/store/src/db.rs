//! The SQLCipher database: schema, migrations, and the engine's reads and writes.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};

use crate::key::MasterKey;

/// The schema version this build writes. Older versions are migrated at open; a newer
/// version stops startup.
pub(crate) const SCHEMA_VERSION: i64 = 3;

const SCHEMA_V1: &str = "
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE databases (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    UNIQUE (tenant, name)
);
CREATE TABLE collections (
    id TEXT PRIMARY KEY,
    database_id TEXT NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    dimension INTEGER,
    configuration TEXT NOT NULL,
    metadata TEXT,
    schema TEXT,
    position INTEGER NOT NULL,
    UNIQUE (database_id, name)
);
CREATE TABLE records (
    collection_id TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    position INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    document TEXT,
    metadata TEXT,
    uri TEXT,
    embedding BLOB NOT NULL,
    PRIMARY KEY (collection_id, id)
);
CREATE INDEX records_by_position ON records (collection_id, position);
";

/// Version 2 adds index checkpoints. A checkpoint is split into chunks, because SQLite
/// caps a single value at 1 GB and a large collection's index exceeds that.
const SCHEMA_V2: &str = "
CREATE TABLE index_checkpoints (
    collection_id TEXT PRIMARY KEY REFERENCES collections(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    byte_count INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL
);
CREATE TABLE index_checkpoint_chunks (
    collection_id TEXT NOT NULL REFERENCES index_checkpoints(collection_id) ON DELETE CASCADE,
    chunk INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (collection_id, chunk)
);
";

/// Version 3 keeps every chunk under the generation of the checkpoint it belongs to,
/// and the header names the generation in use. A new checkpoint is then stored next to
/// the one it replaces, one chunk per transaction, and a last short transaction
/// switches the header to it, so no transaction locks the database for a whole
/// checkpoint. Existing chunks become generation 0. Chunks refer to the collection, not
/// to the header, because a new checkpoint's chunks exist before its header does.
const SCHEMA_V3: &str = "
CREATE TABLE index_checkpoint_chunks_v3 (
    collection_id TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (collection_id, generation, chunk)
);
INSERT INTO index_checkpoint_chunks_v3 (collection_id, generation, chunk, bytes)
    SELECT collection_id, 0, chunk, bytes FROM index_checkpoint_chunks;
DROP TABLE index_checkpoint_chunks;
ALTER TABLE index_checkpoint_chunks_v3 RENAME TO index_checkpoint_chunks;
ALTER TABLE index_checkpoints ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
";

/// The size of each stored chunk of a checkpoint. Each chunk is one transaction that
/// other writers wait for, so the size bounds that wait. Storing a 1 MiB chunk took
/// 9 ms (median, at most 31 ms) to encrypt, write and sync, and deleting one about as
/// long, on a 2-core x86-64 machine under a load average of 7.
const CHECKPOINT_CHUNK_BYTES: usize = 1 << 20;

/// An error from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot decrypt the database {path}: the master key is wrong or the file is not a Ravelin database"
    )]
    WrongKey { path: PathBuf },
    #[error("the database {path} does not exist")]
    Missing { path: PathBuf },
    #[error("the database {path} has schema version {found}, newer than this build supports ({supported}); upgrade Ravelin")]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("the database {path} is damaged: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("a stored value is damaged: {0}")]
    BadValue(String),
    #[error("collection {0} no longer exists")]
    CollectionMissing(String),
    #[error("the database {path} is open in another process, such as a running `ravelin backup`; wait for it to finish and run the command again")]
    InUse { path: PathBuf },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct TenantRow {
    pub name: String,
}

pub struct DatabaseRow {
    pub id: String,
    pub tenant: String,
    pub name: String,
}

/// A collection as stored. JSON columns are the engine's own encoding.
pub struct CollectionRow {
    pub id: String,
    pub database_id: String,
    pub name: String,
    pub dimension: Option<i64>,
    pub configuration_json: String,
    pub metadata_json: Option<String>,
    pub schema_json: Option<String>,
    pub position: i64,
}

/// A record as stored. `position` orders records by first insertion and stays fixed on
/// update; `seq` is the global sequence number of the last write to the record.
#[derive(Clone)]
pub struct RecordRow {
    pub id: String,
    pub position: i64,
    pub seq: i64,
    pub document: Option<String>,
    pub metadata_json: Option<String>,
    pub uri: Option<String>,
    /// Little-endian f32 values.
    pub embedding: Vec<u8>,
}

/// One change to a collection's records, applied with the others of its batch in one
/// transaction.
pub enum RecordWrite {
    /// Insert the record, or replace the stored record with the same id.
    Put(RecordRow),
    Delete(String),
}

/// Everything in the database, read once at startup.
pub struct Snapshot {
    pub tenants: Vec<TenantRow>,
    pub databases: Vec<DatabaseRow>,
    pub collections: Vec<CollectionRow>,
    pub last_seq: i64,
}

/// An open, keyed database. Not `Sync`: the engine serializes access behind a mutex.
pub struct Store {
    connection: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens an existing database with `key`. Verifies the key before anything is
    /// written: with a wrong key, no file is created or changed.
    pub fn open(path: &Path, key: &MasterKey) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        Self::connect(path, key)
    }

    /// Creates a new database at `path` keyed with `key`. Fails if the file exists.
    pub fn create(path: &Path, key: &MasterKey) -> Result<Store, StoreError> {
        if path.exists() {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: "refusing to create a database over an existing file".into(),
            });
        }
        // SQLite gives the write-ahead log and shared-memory files the mode of the
        // database file, so creating it as 0600 keeps all three private.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|error| StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("cannot create the database file: {error}"),
            })?;
        Self::connect(path, key)
    }

    /// Opens an existing file, checks the key before anything is written, then sets
    /// the journal mode and migrates the schema.
    fn connect(path: &Path, key: &MasterKey) -> Result<Store, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags)?;
        let mut store = Store {
            connection,
            path: path.to_path_buf(),
        };
        store.apply_key(key)?;
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    fn apply_key(&mut self, key: &MasterKey) -> Result<(), StoreError> {
        apply_key(&self.connection, key, &self.path)
    }

    /// Opens or creates a database without encryption. Only the `insecure-bench`
    /// feature builds it, to measure what encryption costs; release builds never
    /// enable that feature.
    #[cfg(feature = "insecure-bench")]
    pub fn open_unencrypted(path: &Path) -> Result<Store, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut store = Store {
            connection: Connection::open_with_flags(path, flags)?,
            path: path.to_path_buf(),
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    fn configure(&mut self) -> Result<(), StoreError> {
        let mode: String = self
            .connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                detail: format!("cannot switch the journal to WAL (it is {mode})"),
            });
        }
        self.connection.pragma_update(None, "synchronous", "FULL")?;
        self.connection.pragma_update(None, "foreign_keys", "ON")?;
        self.connection
            .busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let has_meta: bool = self.connection.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |row| row.get(0),
        )?;
        let version = if has_meta {
            self.meta_value("schema_version")?.unwrap_or(0)
        } else {
            0
        };
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }

        let transaction = self.connection.transaction()?;
        if version < 1 {
            transaction.execute_batch(SCHEMA_V1)?;
            transaction.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', 1), ('last_seq', 0), ('next_position', 1)",
                [],
            )?;
        }
        if version < 2 {
            transaction.execute_batch(SCHEMA_V2)?;
        }
        if version < 3 {
            transaction.execute_batch(SCHEMA_V3)?;
        }
        transaction.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            params![SCHEMA_VERSION],
        )?;
        transaction.commit()?;
        Ok(())
    }

    fn meta_value(&self, key: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .connection
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?)
    }

    /// Runs SQLCipher's page HMAC check and SQLite's quick integrity check.
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        check_integrity(&self.connection, &self.path, IntegrityCheck::Quick)
    }

    /// Reads the catalog: tenants, databases and collections, in creation order.
    pub fn load_catalog(&self) -> Result<Snapshot, StoreError> {
        let tenants = self
            .connection
            .prepare("SELECT name FROM tenants ORDER BY position")?
            .query_map([], |row| Ok(TenantRow { name: row.get(0)? }))?
            .collect::<Result<_, _>>()?;
        let databases = self
            .connection
            .prepare("SELECT id, tenant, name FROM databases ORDER BY position")?
            .query_map([], |row| {
                Ok(DatabaseRow {
                    id: row.get(0)?,
                    tenant: row.get(1)?,
                    name: row.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let collections = self
            .connection
            .prepare(
                "SELECT id, database_id, name, dimension, configuration, metadata, schema, position
                 FROM collections ORDER BY position",
            )?
            .query_map([], |row| {
                Ok(CollectionRow {
                    id: row.get(0)?,
                    database_id: row.get(1)?,
                    name: row.get(2)?,
                    dimension: row.get(3)?,
                    configuration_json: row.get(4)?,
                    metadata_json: row.get(5)?,
                    schema_json: row.get(6)?,
                    position: row.get(7)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let last_seq = self.meta_value("last_seq")?.unwrap_or(0);
        Ok(Snapshot {
            tenants,
            databases,
            collections,
            last_seq,
        })
    }

    /// Calls `visit` for each record of a collection in position order.
    pub fn for_each_record(
        &self,
        collection_id: &str,
        mut visit: impl FnMut(RecordRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut statement = self.connection.prepare(
            "SELECT id, position, seq, document, metadata, uri, embedding
             FROM records WHERE collection_id = ?1 ORDER BY position",
        )?;
        let mut rows = statement.query([collection_id])?;
        while let Some(row) = rows.next()? {
            visit(RecordRow {
                id: row.get(0)?,
                position: row.get(1)?,
                seq: row.get(2)?,
                document: row.get(3)?,
                metadata_json: row.get(4)?,
                uri: row.get(5)?,
                embedding: row.get(6)?,
            })?;
        }
        Ok(())
    }

    pub fn create_tenant(&mut self, name: &str) -> Result<(), StoreError> {
        let transaction = self.connection.transaction()?;
        let position = next_position(&transaction)?;
        transaction.execute(
            "INSERT INTO tenants (name, position) VALUES (?1, ?2)",
            params![name, position],
        )?;
        transaction.commit()?;
        Ok(())
    }

    pub fn create_database(
        &mut self,
        id: &str,
        tenant: &str,
        name: &str,
    ) -> Result<(), StoreError> {
        let transaction = self.connection.transaction()?;
        let position = next_position(&transaction)?;
        transaction.execute(
            "INSERT INTO databases (id, tenant, name, position) VALUES (?1, ?2, ?3, ?4)",
            params![id, tenant, name, position],
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// Deletes a database with its collections and their records.
    pub fn delete_database(&mut self, id: &str) -> Result<(), StoreError> {
        self.connection
            .execute("DELETE FROM databases WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Inserts a collection; returns its position.
    pub fn create_collection(&mut self, row: &CollectionRow) -> Result<i64, StoreError> {
        let transaction = self.connection.transaction()?;
        let position = next_position(&transaction)?;
        transaction.execute(
            "INSERT INTO collections
                (id, database_id, name, dimension, configuration, metadata, schema, position)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                row.id,
                row.database_id,
                row.name,
                row.dimension,
                row.configuration_json,
                row.metadata_json,
                row.schema_json,
                position
            ],
        )?;
        transaction.commit()?;
        Ok(position)
    }

    /// Replaces the mutable fields of a collection.
    pub fn update_collection(&mut self, row: &CollectionRow) -> Result<(), StoreError> {
        self.connection.execute(
            "UPDATE collections
             SET name = ?2, dimension = ?3, configuration = ?4, metadata = ?5, schema = ?6
             WHERE id = ?1",
            params![
                row.id,
                row.name,
                row.dimension,
                row.configuration_json,
                row.metadata_json,
                row.schema_json
            ],
        )?;
        Ok(())
    }

    /// Deletes a collection and its records.
    pub fn delete_collection(&mut self, id: &str) -> Result<(), StoreError> {
        self.connection
            .execute("DELETE FROM collections WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Deletes every tenant, database, collection and record, then recreates the
    /// default tenant and database.
    pub fn reset(
        &mut self,
        default_tenant: &str,
        default_database: (&str, &str),
    ) -> Result<(), StoreError> {
        let transaction = self.connection.transaction()?;
        transaction.execute_batch(
            "DELETE FROM index_checkpoints; DELETE FROM records; DELETE FROM collections; DELETE FROM databases; DELETE FROM tenants;",
        )?;
        transaction.execute(
            "INSERT INTO tenants (name, position) VALUES (?1, 0)",
            [default_tenant],
        )?;
        transaction.execute(
            "INSERT INTO databases (id, tenant, name, position) VALUES (?1, ?2, ?3, 0)",
            params![default_database.0, default_tenant, default_database.1],
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// Applies a batch of record writes to one collection in a single transaction and
    /// stamps the writes with the next sequence number, which it returns. With
    /// `dimension` set, also records the collection's dimension (fixed by its first
    /// write).
    pub fn write_records(
        &mut self,
        collection_id: &str,
        dimension: Option<i64>,
        writes: &[RecordWrite],
    ) -> Result<i64, StoreError> {
        let transaction = self.connection.transaction()?;
        require_collection(&transaction, collection_id)?;

        let seq = transaction.query_row(
            "UPDATE meta SET value = value + 1 WHERE key = 'last_seq' RETURNING value",
            [],
            |row| row.get::<_, i64>(0),
        )?;
        if let Some(dimension) = dimension {
            transaction.execute(
                "UPDATE collections SET dimension = ?2 WHERE id = ?1",
                params![collection_id, dimension],
            )?;
        }

        {
            let mut put = transaction.prepare_cached(
                "INSERT OR REPLACE INTO records
                    (collection_id, id, position, seq, document, metadata, uri, embedding)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut delete = transaction
                .prepare_cached("DELETE FROM records WHERE collection_id = ?1 AND id = ?2")?;
            for write in writes {
                match write {
                    RecordWrite::Put(record) => {
                        put.execute(params![
                            collection_id,
                            record.id,
                            record.position,
                            seq,
                            record.document,
                            record.metadata_json,
                            record.uri,
                            record.embedding
                        ])?;
                    }
                    RecordWrite::Delete(id) => {
                        delete.execute(params![collection_id, id])?;
                    }
                }
            }
        }
        transaction.commit()?;
        Ok(seq)
    }
}

impl Store {
    /// Returns the sequence number of the last committed record write.
    pub fn last_seq(&self) -> Result<i64, StoreError> {
        Ok(self.meta_value("last_seq")?.unwrap_or(0))
    }

    /// Stores a collection's index checkpoint covering every record write up to `seq`,
    /// replacing the previous one. A checkpoint older than the stored one is not
    /// written; returns whether this one was. This runs the steps of
    /// [`Store::begin_checkpoint`] in one call, so other writers of a shared store
    /// wait for all of it. The engine runs the steps one at a time instead.
    pub fn write_checkpoint(
        &mut self,
        collection_id: &str,
        seq: i64,
        bytes: &[u8],
    ) -> Result<bool, StoreError> {
        let mut staged = self.begin_checkpoint(collection_id, seq, bytes.len())?;
        while !staged.is_complete() {
            self.write_checkpoint_chunk(&mut staged, bytes)?;
        }
        let written = self.finish_checkpoint(staged)?;
        while self.delete_superseded_checkpoint_chunk(collection_id)? {}
        Ok(written)
    }

    /// Starts storing a collection's index checkpoint of `byte_count` bytes that covers
    /// every record write up to `seq`.
    ///
    /// The caller then runs [`Store::write_checkpoint_chunk`] until
    /// [`StagedCheckpoint::is_complete`], each chunk in its own transaction. Next,
    /// [`Store::finish_checkpoint`] makes it the collection's checkpoint, and
    /// [`Store::delete_superseded_checkpoint_chunk`] runs until it returns false. Readers
    /// see the previous checkpoint until the finish. Chunks of a checkpoint that is
    /// never finished, as after a crash, are deleted after the next one that is. Only
    /// one checkpoint of a collection may be in progress at a time.
    pub fn begin_checkpoint(
        &mut self,
        collection_id: &str,
        seq: i64,
        byte_count: usize,
    ) -> Result<StagedCheckpoint, StoreError> {
        let transaction = self.connection.transaction()?;
        require_collection(&transaction, collection_id)?;
        let generation: i64 = transaction.query_row(
            "SELECT max(
                 (SELECT coalesce(max(generation), -1) FROM index_checkpoint_chunks
                  WHERE collection_id = ?1),
                 (SELECT coalesce(max(generation), -1) FROM index_checkpoints
                  WHERE collection_id = ?1)) + 1",
            [collection_id],
            |row| row.get(0),
        )?;
        transaction.commit()?;
        Ok(StagedCheckpoint {
            collection_id: collection_id.to_string(),
            generation,
            seq,
            byte_count,
            chunks_written: 0,
        })
    }

    /// Stores the next chunk of a staged checkpoint in one transaction. `bytes` is the
    /// whole checkpoint, the same in every call. Fails with
    /// [`StoreError::CollectionMissing`] once the collection is deleted, whose cascade
    /// has then removed the chunks already written.
    pub fn write_checkpoint_chunk(
        &mut self,
        staged: &mut StagedCheckpoint,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        if bytes.len() != staged.byte_count {
            return Err(StoreError::BadValue(format!(
                "checkpoint of collection {} has {} bytes, but {} were staged",
                staged.collection_id,
                bytes.len(),
                staged.byte_count
            )));
        }
        let Some(chunk) = bytes
            .chunks(CHECKPOINT_CHUNK_BYTES)
            .nth(staged.chunks_written)
        else {
            return Ok(());
        };
        let transaction = self.connection.transaction()?;
        require_collection(&transaction, &staged.collection_id)?;
        transaction.execute(
            "INSERT INTO index_checkpoint_chunks (collection_id, generation, chunk, bytes)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                staged.collection_id,
                staged.generation,
                staged.chunks_written as i64,
                chunk
            ],
        )?;
        transaction.commit()?;
        staged.chunks_written += 1;
        Ok(())
    }

    /// Makes a staged checkpoint whose chunks are all written the collection's
    /// checkpoint, in one short transaction. A checkpoint older than the stored one is
    /// not used. Returns whether this one was.
    pub fn finish_checkpoint(&mut self, staged: StagedCheckpoint) -> Result<bool, StoreError> {
        if !staged.is_complete() {
            return Err(StoreError::BadValue(format!(
                "checkpoint of collection {} is missing chunks: {} of {} written",
                staged.collection_id,
                staged.chunks_written,
                staged.chunk_count()
            )));
        }
        let transaction = self.connection.transaction()?;
        require_collection(&transaction, &staged.collection_id)?;
        let stored: Option<i64> = transaction
            .query_row(
                "SELECT seq FROM index_checkpoints WHERE collection_id = ?1",
                [&staged.collection_id],
                |row| row.get(0),
            )
            .optional()?;
        if stored.is_some_and(|stored| stored > staged.seq) {
            return Ok(false);
        }
        transaction.execute(
            "INSERT OR REPLACE INTO index_checkpoints
                 (collection_id, seq, byte_count, chunk_count, generation)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                staged.collection_id,
                staged.seq,
                staged.byte_count as i64,
                staged.chunks_written as i64,
                staged.generation
            ],
        )?;
        transaction.commit()?;
        Ok(true)
    }

    /// Deletes one chunk of a checkpoint older than the collection's current one, in
    /// one transaction. Returns whether there was one.
    pub fn delete_superseded_checkpoint_chunk(
        &mut self,
        collection_id: &str,
    ) -> Result<bool, StoreError> {
        let deleted = self.connection.execute(
            "DELETE FROM index_checkpoint_chunks WHERE rowid IN (
                 SELECT chunks.rowid FROM index_checkpoint_chunks AS chunks
                 JOIN index_checkpoints AS header USING (collection_id)
                 WHERE chunks.collection_id = ?1 AND chunks.generation < header.generation
                 LIMIT 1)",
            [collection_id],
        )?;
        Ok(deleted > 0)
    }

    /// Reads a collection's index checkpoint: the sequence number it covers and its
    /// bytes. Returns `None` when there is none, and an error when its chunks do not
    /// add up to what its header records.
    pub fn read_checkpoint(&self, collection_id: &str) -> Result<Option<Checkpoint>, StoreError> {
        let header: Option<(i64, i64, i64, i64)> = self
            .connection
            .query_row(
                "SELECT seq, byte_count, chunk_count, generation FROM index_checkpoints
                 WHERE collection_id = ?1",
                [collection_id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()?;
        let Some((seq, byte_count, chunk_count, generation)) = header else {
            return Ok(None);
        };
        let damaged = |detail: String| {
            StoreError::BadValue(format!(
                "index checkpoint of collection {collection_id}: {detail}"
            ))
        };
        let byte_count = usize::try_from(byte_count)
            .map_err(|_| damaged(format!("byte count {byte_count} is negative")))?;
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(byte_count)
            .map_err(|_| damaged(format!("cannot allocate {byte_count} bytes")))?;
        let mut statement = self.connection.prepare(
            "SELECT chunk, bytes FROM index_checkpoint_chunks
             WHERE collection_id = ?1 AND generation = ?2
             ORDER BY chunk",
        )?;
        let mut rows = statement.query(params![collection_id, generation])?;
        let mut expected_chunk = 0i64;
        while let Some(row) = rows.next()? {
            let chunk: i64 = row.get(0)?;
            if chunk != expected_chunk {
                return Err(damaged(format!("chunk {expected_chunk} is missing")));
            }
            let data = row
                .get_ref(1)?
                .as_blob()
                .map_err(|_| damaged(format!("chunk {chunk} is not a blob")))?;
            if bytes.len() + data.len() > byte_count {
                return Err(damaged(format!("chunks exceed {byte_count} bytes")));
            }
            bytes.extend_from_slice(data);
            expected_chunk += 1;
        }
        if expected_chunk != chunk_count || bytes.len() != byte_count {
            return Err(damaged(format!(
                "found {expected_chunk} chunks and {} bytes, expected {chunk_count} chunks and {byte_count} bytes",
                bytes.len()
            )));
        }
        Ok(Some(Checkpoint { seq, bytes }))
    }

    /// Deletes a collection's index checkpoint, if it has one, with the chunks of any
    /// checkpoint in progress.
    pub fn delete_checkpoint(&mut self, collection_id: &str) -> Result<(), StoreError> {
        let transaction = self.connection.transaction()?;
        transaction.execute(
            "DELETE FROM index_checkpoint_chunks WHERE collection_id = ?1",
            [collection_id],
        )?;
        transaction.execute(
            "DELETE FROM index_checkpoints WHERE collection_id = ?1",
            [collection_id],
        )?;
        transaction.commit()?;
        Ok(())
    }
}

/// A checkpoint whose chunks are being stored; see [`Store::begin_checkpoint`].
pub struct StagedCheckpoint {
    collection_id: String,
    generation: i64,
    seq: i64,
    byte_count: usize,
    chunks_written: usize,
}

impl StagedCheckpoint {
    /// Returns whether every chunk is written, so [`Store::finish_checkpoint`] can run.
    pub fn is_complete(&self) -> bool {
        self.chunks_written >= self.chunk_count()
    }

    fn chunk_count(&self) -> usize {
        self.byte_count.div_ceil(CHECKPOINT_CHUNK_BYTES)
    }
}

/// A stored index checkpoint.
pub struct Checkpoint {
    /// Every record write with a sequence number up to this one is in the checkpoint.
    pub seq: i64,
    pub bytes: Vec<u8>,
}

/// The depth of the b-tree check that [`check_integrity`] runs after the page HMACs.
#[derive(Clone, Copy)]
pub(crate) enum IntegrityCheck {
    /// `PRAGMA quick_check`: page structure, without checking that indexes match
    /// their tables.
    Quick,
    /// `PRAGMA integrity_check`: everything, including index contents.
    Full,
}

/// Runs `PRAGMA cipher_integrity_check`, which checks the HMAC of every page, then
/// SQLite's quick or full integrity check. The first problem found is the error.
pub(crate) fn check_integrity(
    connection: &Connection,
    path: &Path,
    check: IntegrityCheck,
) -> Result<(), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let mut statement = connection.prepare("PRAGMA cipher_integrity_check")?;
    let problems: Vec<String> = statement
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if let Some(problem) = problems.into_iter().next() {
        return Err(corrupt(problem));
    }

    let pragma = match check {
        IntegrityCheck::Quick => "PRAGMA quick_check",
        IntegrityCheck::Full => "PRAGMA integrity_check",
    };
    let result: String = connection.query_row(pragma, [], |row| row.get(0))?;
    if result != "ok" {
        return Err(corrupt(result));
    }
    Ok(())
}

/// Keys a new connection to the database at `path` and checks the key by reading a
/// page, so that nothing is written with a wrong key.
pub(crate) fn apply_key(
    connection: &Connection,
    key: &MasterKey,
    path: &Path,
) -> Result<(), StoreError> {
    let literal = key.sqlcipher_literal();
    connection.pragma_update(None, "key", literal.as_str())?;
    // SQLCipher would print its own lines on stderr for a wrong key. The error
    // returned below reports the same in the server's log format. The setting
    // takes effect only once the connection has a key.
    connection.pragma_update(None, "cipher_log_level", "NONE")?;

    // SQLCipher checks the key on the first read of a page, so read one now,
    // before the journal mode or the schema can be touched.
    let check: Result<i64, rusqlite::Error> =
        connection.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0));
    match check {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(error, _))
            if error.code == rusqlite::ErrorCode::NotADatabase =>
        {
            Err(StoreError::WrongKey {
                path: path.to_path_buf(),
            })
        }
        Err(error) => Err(error.into()),
    }
}

/// Fails with [`StoreError::CollectionMissing`] unless the collection exists.
fn require_collection(
    transaction: &Transaction<'_>,
    collection_id: &str,
) -> Result<(), StoreError> {
    let exists: bool = transaction.query_row(
        "SELECT count(*) > 0 FROM collections WHERE id = ?1",
        [collection_id],
        |row| row.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::CollectionMissing(collection_id.to_string()))
    }
}

/// Takes the next catalog position. Positions order tenants, databases and
/// collections by creation and are never reused.
fn next_position(transaction: &Transaction<'_>) -> Result<i64, StoreError> {
    let next: i64 = transaction.query_row(
        "UPDATE meta SET value = value + 1 WHERE key = 'next_position' RETURNING value",
        [],
        |row| row.get(0),
    )?;
    Ok(next - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KEY_BYTES;

    fn record(id: &str, position: i64) -> RecordRow {
        RecordRow {
            id: id.into(),
            position,
            seq: 0,
            document: Some(format!("document {id}")),
            metadata_json: None,
            uri: None,
            embedding: 1.0f32.to_le_bytes().to_vec(),
        }
    }

    fn setup(dir: &Path) -> (PathBuf, Store) {
        let path = dir.join("test.db");
        let mut store = Store::create(&path, &MasterKey::from_bytes([3; KEY_BYTES])).unwrap();
        store.create_tenant("t").unwrap();
        store.create_database("d-id", "t", "d").unwrap();
        store
            .create_collection(&CollectionRow {
                id: "c-id".into(),
                database_id: "d-id".into(),
                name: "c".into(),
                dimension: None,
                configuration_json: "{}".into(),
                metadata_json: None,
                schema_json: None,
                position: 0,
            })
            .unwrap();
        (path, store)
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut store) = setup(dir.path());
        let seq = store
            .write_records("c-id", Some(1), &[RecordWrite::Put(record("a", 1))])
            .unwrap();
        assert_eq!(seq, 1);
        drop(store);

        let store = Store::open(&path, &MasterKey::from_bytes([3; KEY_BYTES])).unwrap();
        let snapshot = store.load_catalog().unwrap();
        assert_eq!(snapshot.collections[0].dimension, Some(1));
        assert_eq!(snapshot.last_seq, 1);
        let mut ids = Vec::new();
        store
            .for_each_record("c-id", |row| {
                ids.push(row.id);
                Ok(())
            })
            .unwrap();
        assert_eq!(ids, ["a"]);
        store.check_integrity().unwrap();
    }

    /// Bytes that differ at every position, so a reordered chunk is detected.
    fn pattern(length: usize) -> Vec<u8> {
        (0..length).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn checkpoint_round_trip_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut store) = setup(dir.path());
        assert!(store.read_checkpoint("c-id").unwrap().is_none());
        let bytes = pattern(2 * CHECKPOINT_CHUNK_BYTES + 17);
        assert!(store.write_checkpoint("c-id", 7, &bytes).unwrap());
        drop(store);

        let store = Store::open(&path, &MasterKey::from_bytes([3; KEY_BYTES])).unwrap();
        let checkpoint = store.read_checkpoint("c-id").unwrap().unwrap();
        assert_eq!(checkpoint.seq, 7);
        assert!(checkpoint.bytes == bytes);
    }

    #[test]
    fn older_checkpoint_does_not_replace_newer() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, mut store) = setup(dir.path());
        assert!(store.write_checkpoint("c-id", 5, b"five").unwrap());
        assert!(!store.write_checkpoint("c-id", 4, b"four").unwrap());
        assert!(store.write_checkpoint("c-id", 5, b"five again").unwrap());
        let checkpoint = store.read_checkpoint("c-id").unwrap().unwrap();
        assert_eq!(
            (checkpoint.seq, checkpoint.bytes),
            (5, b"five again".to_vec())
        );
    }

    #[test]
    fn checkpoint_goes_with_its_collection() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, mut store) = setup(dir.path());
        store.write_checkpoint("c-id", 1, b"graph").unwrap();
        store.delete_collection("c-id").unwrap();
        assert!(store.read_checkpoint("c-id").unwrap().is_none());
        let chunks: i64 = store
            .connection
            .query_row("SELECT count(*) FROM index_checkpoint_chunks", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(chunks, 0);
        let result = store.write_checkpoint("c-id", 2, b"graph");
        assert!(matches!(result, Err(StoreError::CollectionMissing(_))));
    }

    #[test]
    fn checkpoint_with_missing_chunk_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, mut store) = setup(dir.path());
        let bytes = pattern(CHECKPOINT_CHUNK_BYTES + 1);
        store.write_checkpoint("c-id", 1, &bytes).unwrap();
        store
            .connection
            .execute("DELETE FROM index_checkpoint_chunks WHERE chunk = 0", [])
            .unwrap();
        let result = store.read_checkpoint("c-id");
        assert!(
            matches!(result, Err(StoreError::BadValue(_))),
            "{:?}",
            result.err()
        );
    }

    /// Opens the database again, which migrates it, and checks its schema version.
    fn reopen_migrated(path: &Path) -> Store {
        let store = Store::open(path, &MasterKey::from_bytes([3; KEY_BYTES])).unwrap();
        assert_eq!(
            store.meta_value("schema_version").unwrap(),
            Some(SCHEMA_VERSION)
        );
        store
    }

    #[test]
    fn version_1_database_gains_checkpoint_tables() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut store) = setup(dir.path());
        store
            .write_records("c-id", Some(1), &[RecordWrite::Put(record("a", 1))])
            .unwrap();
        store
            .connection
            .execute_batch(
                "DROP TABLE index_checkpoint_chunks; DROP TABLE index_checkpoints;
                 UPDATE meta SET value = 1 WHERE key = 'schema_version';",
            )
            .unwrap();
        drop(store);

        let mut store = reopen_migrated(&path);
        assert_eq!(store.last_seq().unwrap(), 1);
        store.write_checkpoint("c-id", 1, b"graph").unwrap();
        assert!(store.read_checkpoint("c-id").unwrap().is_some());
    }

    fn chunk_rows(store: &Store) -> i64 {
        store
            .connection
            .query_row("SELECT count(*) FROM index_checkpoint_chunks", [], |row| {
                row.get(0)
            })
            .unwrap()
    }

    #[test]
    fn staged_checkpoint_hidden_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, mut store) = setup(dir.path());
        let old = pattern(CHECKPOINT_CHUNK_BYTES + 5);
        store.write_checkpoint("c-id", 3, &old).unwrap();
        let new: Vec<u8> = pattern(2 * CHECKPOINT_CHUNK_BYTES + 9)
            .into_iter()
            .map(|byte| byte ^ 0x55)
            .collect();

        let mut staged = store.begin_checkpoint("c-id", 8, new.len()).unwrap();
        let mut steps = 0;
        while !staged.is_complete() {
            store.write_checkpoint_chunk(&mut staged, &new).unwrap();
            let visible = store.read_checkpoint("c-id").unwrap().unwrap();
            assert_eq!(visible.seq, 3, "previous checkpoint until the finish");
            assert!(visible.bytes == old);
            steps += 1;
        }
        assert_eq!(steps, 3);
        assert!(store.finish_checkpoint(staged).unwrap());

        let current = store.read_checkpoint("c-id").unwrap().unwrap();
        assert_eq!(current.seq, 8);
        assert!(current.bytes == new);
        assert_eq!(chunk_rows(&store), 5, "old chunks kept until deleted");
        let mut deleted = 0;
        while store.delete_superseded_checkpoint_chunk("c-id").unwrap() {
            deleted += 1;
        }
        assert_eq!(deleted, 2);
        assert!(store.read_checkpoint("c-id").unwrap().unwrap().bytes == new);
    }

    #[test]
    fn unfinished_checkpoint_chunks_deleted_after_next() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, mut store) = setup(dir.path());
        let bytes = pattern(CHECKPOINT_CHUNK_BYTES + 1);
        let mut abandoned = store.begin_checkpoint("c-id", 2, bytes.len()).unwrap();
        store
            .write_checkpoint_chunk(&mut abandoned, &bytes)
            .unwrap();
        assert!(
            store.finish_checkpoint(abandoned).is_err(),
            "a chunk is missing"
        );
        assert!(store.read_checkpoint("c-id").unwrap().is_none());

        assert!(store.write_checkpoint("c-id", 4, b"graph").unwrap());
        assert_eq!(chunk_rows(&store), 1);
        let checkpoint = store.read_checkpoint("c-id").unwrap().unwrap();
        assert_eq!((checkpoint.seq, checkpoint.bytes), (4, b"graph".to_vec()));
    }

    #[test]
    fn collection_deleted_while_checkpoint_staged() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, mut store) = setup(dir.path());
        let bytes = pattern(CHECKPOINT_CHUNK_BYTES + 1);
        let mut staged = store.begin_checkpoint("c-id", 2, bytes.len()).unwrap();
        store.write_checkpoint_chunk(&mut staged, &bytes).unwrap();
        store.delete_collection("c-id").unwrap();

        let result = store.write_checkpoint_chunk(&mut staged, &bytes);
        assert!(matches!(result, Err(StoreError::CollectionMissing(_))));
        assert_eq!(chunk_rows(&store), 0);
        assert!(store.read_checkpoint("c-id").unwrap().is_none());
    }

    #[test]
    fn version_2_checkpoint_survives_migration() {
        let dir = tempfile::tempdir().unwrap();
        let (path, store) = setup(dir.path());
        let bytes = pattern(CHECKPOINT_CHUNK_BYTES + 3);
        let (first, second) = bytes.split_at(CHECKPOINT_CHUNK_BYTES);
        store
            .connection
            .execute_batch(
                "DROP TABLE index_checkpoint_chunks; DROP TABLE index_checkpoints;
                 UPDATE meta SET value = 2 WHERE key = 'schema_version';",
            )
            .unwrap();
        store.connection.execute_batch(SCHEMA_V2).unwrap();
        store
            .connection
            .execute(
                "INSERT INTO index_checkpoints (collection_id, seq, byte_count, chunk_count)
                 VALUES ('c-id', 6, ?1, 2)",
                [bytes.len() as i64],
            )
            .unwrap();
        for (number, chunk) in [first, second].into_iter().enumerate() {
            store
                .connection
                .execute(
                    "INSERT INTO index_checkpoint_chunks (collection_id, chunk, bytes)
                     VALUES ('c-id', ?1, ?2)",
                    params![number as i64, chunk],
                )
                .unwrap();
        }
        drop(store);

        let mut store = reopen_migrated(&path);
        let checkpoint = store.read_checkpoint("c-id").unwrap().unwrap();
        assert_eq!(checkpoint.seq, 6);
        assert!(checkpoint.bytes == bytes);

        assert!(store.write_checkpoint("c-id", 7, b"graph").unwrap());
        assert_eq!(chunk_rows(&store), 1, "generation 0 deleted");
        store.delete_collection("c-id").unwrap();
        assert_eq!(chunk_rows(&store), 0, "chunks go with the collection");
    }

    #[test]
    fn wrong_key_rejected_without_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (path, store) = setup(dir.path());
        drop(store);
        let before = std::fs::read(&path).unwrap();

        let result = Store::open(&path, &MasterKey::from_bytes([4; KEY_BYTES]));
        assert!(matches!(result, Err(StoreError::WrongKey { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn write_to_deleted_collection_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, mut store) = setup(dir.path());
        store.delete_collection("c-id").unwrap();
        let result = store.write_records("c-id", None, &[RecordWrite::Put(record("a", 1))]);
        assert!(result.is_err());
    }

    #[test]
    fn plaintext_absent_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut store) = setup(dir.path());
        store
            .write_records(
                "c-id",
                Some(1),
                &[RecordWrite::Put(record("secret-id-7f3a", 1))],
            )
            .unwrap();
        drop(store);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let needle = b"secret-id-7f3a";
            assert!(!bytes.windows(needle.len()).any(|window| window == needle));
        }
        assert!(path.exists());
    }
}
