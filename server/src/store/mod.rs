//! Durable storage of Automerge documents, on SQLite or PostgreSQL.
//!
//! The store is content-agnostic: it keeps the bytes it is given. Each document is a list of
//! append-only *chunks* (incremental changes, or snapshots written by compaction), plus one row
//! in `documents` that says what the last write reported (heads, time) and how many bytes its
//! chunks hold. The sync state of each (document, peer storage id) is kept beside it.
//!
//! # Transactions
//!
//! [`Store::commit`] applies a list of [`Write`]s in one transaction: all or nothing. A caller
//! tells a client that its data is stored only after `commit` has returned `Ok`, that is after the
//! transaction has committed (SQLite: WAL with `synchronous=FULL`; PostgreSQL:
//! `synchronous_commit=on`). [`Committer`] groups the writes of many concurrent callers into one
//! transaction per batch.
//!
//! Several server processes may share one database. On SQLite every write transaction starts with
//! `BEGIN IMMEDIATE`, so writers take turns (waiting up to the busy timeout). On PostgreSQL a
//! transaction first takes an advisory lock per document it touches, in a fixed order, so that two
//! processes writing the same documents neither deadlock nor compute a document's size from a
//! stale view.
//!
//! # SQL
//!
//! All queries are runtime `sqlx::query` calls (no compile-time macros), and they are shared by
//! both backends: sqlx's SQLite driver binds `$1, $2, …` by their number (a `$NNN` parameter is
//! bound to argument NNN, and a number used twice is bound to the same argument), exactly as
//! PostgreSQL does. The only per-backend SQL is the opening of write transactions and the
//! deletion of the chunks a compaction replaces (PostgreSQL takes an array, SQLite has none).
//!
//! Migrations live in `server/migrations/{sqlite,postgres}` and are embedded in the binary. A
//! migration is never edited once committed (sqlx checks their checksums): add a new one.

mod committer;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, PgConnection, SqlSafeStr};

use crate::clock::SharedClock;

pub use committer::Committer;

/// How long a SQLite connection waits for another writer before it gives up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections in a SQLite pool (readers run concurrently in WAL mode; writers take turns).
const SQLITE_MAX_CONNECTIONS: u32 = 8;
/// Connections in a PostgreSQL pool, per server process.
const POSTGRES_MAX_CONNECTIONS: u32 = 16;
/// How long a caller waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(15);
/// The first half of the PostgreSQL advisory lock key of a document ("Hmlt"), so that these
/// locks do not collide with other users of advisory locks.
const DOCUMENT_LOCK_CLASS: i32 = 0x486d_6c74;
/// The `server_meta` key of the server's storage id.
const STORAGE_ID_KEY: &str = "storage_id";

/// Which database a [`Store`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// An SQLite file, embedded in the server process.
    Sqlite,
    /// A PostgreSQL server, possibly shared by several server processes.
    Postgres,
}

/// The kind of a stored chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkKind {
    /// Some changes of a document (stored as `incremental`).
    Incremental,
    /// A whole document, written by compaction (stored as `snapshot`).
    Snapshot,
}

impl ChunkKind {
    /// The text stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkKind::Incremental => "incremental",
            ChunkKind::Snapshot => "snapshot",
        }
    }

    /// Reads the text stored in the `kind` column.
    pub fn parse(kind: &str) -> Option<ChunkKind> {
        match kind {
            "incremental" => Some(ChunkKind::Incremental),
            "snapshot" => Some(ChunkKind::Snapshot),
            _ => None,
        }
    }
}

/// One chunk of a document, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    /// The chunk's id: ids grow with insertion, so loading in id order loads in insertion order.
    pub id: i64,
    /// Whether the chunk holds some changes or a whole document.
    pub kind: ChunkKind,
    /// The chunk's bytes, as written.
    pub data: Vec<u8>,
}

/// What the store knows about one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentInfo {
    /// The document id (as the sync layer names it).
    pub id: String,
    /// The heads reported by the last write of the document (opaque bytes to the store).
    pub heads: Vec<u8>,
    /// The bytes of all the document's chunks.
    pub size: i64,
    /// How many chunks the document has.
    pub chunks: i64,
    /// When the document was last written, in unix milliseconds.
    pub updated_at: i64,
}

