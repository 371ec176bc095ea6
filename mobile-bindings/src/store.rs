//! The local store: one SQLite file holding everything a phone keeps.
//!
//! - the documents, as append-only Automerge chunks (incremental, and snapshots that replace
//!   them now and then), exactly as the server keeps its own;
//! - the enrolled identity and token, and the campaigns and hamlets assigned;
//! - per server storage: the sync state of each document, and the *receipt* of what that server
//!   acknowledged (its heads, which it announces only once it has committed them);
//! - an index of responses (status, day, the last change made here, whether it is acknowledged)
//!   so that lists and counts need not read every document.
//!
//! Every write is one transaction in WAL mode with `synchronous=FULL`: after a call returns the
//! write survives the app being killed or the phone losing power, and a write interrupted
//! half-way leaves nothing behind. A chunk and the index rows it implies are written together,
//! so the index never disagrees with the documents.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

/// The schema version this code writes (SQLite's `user_version`).
const SCHEMA_VERSION: i64 = 5;

/// The first version whose response index agrees with its documents by construction (see
/// [`Store::upgraded_from`]).
const INDEX_KEPT_FROM: i64 = 3;

const SCHEMA_V1: &[&str] = &[
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
    "CREATE TABLE identity (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        server TEXT NOT NULL,
        collector TEXT NOT NULL,
        token TEXT,
        device_name TEXT NOT NULL,
        enrolled_on TEXT NOT NULL
    )",
    "CREATE TABLE assignments (
        campaign TEXT NOT NULL,
        campaign_document TEXT NOT NULL,
        hamlet TEXT NOT NULL,
        PRIMARY KEY (campaign, hamlet)
    )",
    "CREATE TABLE documents (
        id TEXT PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('campaign', 'ledger')),
        campaign TEXT NOT NULL,
        hamlet TEXT
    )",
    "CREATE TABLE chunks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        document TEXT NOT NULL REFERENCES documents (id),
        snapshot INTEGER NOT NULL,
        data BLOB NOT NULL
    )",
    "CREATE INDEX chunks_by_document ON chunks (document, seq)",
    "CREATE TABLE sync_states (
        document TEXT NOT NULL,
        server TEXT NOT NULL,
        state BLOB NOT NULL,
        PRIMARY KEY (document, server)
    )",
    "CREATE TABLE receipts (
        document TEXT NOT NULL,
        server TEXT NOT NULL,
        heads BLOB NOT NULL,
        PRIMARY KEY (document, server)
    )",
    "CREATE TABLE responses (
        id TEXT PRIMARY KEY NOT NULL,
        document TEXT NOT NULL,
        campaign TEXT NOT NULL,
        hamlet TEXT NOT NULL,
        collector TEXT,
        status TEXT NOT NULL,
        recorded_on TEXT,
        last_change BLOB,
        acknowledged INTEGER NOT NULL DEFAULT 0
    )",
    "CREATE INDEX responses_by_status ON responses (status, recorded_on)",
];

/// Version 2: what the store keeps apart from its documents, each with the reason.
const SCHEMA_V2: &[&str] = &[
    // Chunks that did not load when the store was opened (two writers, a disk fault): kept,
    // never loaded again, listed for the collector and for export.
    "CREATE TABLE set_aside (
        seq INTEGER PRIMARY KEY,
        document TEXT NOT NULL,
        snapshot INTEGER NOT NULL,
        data BLOB NOT NULL,
        reason TEXT NOT NULL
    )",
    // A server's refusal of a document's changes: that document stops syncing with that server
    // storage until new changes are made, and the collector is shown the reason.
    "CREATE TABLE refusals (
        document TEXT NOT NULL,
        server TEXT NOT NULL,
        reason TEXT NOT NULL,
        heads BLOB NOT NULL,
        PRIMARY KEY (document, server)
    )",
    // Changes by other devices' actors that arrived in a bundle: carried, never merged into the
    // phone's own documents (a server may refuse them; that must not block the phone's own).
    "CREATE TABLE carried (
        hash BLOB PRIMARY KEY NOT NULL,
        document TEXT NOT NULL,
        actor TEXT NOT NULL,
        data BLOB NOT NULL,
        source TEXT NOT NULL
    )",
];

/// Version 3: the response index is keyed by ledger and response id, not the id alone (two
/// ledgers may hold the same response id: a row of one used to take the place of the other's).
const SCHEMA_V3: &[&str] = &[
    "CREATE TABLE responses_v3 (
        id TEXT NOT NULL,
        document TEXT NOT NULL,
        campaign TEXT NOT NULL,
        hamlet TEXT NOT NULL,
        collector TEXT,
        status TEXT NOT NULL,
        recorded_on TEXT,
        last_change BLOB,
        acknowledged INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (document, id)
    )",
    "INSERT INTO responses_v3 (id, document, campaign, hamlet, collector, status, recorded_on, last_change, acknowledged)
     SELECT id, document, campaign, hamlet, collector, status, recorded_on, last_change, acknowledged FROM responses",
    "DROP TABLE responses",
    "ALTER TABLE responses_v3 RENAME TO responses",
    "CREATE INDEX responses_by_status ON responses (status, recorded_on)",
    "CREATE INDEX responses_by_id ON responses (id)",
];

