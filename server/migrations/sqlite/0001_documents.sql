-- Durable storage of Automerge documents (SQLite dialect).
-- Never edit a migration once committed: add a new one.

-- One row per stored document: what the last write reported, and the bytes of its chunks.
CREATE TABLE documents (
    id TEXT PRIMARY KEY NOT NULL,
    heads BLOB NOT NULL,
    size BIGINT NOT NULL,
    updated_at BIGINT NOT NULL -- unix milliseconds
);

-- Append-only chunks of each document; compaction replaces some of them by a snapshot.
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('incremental', 'snapshot')),
    data BLOB NOT NULL,
    created_at BIGINT NOT NULL -- unix milliseconds
);

CREATE INDEX chunks_document_id ON chunks (document_id, id);

-- The sync state of each (document, peer storage id).
CREATE TABLE sync_states (
    document_id TEXT NOT NULL,
    storage_id TEXT NOT NULL,
    state BLOB NOT NULL,
    updated_at BIGINT NOT NULL, -- unix milliseconds
    PRIMARY KEY (document_id, storage_id)
);

-- The server's own settings, such as its automerge-repo storage id.
CREATE TABLE server_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