/// One write of a [`Store::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Appends a chunk (changes of one document). Also creates or updates the document's row:
    /// its heads become `heads`, its size the bytes of all its chunks after this write, and its
    /// `updated_at` the time of the commit.
    Chunk {
        /// The document id.
        document: String,
        /// Whether `data` holds some changes or a whole document.
        kind: ChunkKind,
        /// The chunk's bytes.
        data: Vec<u8>,
        /// The document's heads after this chunk, as the writer sees them.
        heads: Vec<u8>,
    },
    /// Compaction: stores `snapshot` as a [`ChunkKind::Snapshot`] chunk and deletes exactly the
    /// chunks whose ids are in `replaces`, in the same transaction. Chunks not listed (say,
    /// appended meanwhile by another process) are kept.
    ///
    /// Every listed chunk must still exist and belong to `document`; otherwise the write fails
    /// with [`StoreError::CompactionConflict`] and its transaction stores nothing (another
    /// process compacted first: nothing is lost, the caller may reload and compact again).
    /// The document's row is updated as for [`Write::Chunk`].
    Compact {
        /// The document id.
        document: String,
        /// The whole document, saved.
        snapshot: Vec<u8>,
        /// The heads of `snapshot`.
        heads: Vec<u8>,
        /// The ids of the chunks `snapshot` replaces.
        replaces: Vec<i64>,
    },
    /// Creates or replaces the sync state of (`document`, `storage_id`).
    SyncState {
        /// The document id.
        document: String,
        /// The storage id of the peer.
        storage_id: String,
        /// The encoded sync state.
        state: Vec<u8>,
    },
}

impl Write {
    /// The document the write is about.
    pub fn document(&self) -> &str {
        match self {
            Write::Chunk { document, .. } | Write::Compact { document, .. } | Write::SyncState { document, .. } => {
                document
            }
        }
    }

    fn check(&self, index: usize) -> Result<(), StoreError> {
        let invalid = |reason: &'static str| Err(StoreError::InvalidWrite { index, reason });
        if self.document().is_empty() {
            return invalid("the document id is empty");
        }
        if let Write::SyncState { storage_id, .. } = self
            && storage_id.is_empty()
        {
            return invalid("the peer's storage id is empty");
        }
        Ok(())
    }
}

/// The result of one [`Write`], in the order of the writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The chunk was stored with this id.
    Chunk {
        /// The new chunk's id.
        id: i64,
    },
    /// The snapshot was stored with this id, and the chunks it replaces were deleted.
    Compacted {
        /// The snapshot chunk's id.
        id: i64,
    },
    /// The sync state was stored.
    SyncState,
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no database this server supports.
    #[error("unsupported database URL {url:?}: expected sqlite:PATH or postgres://USER@HOST/DATABASE")]
    UnsupportedUrl {
        /// The URL, without its password.
        url: String,
    },
    /// The URL could not be read.
    #[error("invalid database URL {url:?}: {source}")]
    InvalidUrl {
        /// The URL, without its password.
        url: String,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// The folder of the SQLite file could not be created.
    #[error("cannot create the folder {} for the SQLite database: {source}", path.display())]
    CreateFolder {
        /// The folder.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be reached or opened.
    #[error("cannot connect to the database {url:?}: {source}")]
    Connect {
        /// The URL, without its password.
        url: String,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// The schema migrations could not be applied.
    #[error("cannot apply the schema migrations to the database {url:?}: {source}")]
    Migrate {
        /// The URL, without its password.
        url: String,
        /// What the migrator said.
        #[source]
        source: MigrateError,
    },
    /// A query failed.
    #[error("database query failed while {context}: {source}")]
    Query {
        /// What the store was doing.
        context: &'static str,
        /// What the driver or the database said.
        #[source]
        source: sqlx::Error,
    },
    /// A write was rejected before reaching the database.
    #[error("write #{index} is invalid: {reason}")]
    InvalidWrite {
        /// The position of the write in its commit.
        index: usize,
        /// Why.
        reason: &'static str,
    },
    /// A compaction named chunks that no longer exist or belong to another document.
    #[error(
        "compaction of document {document:?} conflicts: chunks {missing:?} do not exist (any more) in this document; nothing was written"
    )]
    CompactionConflict {
        /// The document being compacted.
        document: String,
        /// The ids in `replaces` that were not found.
        missing: Vec<i64>,
    },
    /// A stored row holds a value this version does not understand.
    #[error("chunk {id} has an unknown kind {kind:?}")]
    UnknownChunkKind {
        /// The chunk's id.
        id: i64,
        /// The stored kind.
        kind: String,
    },
    /// The transaction that held these writes, together with other callers' writes, failed for a
    /// reason that is not specific to one write (the database is unreachable, say).
    #[error("the transaction holding these writes failed: {0}")]
    BatchFailed(#[source] Arc<StoreError>),
    /// The committer's writer task has stopped.
    #[error("the committer has stopped before answering: the writes may not have been stored")]
    CommitterStopped,
}

impl StoreError {
    /// Whether the error may come from one write of a batch rather than from the database as a
    /// whole: the committer then retries each caller's writes on their own.
    fn may_be_write_specific(&self) -> bool {
        match self {
            StoreError::InvalidWrite { .. } | StoreError::CompactionConflict { .. } => true,
            StoreError::Query { source, .. } => {
                matches!(source, sqlx::Error::Database(_) | sqlx::Error::Encode(_) | sqlx::Error::Decode(_))
            }
            _ => false,
        }
    }
}

fn query_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { context, source }
}