/// Version 4: the fingerprint of the enrolled server's certificate, when the enrollment code
/// pinned one (the server's address is then `https://`).
const SCHEMA_V4: &[&str] = &["ALTER TABLE identity ADD COLUMN certificate_pin TEXT"];

/// Version 5: the plaintext of this device's own responses to sealed campaigns (their ledger
/// holds only ciphertext), kept here only until the response is submitted (or voided) and a
/// server acknowledged it.
const SCHEMA_V5: &[&str] = &["CREATE TABLE plaintext (
        document TEXT NOT NULL,
        id TEXT NOT NULL,
        answers TEXT NOT NULL,
        PRIMARY KEY (document, id)
    )"];

/// What went wrong with the local store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be opened or created.
    #[error("cannot open the store {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        source: sqlx::Error,
    },
    /// The file was written by a newer version of this library.
    #[error("the store has schema version {found}; this version reads up to {SCHEMA_VERSION}")]
    NewerSchema {
        /// The version found.
        found: i64,
    },
    /// A query failed.
    #[error("store: {context}: {source}")]
    Query {
        /// What was being done.
        context: &'static str,
        /// Why it failed.
        source: sqlx::Error,
    },
    /// A stored value does not read back (damaged or foreign data).
    #[error("store: {0}")]
    Corrupt(String),
    /// Another program (or another `Collector` in this one) has the store open: two writers
    /// would give this device's actor the same sequence number twice and damage the store.
    #[error("the store {path} is in use by another program: close it there first")]
    InUse {
        /// The store file.
        path: String,
    },
}

fn failed(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { context, source }
}

/// The enrolled identity.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredIdentity {
    /// The server address given at enrollment.
    pub server: String,
    /// The collector's person id.
    pub collector: String,
    /// The device token; `None` when set up against an open server without enrollment.
    pub token: Option<String>,
    /// The device's name.
    pub device_name: String,
    /// The day of enrollment.
    pub enrolled_on: String,
    /// The server certificate's SHA-256 fingerprint (hex), when the enrollment pinned one.
    pub certificate_pin: Option<String>,
}

/// The token is the device's key: it never shows in logs or debug output.
impl std::fmt::Debug for StoredIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredIdentity")
            .field("server", &self.server)
            .field("collector", &self.collector)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("device_name", &self.device_name)
            .field("enrolled_on", &self.enrolled_on)
            .field("certificate_pin", &self.certificate_pin)
            .finish()
    }
}

/// A campaign and hamlet assigned to the collector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The campaign id.
    pub campaign: String,
    /// The campaign document's id.
    pub campaign_document: String,
    /// The hamlet's unit id.
    pub hamlet: String,
}

/// A document the store holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentRecord {
    /// Its id (bs58check).
    pub id: String,
    /// `campaign` or `ledger`.
    pub kind: String,
    /// Its campaign.
    pub campaign: String,
    /// Its hamlet, for a ledger.
    pub hamlet: Option<String>,
}

/// A stored chunk.
#[derive(Clone, Debug)]
pub struct StoredChunk {
    /// Order of writing.
    pub seq: i64,
    /// The document.
    pub document: String,
    /// Whether it is a whole-document snapshot.
    pub snapshot: bool,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A chunk that did not load, kept apart with the reason.
#[derive(Clone, Debug)]
pub struct SetAsideChunk {
    /// The chunk as it was stored.
    pub chunk: StoredChunk,
    /// Why it did not load.
    pub reason: String,
}

/// A response as the index knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRow {
    /// The response id.
    pub id: String,
    /// Its ledger.
    pub document: String,
    /// Its campaign.
    pub campaign: String,
    /// Its hamlet.
    pub hamlet: String,
    /// Who recorded it.
    pub collector: Option<String>,
    /// `draft`, `submitted` or `voided`.
    pub status: String,
    /// Day recorded.
    pub recorded_on: Option<String>,
    /// The last change made to it on this device (32 bytes), if any. `None` in an update keeps
    /// the stored value: changes from elsewhere do not make a response ours.
    pub last_change: Option<Vec<u8>>,
    /// Whether a server acknowledged its last change made here.
    pub acknowledged: bool,
}

/// Everything one step writes, in one transaction.
#[derive(Clone, Debug, Default)]
pub struct DocWrite {
    /// The document.
    pub document: String,
    /// New changes to append, if any.
    pub chunk: Option<Vec<u8>>,
    /// Index rows to insert or update.
    pub index: Vec<IndexRow>,
    /// Sync state and receipt for a server storage: (server, state, acknowledged heads).
    pub sync: Option<(String, Vec<u8>, Vec<u8>)>,
    /// Responses of [`DocWrite::document`] whose last change here is now acknowledged.
    pub acknowledged: Vec<String>,
}

/// Filters for [`Store::responses`]; `None` matches everything.
#[derive(Clone, Debug, Default)]
pub struct IndexFilter {
    /// Only this campaign.
    pub campaign: Option<String>,
    /// Only this hamlet.
    pub hamlet: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only recorded on this day.
    pub recorded_on: Option<String>,
    /// Only recorded by this collector.
    pub collector: Option<String>,
}

