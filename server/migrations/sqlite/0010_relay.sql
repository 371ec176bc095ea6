-- A commune relay (`hamlet-server relay`): who it is at the district, and where its uplink
-- stands for each document. Empty on a district server. Never edit a migration once
-- committed: add a new one.

-- The relay's own enrollment at the district (one row): the district's address and the
-- relay's device token, which the uplink presents; kept in clear because the relay must send
-- it (protect the data folder as the district protects its database).
CREATE TABLE relay_identity (
    id BIGINT PRIMARY KEY NOT NULL CHECK (id = 1),
    upstream TEXT NOT NULL,
    device_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    token TEXT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    -- When the uplink last completed a pass with the district, and when it last tried.
    reached_at BIGINT,
    tried_at BIGINT,
    last_error TEXT
);

-- Per document, the uplink's sync state with the district and the heads the district holds
-- durably (acknowledged): what the relay still has to send is what these heads do not cover.
CREATE TABLE relay_uplink (
    document_id TEXT PRIMARY KEY NOT NULL,
    -- The district's storage id: a state is true only of the storage it was made with.
    storage_id TEXT NOT NULL,
    sync_state BLOB NOT NULL,
    acknowledged TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