/// A borrowed connection pool, for modules that run their own queries (see the crate-internal `on_pool!` macro).
#[derive(Debug, Clone, Copy)]
pub enum PoolRef<'a> {
    /// SQLite.
    Sqlite(&'a SqlitePool),
    /// PostgreSQL.
    Postgres(&'a PgPool),
}

/// Begins a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: the write lock is
/// taken at the start (waiting up to the busy timeout for other writers), so a transaction that
/// reads before it writes is never refused with `database is locked` when another writer
/// committed in between (a deferred transaction cannot upgrade a stale read snapshot). On
/// PostgreSQL it is a plain `BEGIN`.
pub(crate) trait BeginWrite {
    /// The database the transaction runs on.
    type Db: sqlx::Database;
    /// Begins the writing transaction.
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>> + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>> + Send {
        self.begin()
    }
}

/// Runs `$body` with `$pool` bound to the store's pool, once per backend, so that one query
/// text (with `$1` placeholders, which both databases accept) serves both:
/// `on_pool!(store, pool => sqlx::query(SQL).bind(x).execute(pool).await)`.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store.pool() {
            $crate::store::PoolRef::Sqlite($pool) => $body,
            $crate::store::PoolRef::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Wraps a sqlx error with what was being done, for modules that run their own queries.
pub fn query_failed(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    query_error(context)
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The durable store of documents; cheap to clone (clones share one connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    storage_id: Arc<OnceLock<String>>,
    clock: SharedClock,
}

impl Store {
    /// Opens the database at `url` and applies the migrations it lacks.
    ///
    /// `url` is either `sqlite:PATH` (or `sqlite://PATH`; the file and its folder are created if
    /// missing; `sqlite::memory:` for a throw-away database) or `postgres://…` /
    /// `postgresql://…`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let shown = redact(url);
        let pool = if url.starts_with("sqlite:") {
            Pool::Sqlite(open_sqlite(url, &shown).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Pool::Postgres(open_postgres(url, &shown).await?)
        } else {
            return Err(StoreError::UnsupportedUrl { url: shown });
        };
        let store = Store { pool, storage_id: Arc::new(OnceLock::new()), clock: crate::clock::system() };
        if let Err(error) = store.migrate(&shown).await {
            store.close().await;
            return Err(error);
        }
        Ok(store)
    }

    /// This store with `clock` as every layer's "now" (tests; the system clock otherwise).
    pub fn with_clock(mut self, clock: SharedClock) -> Store {
        self.clock = clock;
        self
    }

    /// The clock every layer reads "now" from.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Now, in unix milliseconds, by [`Store::clock`].
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    async fn migrate(&self, shown: &str) -> Result<(), StoreError> {
        // Two processes opening a new SQLite file at once may both try the same migration (sqlx
        // locks only on PostgreSQL): the loser fails, and its retry finds the migration applied.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match &self.pool {
                Pool::Sqlite(pool) => migrator(Backend::Sqlite).run(pool).await,
                Pool::Postgres(pool) => migrator(Backend::Postgres).run(pool).await,
            };
            match result {
                Ok(()) => return Ok(()),
                Err(source @ (MigrateError::VersionMismatch(_) | MigrateError::VersionMissing(_))) => {
                    return Err(StoreError::Migrate { url: shown.to_owned(), source });
                }
                Err(source) if attempt >= 3 => return Err(StoreError::Migrate { url: shown.to_owned(), source }),
                Err(_) => tokio::time::sleep(Duration::from_millis(50 * attempt)).await,
            }
        }
    }

    /// The connection pool, for modules that run their own queries (see the crate-internal `on_pool!` macro).
    pub fn pool(&self) -> PoolRef<'_> {
        match &self.pool {
            Pool::Sqlite(pool) => PoolRef::Sqlite(pool),
            Pool::Postgres(pool) => PoolRef::Postgres(pool),
        }
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Checks that the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        const SQL: &str = "SELECT 1";
        let result = match &self.pool {
            Pool::Sqlite(pool) => sqlx::query(SQL).execute(pool).await.map(drop),
            Pool::Postgres(pool) => sqlx::query(SQL).execute(pool).await.map(drop),
        };
        result.map_err(query_error("pinging the database"))
    }

    /// All the chunks of `document`, in id order (empty if the document is unknown).
    pub async fn load(&self, document: &str) -> Result<Vec<StoredChunk>, StoreError> {
        const SQL: &str = "SELECT id, kind, data FROM chunks WHERE document_id = $1 ORDER BY id";
        let rows: Vec<(i64, String, Vec<u8>)> = match &self.pool {
            Pool::Sqlite(pool) => sqlx::query_as(SQL).bind(document).fetch_all(pool).await,
            Pool::Postgres(pool) => sqlx::query_as(SQL).bind(document).fetch_all(pool).await,
        }
        .map_err(query_error("loading the chunks of a document"))?;
        rows.into_iter()
            .map(|(id, kind, data)| match ChunkKind::parse(&kind) {
                Some(kind) => Ok(StoredChunk { id, kind, data }),
                None => Err(StoreError::UnknownChunkKind { id, kind }),
            })
            .collect()
    }

    /// The sync state stored for (`document`, `storage_id`), if any.
    pub async fn load_sync_state(&self, document: &str, storage_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        const SQL: &str = "SELECT state FROM sync_states WHERE document_id = $1 AND storage_id = $2";
        match &self.pool {
            Pool::Sqlite(pool) => sqlx::query_scalar(SQL).bind(document).bind(storage_id).fetch_optional(pool).await,
            Pool::Postgres(pool) => sqlx::query_scalar(SQL).bind(document).bind(storage_id).fetch_optional(pool).await,
        }
        .map_err(query_error("loading a sync state"))
    }

    /// Applies `writes` in one transaction: all of them or none. Returns one [`Written`] per
    /// write, in order, once the transaction has committed.
    pub async fn commit(&self, writes: &[Write]) -> Result<Vec<Written>, StoreError> {
        self.commit_all(&writes.iter().collect::<Vec<_>>()).await
    }

    /// [`Store::commit`] on borrowed writes (the committer's batches borrow its callers' writes).
    async fn commit_all(&self, writes: &[&Write]) -> Result<Vec<Written>, StoreError> {
        for (index, write) in writes.iter().enumerate() {
            write.check(index)?;
        }
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now_ms();
        match &self.pool {
            Pool::Sqlite(pool) => {
                let mut tx =
                    pool.begin_with("BEGIN IMMEDIATE").await.map_err(query_error("beginning a write transaction"))?;
                match sqlite::apply(&mut tx, writes, now).await {
                    Ok(written) => {
                        tx.commit().await.map_err(query_error("committing a write transaction"))?;
                        Ok(written)
                    }
                    Err(error) => {
                        let _ = tx.rollback().await;
                        Err(error)
                    }
                }
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(query_error("beginning a write transaction"))?;
                let result = match lock_documents(&mut tx, writes).await {
                    Ok(()) => postgres::apply(&mut tx, writes, now).await,
                    Err(error) => Err(error),
                };
                match result {
                    Ok(written) => {
                        tx.commit().await.map_err(query_error("committing a write transaction"))?;
                        Ok(written)
                    }
                    Err(error) => {
                        let _ = tx.rollback().await;
                        Err(error)
                    }
                }
            }
        }
    }

    /// Every stored document, ordered by id.
    pub async fn documents(&self) -> Result<Vec<DocumentInfo>, StoreError> {
        const SQL: &str = "SELECT d.id, d.heads, d.size, d.updated_at, \
                (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id) AS chunks \
            FROM documents d ORDER BY d.id";
        let rows: Vec<(String, Vec<u8>, i64, i64, i64)> = match &self.pool {
            Pool::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
            Pool::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
        }
        .map_err(query_error("listing the documents"))?;
        Ok(rows
            .into_iter()
            .map(|(id, heads, size, updated_at, chunks)| DocumentInfo { id, heads, size, chunks, updated_at })
            .collect())
    }

    /// The server's own automerge-repo storage id: a random UUID created by the first call on a
    /// new database and stored, the same afterwards (also for other processes sharing the
    /// database).
    pub async fn storage_id(&self) -> Result<String, StoreError> {
        if let Some(id) = self.storage_id.get() {
            return Ok(id.clone());
        }
        const INSERT: &str = "INSERT INTO server_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
        const SELECT: &str = "SELECT value FROM server_meta WHERE key = $1";
        let candidate = uuid::Uuid::new_v4().to_string();
        let id: String = match &self.pool {
            Pool::Sqlite(pool) => {
                let inserted = sqlx::query(INSERT).bind(STORAGE_ID_KEY).bind(&candidate).execute(pool).await;
                inserted.map_err(query_error("creating the storage id"))?;
                sqlx::query_scalar(SELECT).bind(STORAGE_ID_KEY).fetch_one(pool).await
            }
            Pool::Postgres(pool) => {
                let inserted = sqlx::query(INSERT).bind(STORAGE_ID_KEY).bind(&candidate).execute(pool).await;
                inserted.map_err(query_error("creating the storage id"))?;
                sqlx::query_scalar(SELECT).bind(STORAGE_ID_KEY).fetch_one(pool).await
            }
        }
        .map_err(query_error("reading the storage id"))?;
        Ok(self.storage_id.get_or_init(|| id).clone())
    }

    /// Closes the connections, waiting for those in use to be returned.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