/// Counts of one collector's responses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexCounts {
    /// Recorded on the given day, whatever their status.
    pub recorded_today: u64,
    /// Drafts.
    pub drafts: u64,
    /// Submitted, last change here not yet acknowledged.
    pub pending: u64,
    /// Submitted and acknowledged.
    pub acknowledged: u64,
    /// Voided.
    pub voided: u64,
}

/// The store.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    /// The exclusive lock on `<store>.lock`, held while this store (any clone of it) is open.
    lock: std::sync::Arc<std::sync::Mutex<Option<std::fs::File>>>,
    /// The schema version the file had when opened, if it was older (and not new).
    upgraded_from: Option<i64>,
}

/// Takes the exclusive lock that makes one store one writer. The lock is the operating
/// system's (`flock` on Linux and Android, `LockFileEx` on Windows): it goes with the process,
/// so a killed app never leaves a stale lock behind. The lock file itself is never deleted
/// (deleting it would let two openers lock two different files).
fn lock_store(path: &Path, shown: &str) -> Result<std::fs::File, StoreError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let file = owner_only(std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false))
        .open(&name)
        .map_err(|e| StoreError::Open { path: shown.to_owned(), source: sqlx::Error::Io(e) })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse { path: shown.to_owned() }),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::Open { path: shown.to_owned(), source: sqlx::Error::Io(e) })
        }
    }
}

/// Files of the store are readable by their owner only: they hold the device token.
#[cfg(unix)]
fn owner_only(options: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    options.mode(0o600)
}