/// The embedded migrations of `backend`.
/// Every migration, in order: version, description, SQLite text, PostgreSQL text.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "documents",
        include_str!("../../migrations/sqlite/0001_documents.sql"),
        include_str!("../../migrations/postgres/0001_documents.sql"),
    ),
    (
        2,
        "results",
        include_str!("../../migrations/sqlite/0002_results.sql"),
        include_str!("../../migrations/postgres/0002_results.sql"),
    ),
    (
        3,
        "accounts",
        include_str!("../../migrations/sqlite/0003_accounts.sql"),
        include_str!("../../migrations/postgres/0003_accounts.sql"),
    ),
    (
        4,
        "counting_rules",
        include_str!("../../migrations/sqlite/0004_counting_rules.sql"),
        include_str!("../../migrations/postgres/0004_counting_rules.sql"),
    ),
    (
        5,
        "staff_hardening",
        include_str!("../../migrations/sqlite/0005_staff_hardening.sql"),
        include_str!("../../migrations/postgres/0005_staff_hardening.sql"),
    ),
    (
        6,
        "published_results",
        include_str!("../../migrations/sqlite/0006_published_results.sql"),
        include_str!("../../migrations/postgres/0006_published_results.sql"),
    ),
    (
        7,
        "released_results",
        include_str!("../../migrations/sqlite/0007_released_results.sql"),
        include_str!("../../migrations/postgres/0007_released_results.sql"),
    ),
    (
        8,
        "response_writer",
        include_str!("../../migrations/sqlite/0008_response_writer.sql"),
        include_str!("../../migrations/postgres/0008_response_writer.sql"),
    ),
    (
        9,
        "device_clock",
        include_str!("../../migrations/sqlite/0009_device_clock.sql"),
        include_str!("../../migrations/postgres/0009_device_clock.sql"),
    ),
    (
        10,
        "relay",
        include_str!("../../migrations/sqlite/0010_relay.sql"),
        include_str!("../../migrations/postgres/0010_relay.sql"),
    ),
    (
        11,
        "campaign_keys",
        include_str!("../../migrations/sqlite/0011_campaign_keys.sql"),
        include_str!("../../migrations/postgres/0011_campaign_keys.sql"),
    ),
];

fn migrator(backend: Backend) -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, description, sqlite, postgres)| {
                let sql = match backend {
                    Backend::Sqlite => *sqlite,
                    Backend::Postgres => *postgres,
                };
                Migration::new(*version, Cow::Borrowed(*description), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}

async fn open_sqlite(url: &str, shown: &str) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|source| StoreError::InvalidUrl { url: shown.to_owned(), source })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true);
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if !in_memory {
        create_parent_folder(options.get_filename())?;
    }
    // Processes opening a new file together race to turn on the write-ahead log, and SQLite
    // answers the loser "database is locked" at once (its busy handler is not consulted when
    // waiting could deadlock): try again for as long as the busy timeout, then give up.
    let deadline = std::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        let connected = SqlitePoolOptions::new()
            .max_connections(SQLITE_MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await;
        match connected {
            Err(e) if is_sqlite_busy(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            other => return other.map_err(|source| StoreError::Connect { url: shown.to_owned(), source }),
        }
    }
}

/// SQLITE_BUSY, with or without its extended codes (BUSY_RECOVERY, BUSY_SNAPSHOT, ...).
fn is_sqlite_busy(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else { return false };
    db.code().and_then(|code| code.parse::<i32>().ok()).is_some_and(|code| code & 0xff == 5)
}