#[cfg(not(unix))]
fn owner_only(options: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    options
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        let open_error = |source| StoreError::Open { path: shown.clone(), source };
        if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|e| open_error(sqlx::Error::Io(e)))?;
        }
        // The lock first: nothing of the file is read or written before it is ours.
        let lock = lock_store(path, &shown)?;
        // Created by us, readable by the owner only (the file holds the device token); SQLite
        // gives its journal files the same permissions.
        owner_only(std::fs::OpenOptions::new().write(true).create(true).truncate(false))
            .open(path)
            .map_err(|e| open_error(sqlx::Error::Io(e)))?;
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(open_error)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // One connection: the library serialises its writes anyway, and a single connection
        // keeps the in-memory page cache warm for the reads that follow them.
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.map_err(open_error)?;
        let mut store =
            Store { pool, lock: std::sync::Arc::new(std::sync::Mutex::new(Some(lock))), upgraded_from: None };
        let found = store.migrate().await?;
        store.upgraded_from = Some(found).filter(|v| (1..INDEX_KEPT_FROM).contains(v));
        Ok(store)
    }

    /// The schema version of a store written by an older version of this library, when this
    /// open upgraded it: its index and documents may disagree in ways this version prevents.
    pub fn upgraded_from(&self) -> Option<i64> {
        self.upgraded_from
    }

    /// Brings the schema up to date; returns the version found.
    async fn migrate(&self) -> Result<i64, StoreError> {
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&self.pool)
            .await
            .map_err(failed("reading the schema"))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { found: version });
        }
        if version == SCHEMA_VERSION {
            return Ok(version);
        }
        let context = "updating the schema";
        let mut tx = self.pool.begin().await.map_err(failed(context))?;
        let steps: [(i64, &[&str]); 5] =
            [(1, SCHEMA_V1), (2, SCHEMA_V2), (3, SCHEMA_V3), (4, SCHEMA_V4), (5, SCHEMA_V5)];
        for (step, statements) in steps {
            if version >= step {
                continue;
            }
            for statement in statements {
                sqlx::query(sqlx::AssertSqlSafe(*statement)).execute(&mut *tx).await.map_err(failed(context))?;
            }
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA user_version = {SCHEMA_VERSION}")))
            .execute(&mut *tx)
            .await
            .map_err(failed(context))?;
        tx.commit().await.map_err(failed(context))?;
        Ok(version)
    }

    /// Closes the pool and releases the lock (tests reopen the file afterwards).
    pub async fn close(&self) {
        self.pool.close().await;
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }

    /// A value of the `meta` table.
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("reading settings"))
    }

    /// Sets a value of the `meta` table.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(failed("writing settings"))?;
        Ok(())
    }

    /// Sets `key` to `value` unless it has a value; returns the value in force.
    pub async fn meta_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(failed("writing settings"))?;
        self.meta(key).await?.ok_or_else(|| StoreError::Corrupt(format!("setting {key} vanished")))
    }

    /// The enrolled identity, if any.
    pub async fn identity(&self) -> Result<Option<StoredIdentity>, StoreError> {
        let row = sqlx::query(
            "SELECT server, collector, token, device_name, enrolled_on, certificate_pin FROM identity WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(failed("reading the identity"))?;
        Ok(row.map(|r| StoredIdentity {
            server: r.get(0),
            collector: r.get(1),
            token: r.get(2),
            device_name: r.get(3),
            enrolled_on: r.get(4),
            certificate_pin: r.get(5),
        }))
    }

    /// Saves an enrollment: the identity, the assignments (replacing the old ones), and the
    /// new documents with their first chunk. One transaction.
    pub async fn save_enrollment(
        &self,
        identity: &StoredIdentity,
        assignments: &[Assignment],
        new_documents: &[(DocumentRecord, Option<Vec<u8>>)],
    ) -> Result<(), StoreError> {
        let context = "saving the enrollment";
        let mut tx = self.pool.begin().await.map_err(failed(context))?;
        sqlx::query(
            "INSERT INTO identity (id, server, collector, token, device_name, enrolled_on, certificate_pin)
             VALUES (1, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET server = excluded.server, collector = excluded.collector,
               token = excluded.token, device_name = excluded.device_name, enrolled_on = excluded.enrolled_on,
               certificate_pin = excluded.certificate_pin",
        )
        .bind(&identity.server)
        .bind(&identity.collector)
        .bind(&identity.token)
        .bind(&identity.device_name)
        .bind(&identity.enrolled_on)
        .bind(&identity.certificate_pin)
        .execute(&mut *tx)
        .await
        .map_err(failed(context))?;
        sqlx::query("DELETE FROM assignments").execute(&mut *tx).await.map_err(failed(context))?;
        for a in assignments {
            sqlx::query("INSERT INTO assignments (campaign, campaign_document, hamlet) VALUES (?, ?, ?)")
                .bind(&a.campaign)
                .bind(&a.campaign_document)
                .bind(&a.hamlet)
                .execute(&mut *tx)
                .await
                .map_err(failed(context))?;
        }
        for (doc, chunk) in new_documents {
            sqlx::query(
                "INSERT INTO documents (id, kind, campaign, hamlet) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(&doc.id)
            .bind(&doc.kind)
            .bind(&doc.campaign)
            .bind(&doc.hamlet)
            .execute(&mut *tx)
            .await
            .map_err(failed(context))?;
            if let Some(chunk) = chunk {
                insert_chunk(&mut tx, &doc.id, true, chunk).await?;
            }
        }
        tx.commit().await.map_err(failed(context))
    }

    /// The assignments.
    pub async fn assignments(&self) -> Result<Vec<Assignment>, StoreError> {
        let rows = sqlx::query("SELECT campaign, campaign_document, hamlet FROM assignments ORDER BY campaign, hamlet")
            .fetch_all(&self.pool)
            .await
            .map_err(failed("reading assignments"))?;
        Ok(rows
            .into_iter()
            .map(|r| Assignment { campaign: r.get(0), campaign_document: r.get(1), hamlet: r.get(2) })
            .collect())
    }

    /// Every document.
    pub async fn documents(&self) -> Result<Vec<DocumentRecord>, StoreError> {
        let rows = sqlx::query("SELECT id, kind, campaign, hamlet FROM documents ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(failed("reading documents"))?;
        Ok(rows
            .into_iter()
            .map(|r| DocumentRecord { id: r.get(0), kind: r.get(1), campaign: r.get(2), hamlet: r.get(3) })
            .collect())
    }

    /// Every chunk of every document, in writing order.
    pub async fn chunks(&self) -> Result<Vec<StoredChunk>, StoreError> {
        let rows = sqlx::query("SELECT seq, document, snapshot, data FROM chunks ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .map_err(failed("reading documents"))?;
        Ok(rows
            .into_iter()
            .map(|r| StoredChunk {
                seq: r.get(0),
                document: r.get(1),
                snapshot: r.get::<i64, _>(2) != 0,
                data: r.get(3),
            })
            .collect())
    }

    /// The chunks of one document, in writing order.
    pub async fn chunks_of(&self, document: &str) -> Result<Vec<StoredChunk>, StoreError> {
        let rows = sqlx::query("SELECT seq, document, snapshot, data FROM chunks WHERE document = ? ORDER BY seq")
            .bind(document)
            .fetch_all(&self.pool)
            .await
            .map_err(failed("reading a document"))?;
        Ok(rows
            .into_iter()
            .map(|r| StoredChunk {
                seq: r.get(0),
                document: r.get(1),
                snapshot: r.get::<i64, _>(2) != 0,
                data: r.get(3),
            })
            .collect())
    }

    /// Applies one step: new changes, index rows, sync state and receipt, acknowledgements.
    /// Returns the sequence number of the chunk written, if any.
    pub async fn write(&self, write: &DocWrite) -> Result<Option<i64>, StoreError> {
        let context = "writing a change";
        let mut tx = self.pool.begin().await.map_err(failed(context))?;
        let seq = match &write.chunk {
            Some(chunk) => Some(insert_chunk(&mut tx, &write.document, false, chunk).await?),
            None => None,
        };
        for row in &write.index {
            upsert_index_row(&mut tx, row).await?;
        }
        if let Some((server, state, heads)) = &write.sync {
            sqlx::query(
                "INSERT INTO sync_states (document, server, state) VALUES (?, ?, ?)
                 ON CONFLICT (document, server) DO UPDATE SET state = excluded.state",
            )
            .bind(&write.document)
            .bind(server)
            .bind(state)
            .execute(&mut *tx)
            .await
            .map_err(failed(context))?;
            sqlx::query(
                "INSERT INTO receipts (document, server, heads) VALUES (?, ?, ?)
                 ON CONFLICT (document, server) DO UPDATE SET heads = excluded.heads",
            )
            .bind(&write.document)
            .bind(server)
            .bind(heads)
            .execute(&mut *tx)
            .await
            .map_err(failed(context))?;
        }
        for id in &write.acknowledged {
            sqlx::query("UPDATE responses SET acknowledged = 1 WHERE document = ? AND id = ?")
                .bind(&write.document)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(failed(context))?;
            // A submitted (or voided) response a server holds: its plaintext is forgotten.
            sqlx::query(
                "DELETE FROM plaintext WHERE document = ?1 AND id = ?2 AND EXISTS (SELECT 1 FROM responses r
                 WHERE r.document = ?1 AND r.id = ?2 AND r.status IN ('submitted', 'voided'))",
            )
            .bind(&write.document)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(failed(context))?;
        }
        tx.commit().await.map_err(failed(context))?;
        Ok(seq)
    }

    /// Keeps the plaintext of a response to a sealed campaign (JSON answers), until it is
    /// submitted and acknowledged.
    pub async fn set_plaintext(&self, document: &str, id: &str, answers: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO plaintext (document, id, answers) VALUES (?, ?, ?)
             ON CONFLICT (document, id) DO UPDATE SET answers = excluded.answers",
        )
        .bind(document)
        .bind(id)
        .bind(answers)
        .execute(&self.pool)
        .await
        .map_err(failed("keeping a draft's answers"))?;
        Ok(())
    }

    /// The plaintext kept for a response to a sealed campaign, if still held.
    pub async fn plaintext(&self, document: &str, id: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT answers FROM plaintext WHERE document = ? AND id = ?")
            .bind(document)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("reading a draft's answers"))
    }

    /// Every plaintext held: (document, response id) → JSON answers.
    pub async fn plaintexts(&self) -> Result<std::collections::HashMap<(String, String), String>, StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as("SELECT document, id, answers FROM plaintext")
            .fetch_all(&self.pool)
            .await
            .map_err(failed("reading the drafts' answers"))?;
        Ok(rows.into_iter().map(|(d, i, a)| ((d, i), a)).collect())
    }

    /// Replaces the chunks of `document` up to `up_to` (inclusive) by one snapshot. The
    /// snapshot is inserted before the old chunks are deleted, in one transaction.
    pub async fn compact(&self, document: &str, snapshot: &[u8], up_to: i64) -> Result<i64, StoreError> {
        let context = "compacting a document";
        let mut tx = self.pool.begin().await.map_err(failed(context))?;
        let seq = insert_chunk(&mut tx, document, true, snapshot).await?;
        sqlx::query("DELETE FROM chunks WHERE document = ? AND seq <= ?")
            .bind(document)
            .bind(up_to)
            .execute(&mut *tx)
            .await
            .map_err(failed(context))?;
        tx.commit().await.map_err(failed(context))?;
        Ok(seq)
    }

    /// The sync state kept for `document` with the server storage `server`.
    pub async fn sync_state(&self, document: &str, server: &str) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT state FROM sync_states WHERE document = ? AND server = ?")
            .bind(document)
            .bind(server)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("reading a sync state"))
    }

    /// Every receipt: (document, server, acknowledged heads).
    pub async fn receipts(&self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        let rows = sqlx::query("SELECT document, server, heads FROM receipts ORDER BY document, server")
            .fetch_all(&self.pool)
            .await
            .map_err(failed("reading receipts"))?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    /// Index rows matching `filter`, newest day first, then by id.
    pub async fn responses(&self, filter: &IndexFilter) -> Result<Vec<IndexRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, document, campaign, hamlet, collector, status, recorded_on, last_change, acknowledged
             FROM responses
             WHERE (?1 IS NULL OR campaign = ?1) AND (?2 IS NULL OR hamlet = ?2) AND (?3 IS NULL OR status = ?3)
               AND (?4 IS NULL OR recorded_on = ?4) AND (?5 IS NULL OR collector = ?5)
             ORDER BY recorded_on DESC, id",
        )
        .bind(&filter.campaign)
        .bind(&filter.hamlet)
        .bind(&filter.status)
        .bind(&filter.recorded_on)
        .bind(&filter.collector)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("listing responses"))?;
        Ok(rows.into_iter().map(index_row).collect())
    }

    /// The index rows of a response id: one, unless two ledgers hold the same id.
    pub async fn response(&self, id: &str) -> Result<Vec<IndexRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, document, campaign, hamlet, collector, status, recorded_on, last_change, acknowledged
             FROM responses WHERE id = ? ORDER BY document",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("reading a response"))?;
        Ok(rows.into_iter().map(index_row).collect())
    }

    /// Responses whose last change here is not acknowledged, with that change.
    pub async fn unacknowledged(&self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, document, last_change FROM responses WHERE acknowledged = 0 AND last_change IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(failed("reading responses"))?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    /// Counts of `collector`'s responses.
    pub async fn counts(&self, collector: &str, today: &str) -> Result<IndexCounts, StoreError> {
        let row = sqlx::query(
            "SELECT
               COALESCE(SUM(recorded_on = ?2), 0),
               COALESCE(SUM(status = 'draft'), 0),
               COALESCE(SUM(status = 'submitted' AND acknowledged = 0 AND last_change IS NOT NULL), 0),
               COALESCE(SUM(status = 'submitted' AND (acknowledged = 1 OR last_change IS NULL)), 0),
               COALESCE(SUM(status = 'voided'), 0)
             FROM responses WHERE collector = ?1",
        )
        .bind(collector)
        .bind(today)
        .fetch_one(&self.pool)
        .await
        .map_err(failed("counting responses"))?;
        let n = |i: usize| u64::try_from(row.get::<i64, _>(i)).unwrap_or(0);
        Ok(IndexCounts { recorded_today: n(0), drafts: n(1), pending: n(2), acknowledged: n(3), voided: n(4) })
    }

    /// Moves chunks that do not load out of the document, into `set_aside`, each with its
    /// reason; one transaction.
    pub async fn set_aside(&self, chunks: &[(i64, String)]) -> Result<(), StoreError> {
        let context = "setting aside a damaged chunk";
        let mut tx = self.pool.begin().await.map_err(failed(context))?;
        for (seq, reason) in chunks {
            sqlx::query(
                "INSERT INTO set_aside (seq, document, snapshot, data, reason)
                 SELECT seq, document, snapshot, data, ? FROM chunks WHERE seq = ?",
            )
            .bind(reason)
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(failed(context))?;
            sqlx::query("DELETE FROM chunks WHERE seq = ?")
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(failed(context))?;
        }
        tx.commit().await.map_err(failed(context))
    }

    /// The chunks set aside, oldest first.
    pub async fn set_aside_chunks(&self) -> Result<Vec<SetAsideChunk>, StoreError> {
        let rows = sqlx::query("SELECT seq, document, snapshot, data, reason FROM set_aside ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .map_err(failed("reading what was set aside"))?;
        Ok(rows
            .into_iter()
            .map(|r| SetAsideChunk {
                chunk: StoredChunk {
                    seq: r.get(0),
                    document: r.get(1),
                    snapshot: r.get::<i64, _>(2) != 0,
                    data: r.get(3),
                },
                reason: r.get(4),
            })
            .collect())
    }

    /// Keeps a server's refusal of a document's changes (replacing an earlier one).
    pub async fn set_refusal(
        &self,
        document: &str,
        server: &str,
        reason: &str,
        heads: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refusals (document, server, reason, heads) VALUES (?, ?, ?, ?)
             ON CONFLICT (document, server) DO UPDATE SET reason = excluded.reason, heads = excluded.heads",
        )
        .bind(document)
        .bind(server)
        .bind(reason)
        .bind(heads)
        .execute(&self.pool)
        .await
        .map_err(failed("keeping a refusal"))?;
        Ok(())
    }

    /// Forgets a refusal: the document went through.
    pub async fn clear_refusal(&self, document: &str, server: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM refusals WHERE document = ? AND server = ?")
            .bind(document)
            .bind(server)
            .execute(&self.pool)
            .await
            .map_err(failed("forgetting a refusal"))?;
        Ok(())
    }

    /// Every refusal kept: (document, server, reason).
    pub async fn refusals(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = sqlx::query("SELECT document, server, reason FROM refusals ORDER BY document, server")
            .fetch_all(&self.pool)
            .await
            .map_err(failed("reading refusals"))?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    /// The index rows of one document.
    pub async fn index_of(&self, document: &str) -> Result<Vec<IndexRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, document, campaign, hamlet, collector, status, recorded_on, last_change, acknowledged
             FROM responses WHERE document = ? ORDER BY id",
        )
        .bind(document)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("reading the index"))?;
        Ok(rows.into_iter().map(index_row).collect())
    }

    /// Corrects the index of `document`: rows written (inserted, or updated keeping their
    /// last change when the row gives none) and rows removed, in one transaction.
    pub async fn repair_index(&self, document: &str, rows: &[IndexRow], removed: &[String]) -> Result<(), StoreError> {
        let context = "repairing the index";
        let mut tx = self.pool.begin().await.map_err(failed(context))?;
        for row in rows {
            upsert_index_row(&mut tx, row).await?;
        }
        for id in removed {
            sqlx::query("DELETE FROM responses WHERE id = ? AND document = ?")
                .bind(id)
                .bind(document)
                .execute(&mut *tx)
                .await
                .map_err(failed(context))?;
        }
        tx.commit().await.map_err(failed(context))
    }

    /// SQLite's own integrity check: `ok` when the file is sound.
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&self.pool)
            .await
            .map_err(failed("checking integrity"))?;
        Ok(rows.join("\n"))
    }
}