fn create_parent_folder(file: &Path) -> Result<(), StoreError> {
    match file.parent() {
        Some(folder) if !folder.as_os_str().is_empty() && !folder.exists() => std::fs::create_dir_all(folder)
            .map_err(|source| StoreError::CreateFolder { path: folder.to_owned(), source }),
        _ => Ok(()),
    }
}

async fn open_postgres(url: &str, shown: &str) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|source| StoreError::InvalidUrl { url: shown.to_owned(), source })?
        .application_name("hamlet-server")
        // The server's default, but a database or role may have turned it off: a client is told
        // its data is stored only after the commit is durable.
        .options([("synchronous_commit", "on")]);
    // One direct connection first, so that a wrong address or password fails at once instead of
    // after the pool's acquire timeout.
    let probe = PgConnection::connect_with(&options)
        .await
        .map_err(|source| StoreError::Connect { url: shown.to_owned(), source })?;
    let _ = probe.close().await;
    PgPoolOptions::new()
        .max_connections(POSTGRES_MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect { url: shown.to_owned(), source })
}

/// Takes, in a fixed order, a transaction-scoped advisory lock per document the writes touch.
async fn lock_documents(conn: &mut PgConnection, writes: &[&Write]) -> Result<(), StoreError> {
    let mut keys: Vec<i32> = writes.iter().map(|write| lock_key(write.document())).collect();
    keys.sort_unstable();
    keys.dedup();
    // unnest yields the keys in array order, so the locks are taken in sorted order by every
    // process, and two transactions cannot wait for each other.
    sqlx::query("SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int4[]) AS k")
        .bind(DOCUMENT_LOCK_CLASS)
        .bind(keys)
        .execute(&mut *conn)
        .await
        .map_err(query_error("locking the documents written"))?;
    Ok(())
}

/// A stable 32-bit hash (FNV-1a) of a document id, the second half of an advisory lock's key:
/// the same in every process and version (the store's and the projector's locks use it, each
/// with its own first half).
pub(crate) fn lock_key(document: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in document.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(hash.to_ne_bytes())
}

/// Deletes the chunks a compaction replaces; returns the listed ids that were not found.
async fn sqlite_delete_chunks(
    conn: &mut SqliteConnection,
    document: &str,
    ids: &[i64],
) -> Result<Vec<i64>, StoreError> {
    let mut missing = Vec::new();
    for &id in ids {
        let done = sqlx::query("DELETE FROM chunks WHERE id = $1 AND document_id = $2")
            .bind(id)
            .bind(document)
            .execute(&mut *conn)
            .await
            .map_err(query_error("deleting the chunks a snapshot replaces"))?;
        if done.rows_affected() == 0 {
            missing.push(id);
        }
    }
    Ok(missing)
}

/// Deletes the chunks a compaction replaces; returns the listed ids that were not found.
async fn postgres_delete_chunks(conn: &mut PgConnection, document: &str, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
    let deleted: Vec<i64> =
        sqlx::query_scalar("DELETE FROM chunks WHERE document_id = $1 AND id = ANY($2) RETURNING id")
            .bind(document)
            .bind(ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(query_error("deleting the chunks a snapshot replaces"))?;
    Ok(ids.iter().copied().filter(|id| !deleted.contains(id)).collect())
}

/// The body of a write transaction, the same SQL on both backends.
macro_rules! write_queries {
    ($module:ident, $connection:ty, $delete_chunks:path) => {
        mod $module {
            use super::*;

            pub(super) async fn apply(
                conn: &mut $connection,
                writes: &[&Write],
                now: i64,
            ) -> Result<Vec<Written>, StoreError> {
                let mut written = Vec::with_capacity(writes.len());
                for write in writes {
                    match write {
                        Write::Chunk { document, kind, data, heads } => {
                            let id = insert_chunk(conn, document, *kind, data, now).await?;
                            update_document(conn, document, heads, now).await?;
                            written.push(Written::Chunk { id });
                        }
                        Write::Compact { document, snapshot, heads, replaces } => {
                            // The snapshot is written before what it replaces is deleted.
                            let id = insert_chunk(conn, document, ChunkKind::Snapshot, snapshot, now).await?;
                            let mut ids = replaces.clone();
                            ids.sort_unstable();
                            ids.dedup();
                            let missing = $delete_chunks(conn, document, &ids).await?;
                            if !missing.is_empty() {
                                return Err(StoreError::CompactionConflict { document: document.clone(), missing });
                            }
                            update_document(conn, document, heads, now).await?;
                            written.push(Written::Compacted { id });
                        }
                        Write::SyncState { document, storage_id, state } => {
                            sqlx::query(
                                "INSERT INTO sync_states (document_id, storage_id, state, updated_at) \
                                 VALUES ($1, $2, $3, $4) \
                                 ON CONFLICT (document_id, storage_id) \
                                 DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                            )
                            .bind(document)
                            .bind(storage_id)
                            .bind(state)
                            .bind(now)
                            .execute(&mut *conn)
                            .await
                            .map_err(query_error("storing a sync state"))?;
                            written.push(Written::SyncState);
                        }
                    }
                }
                Ok(written)
            }

            async fn insert_chunk(
                conn: &mut $connection,
                document: &str,
                kind: ChunkKind,
                data: &[u8],
                now: i64,
            ) -> Result<i64, StoreError> {
                sqlx::query_scalar(
                    "INSERT INTO chunks (document_id, kind, data, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(document)
                .bind(kind.as_str())
                .bind(data)
                .bind(now)
                .fetch_one(&mut *conn)
                .await
                .map_err(query_error("storing a chunk"))
            }

            /// Sets the document's heads and time, and its size from its chunks as this
            /// transaction sees them (on PostgreSQL, after taking the document's lock, so every
            /// chunk committed by another transaction is counted).
            async fn update_document(
                conn: &mut $connection,
                document: &str,
                heads: &[u8],
                now: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO documents (id, heads, size, updated_at) \
                     VALUES ($1, $2, (SELECT COALESCE(SUM(length(data)), 0) FROM chunks WHERE document_id = $1), $3) \
                     ON CONFLICT (id) \
                     DO UPDATE SET heads = excluded.heads, size = excluded.size, updated_at = excluded.updated_at",
                )
                .bind(document)
                .bind(heads)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(query_error("updating a document's row"))?;
                Ok(())
            }
        }
    };
}

write_queries!(sqlite, sqlx::SqliteConnection, sqlite_delete_chunks);
write_queries!(postgres, sqlx::PgConnection, postgres_delete_chunks);

/// `url` without its password (in the user info or a `password=` parameter), fit for messages
/// and logs.
fn redact(url: &str) -> String {
    let mut shown = url.to_owned();
    if let Some(scheme_end) = shown.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = shown[authority_start..].find(['/', '?']).map_or(shown.len(), |end| authority_start + end);
        if let Some(at) = shown[authority_start..authority_end].rfind('@')
            && let Some(colon) = shown[authority_start..authority_start + at].find(':')
        {
            shown.replace_range(authority_start + colon + 1..authority_start + at, "***");
        }
    }
    if let Some(query_start) = shown.find('?') {
        let mut parameters: Vec<String> = shown[query_start + 1..].split('&').map(str::to_owned).collect();
        for parameter in &mut parameters {
            if parameter.starts_with("password=") {
                *parameter = "password=***".to_owned();
            }
        }
        shown.replace_range(query_start + 1.., &parameters.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::ConnectOptions;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("postgres://h/db?sslmode=disable&password=x"),
            "postgres://h/db?sslmode=disable&password=***"
        );
        assert_eq!(redact("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite:data/hamlet.db"), "sqlite:data/hamlet.db");
    }

    #[tokio::test]
    async fn sqlite_connections_are_durable() {
        let folder = std::env::temp_dir().join(format!("hamlet-store-{}", uuid::Uuid::new_v4().simple()));
        let store = Store::open(&format!("sqlite:{}", folder.join("hamlet.db").display())).await.expect("opens");
        let Pool::Sqlite(pool) = &store.pool else { panic!("a SQLite store") };
        for (pragma, expected) in
            [("journal_mode", "wal"), ("synchronous", "2"), ("foreign_keys", "1"), ("busy_timeout", "10000")]
        {
            let sql = sqlx::AssertSqlSafe(format!("PRAGMA {pragma}"));
            let value: sqlx::sqlite::SqliteRow = sqlx::query(sql).fetch_one(pool).await.expect("reads the pragma");
            let value: String = match sqlx::Row::try_get::<String, _>(&value, 0) {
                Ok(text) => text,
                Err(_) => sqlx::Row::try_get::<i64, _>(&value, 0).expect("a number").to_string(),
            };
            assert_eq!(value, expected, "PRAGMA {pragma}");
        }
        store.close().await;
        let _ = std::fs::remove_dir_all(folder);
    }

    /// Runs only when `HAMLET_TEST_DATABASE_URL` names a PostgreSQL server, on a database of its
    /// own whose default turns synchronous commits off: the store must turn them back on.
    #[tokio::test]
    async fn postgres_connections_commit_synchronously() {
        let Ok(admin_url) = std::env::var("HAMLET_TEST_DATABASE_URL") else { return };
        let database = format!("hamlet_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await.expect("connects");
        for sql in [
            format!("CREATE DATABASE \"{database}\""),
            format!("ALTER DATABASE \"{database}\" SET synchronous_commit = off"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.expect("prepares the database");
        }
        let options = PgConnectOptions::from_str(&admin_url).expect("a URL").database(&database);
        let url = options.to_url_lossy().to_string();
        let store = Store::open(&url).await.expect("opens");
        let Pool::Postgres(pool) = &store.pool else { panic!("a PostgreSQL store") };
        let value: Result<String, _> = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(pool).await;
        store.close().await;
        let drop = sqlx::AssertSqlSafe(format!("DROP DATABASE \"{database}\" WITH (FORCE)"));
        let _ = sqlx::raw_sql(drop).execute(&mut admin).await;
        assert_eq!(value.expect("reads the setting"), "on");
    }

    #[test]
    fn lock_keys_are_stable() {
        // FNV-1a of "a": changing the hash would let two versions of the server lock differently.
        assert_eq!(lock_key("a"), i32::from_ne_bytes(0xe40c_292c_u32.to_ne_bytes()));
        assert_eq!(lock_key(""), i32::from_ne_bytes(0x811c_9dc5_u32.to_ne_bytes()));
    }
}