fn index_row(r: sqlx::sqlite::SqliteRow) -> IndexRow {
    IndexRow {
        id: r.get(0),
        document: r.get(1),
        campaign: r.get(2),
        hamlet: r.get(3),
        collector: r.get(4),
        status: r.get(5),
        recorded_on: r.get(6),
        last_change: r.get(7),
        acknowledged: r.get::<i64, _>(8) != 0,
    }
}

async fn upsert_index_row(tx: &mut Transaction<'static, Sqlite>, row: &IndexRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO responses (id, document, campaign, hamlet, collector, status, recorded_on, last_change, acknowledged)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (document, id) DO UPDATE SET status = excluded.status, collector = excluded.collector,
           recorded_on = excluded.recorded_on,
           last_change = COALESCE(excluded.last_change, responses.last_change),
           acknowledged = CASE WHEN excluded.last_change IS NULL THEN responses.acknowledged
                               ELSE excluded.acknowledged END",
    )
    .bind(&row.id)
    .bind(&row.document)
    .bind(&row.campaign)
    .bind(&row.hamlet)
    .bind(&row.collector)
    .bind(&row.status)
    .bind(&row.recorded_on)
    .bind(&row.last_change)
    .bind(row.acknowledged)
    .execute(&mut **tx)
    .await
    .map_err(failed("writing the index"))?;
    Ok(())
}

async fn insert_chunk(
    tx: &mut Transaction<'static, Sqlite>,
    document: &str,
    snapshot: bool,
    data: &[u8],
) -> Result<i64, StoreError> {
    let seq: i64 = sqlx::query_scalar("INSERT INTO chunks (document, snapshot, data) VALUES (?, ?, ?) RETURNING seq")
        .bind(document)
        .bind(i64::from(snapshot))
        .bind(data)
        .fetch_one(&mut **tx)
        .await
        .map_err(failed("writing a chunk"))?;
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    /// What makes "a call returns only once its write is durable" true: the settings in force
    /// on the store's connection, read back from SQLite (not the options we passed).
    #[test]
    fn the_store_writes_ahead_and_syncs_every_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        runtime().block_on(async {
            let store = Store::open(&dir.path().join("store.db")).await.expect("opens");
            let journal: String =
                sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&store.pool).await.expect("reads");
            let synchronous: i64 =
                sqlx::query_scalar("PRAGMA synchronous").fetch_one(&store.pool).await.expect("reads");
            assert_eq!((journal.as_str(), synchronous), ("wal", 2), "WAL with synchronous=FULL (2)");
        });
    }

    #[test]
    fn writes_survive_reopening_and_the_index_keeps_what_is_ours() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/store.db");
        runtime().block_on(async {
            let store = Store::open(&path).await.expect("opens");
            let doc = DocumentRecord {
                id: "d1".into(),
                kind: "ledger".into(),
                campaign: "c".into(),
                hamlet: Some("h".into()),
            };
            let identity = StoredIdentity {
                server: "http://x".into(),
                collector: "me".into(),
                token: Some("t".into()),
                device_name: "phone".into(),
                enrolled_on: "2025-06-02".into(),
                certificate_pin: Some("ab".repeat(32)),
            };
            store.save_enrollment(&identity, &[], &[(doc.clone(), Some(vec![1, 2, 3]))]).await.expect("enrolls");
            let row = |status: &str, last: Option<Vec<u8>>, acked: bool| IndexRow {
                id: "r1".into(),
                document: "d1".into(),
                campaign: "c".into(),
                hamlet: "h".into(),
                collector: Some("me".into()),
                status: status.into(),
                recorded_on: Some("2025-06-02".into()),
                last_change: last,
                acknowledged: acked,
            };
            let w = DocWrite {
                document: "d1".into(),
                chunk: Some(vec![4]),
                index: vec![row("submitted", Some(vec![9; 32]), false)],
                ..DocWrite::default()
            };
            store.write(&w).await.expect("writes");
            let counts = store.counts("me", "2025-06-02").await.expect("counts");
            assert_eq!((counts.recorded_today, counts.pending, counts.acknowledged), (1, 1, 0));
            // An update from a sync (no last change of ours) keeps our last change.
            let w =
                DocWrite { document: "d1".into(), index: vec![row("submitted", None, true)], ..DocWrite::default() };
            store.write(&w).await.expect("writes");
            assert_eq!(store.response("r1").await.expect("reads")[0].last_change, Some(vec![9; 32]));
            assert_eq!(store.counts("me", "2025-06-02").await.expect("counts").pending, 1);
            let w = DocWrite { document: "d1".into(), acknowledged: vec!["r1".into()], ..DocWrite::default() };
            store.write(&w).await.expect("writes");
            assert_eq!(store.counts("me", "2025-06-02").await.expect("counts").acknowledged, 1);
            store.close().await;

            let store = Store::open(&path).await.expect("reopens");
            assert_eq!(store.identity().await.expect("reads"), Some(identity));
            let chunks = store.chunks().await.expect("reads");
            assert_eq!(chunks.iter().map(|c| c.data.clone()).collect::<Vec<_>>(), vec![vec![1, 2, 3], vec![4]]);
            let last = chunks.last().map(|c| c.seq).expect("a chunk");
            store.compact("d1", &[7, 7], last).await.expect("compacts");
            let chunks = store.chunks().await.expect("reads");
            assert_eq!(chunks.len(), 1);
            assert!(chunks[0].snapshot);
            assert_eq!(store.integrity_check().await.expect("checks"), "ok");
        });
    }

    fn row(document: &str, id: &str, status: &str) -> IndexRow {
        IndexRow {
            id: id.into(),
            document: document.into(),
            campaign: "c".into(),
            hamlet: document.into(),
            collector: Some("me".into()),
            status: status.into(),
            recorded_on: Some("2025-06-02".into()),
            last_change: Some(vec![1; 32]),
            acknowledged: false,
        }
    }

    /// Two ledgers may hold the same response id: each keeps its own row, and an
    /// acknowledgement in one ledger is not the other's.
    #[test]
    fn the_index_is_keyed_by_ledger_and_response_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        runtime().block_on(async {
            let store = Store::open(&dir.path().join("store.db")).await.expect("opens");
            for (document, status) in [("d1", "draft"), ("d2", "submitted")] {
                let w = DocWrite {
                    document: document.into(),
                    index: vec![row(document, "same", status)],
                    ..DocWrite::default()
                };
                store.write(&w).await.expect("writes");
            }
            let rows = store.response("same").await.expect("reads");
            assert_eq!(
                rows.iter().map(|r| (r.document.as_str(), r.status.as_str())).collect::<Vec<_>>(),
                [("d1", "draft"), ("d2", "submitted")]
            );
            let w = DocWrite { document: "d2".into(), acknowledged: vec!["same".into()], ..DocWrite::default() };
            store.write(&w).await.expect("writes");
            let rows = store.response("same").await.expect("reads");
            assert_eq!(rows.iter().map(|r| r.acknowledged).collect::<Vec<_>>(), [false, true]);
            store.repair_index("d1", &[], &["same".into()]).await.expect("repairs");
            assert_eq!(store.response("same").await.expect("reads").len(), 1);
        });
    }

    /// A store of schema version 2 (index keyed by response id) is migrated on open, its rows
    /// kept.
    #[test]
    fn a_version_2_store_is_migrated_keeping_its_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        runtime().block_on(async {
            let options = SqliteConnectOptions::from_str("sqlite:").expect("options").filename(&path).create_if_missing(true);
            let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.expect("opens");
            for statement in SCHEMA_V1.iter().chain(SCHEMA_V2) {
                sqlx::query(sqlx::AssertSqlSafe(*statement)).execute(&pool).await.expect("schema v2");
            }
            sqlx::query("PRAGMA user_version = 2").execute(&pool).await.expect("v2");
            sqlx::query(
                "INSERT INTO responses (id, document, campaign, hamlet, collector, status, recorded_on, last_change, acknowledged)
                 VALUES ('r1', 'd1', 'c', 'd1', 'me', 'submitted', '2025-06-02', NULL, 1)",
            )
            .execute(&pool)
            .await
            .expect("a row");
            pool.close().await;

            let store = Store::open(&path).await.expect("opens and migrates");
            let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&store.pool).await.expect("reads");
            assert_eq!(version, SCHEMA_VERSION);
            let rows = store.response("r1").await.expect("reads");
            assert_eq!(rows.len(), 1);
            assert_eq!((rows[0].document.as_str(), rows[0].status.as_str(), rows[0].acknowledged), ("d1", "submitted", true));
            let w = DocWrite { document: "d2".into(), index: vec![row("d2", "r1", "draft")], ..DocWrite::default() };
            store.write(&w).await.expect("the same id in another ledger");
            assert_eq!(store.response("r1").await.expect("reads").len(), 2);
            assert_eq!(store.integrity_check().await.expect("checks"), "ok");
        });
    }

    /// A store of schema version 3 keeps its enrollment (no pinned certificate) and is not
    /// checked in full: its index was kept by this version's rules already.
    #[test]
    fn a_version_3_store_keeps_its_enrollment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        runtime().block_on(async {
            let options =
                SqliteConnectOptions::from_str("sqlite:").expect("options").filename(&path).create_if_missing(true);
            let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.expect("opens");
            for statement in SCHEMA_V1.iter().chain(SCHEMA_V2).chain(SCHEMA_V3) {
                sqlx::query(sqlx::AssertSqlSafe(*statement)).execute(&pool).await.expect("schema v3");
            }
            sqlx::query("PRAGMA user_version = 3").execute(&pool).await.expect("v3");
            sqlx::query(
                "INSERT INTO identity (id, server, collector, token, device_name, enrolled_on)
                 VALUES (1, 'http://10.0.0.2:8080', 'me', 't', 'phone', '2025-06-02')",
            )
            .execute(&pool)
            .await
            .expect("an identity");
            pool.close().await;

            let store = Store::open(&path).await.expect("opens and migrates");
            let identity = store.identity().await.expect("reads").expect("kept");
            assert_eq!((identity.server.as_str(), identity.certificate_pin), ("http://10.0.0.2:8080", None));
            assert_eq!(store.upgraded_from(), None);
        });
    }

    #[test]
    fn a_store_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        runtime().block_on(async {
            let store = Store::open(&path).await.expect("opens");
            sqlx::query("PRAGMA user_version = 99").execute(&store.pool).await.expect("sets");
            store.close().await;
            assert!(matches!(Store::open(&path).await, Err(StoreError::NewerSchema { found: 99 })));
        });
    }
}
