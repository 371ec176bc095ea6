-- District results (SQLite dialect): the administrative units, the campaigns as the server defines
-- them, the projection of hamlet ledgers into rows, the aggregates results are read from, reviews,
-- devices and the audit log. Never edit a migration once committed: add a new one.

-- Administrative units (province > district > commune > hamlet), with validity and lineage.
CREATE TABLE units (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('province', 'district', 'commune', 'hamlet')),
    parent_id TEXT,
    valid_from TEXT NOT NULL,            -- YYYY-MM-DD
    valid_until TEXT,                    -- YYYY-MM-DD, exclusive
    merged_from TEXT NOT NULL,           -- JSON array of unit ids
    merged_into TEXT,
    updated_at BIGINT NOT NULL           -- unix milliseconds
);
CREATE INDEX units_parent ON units (parent_id);

-- Campaigns: the definition (JSON, as in docs/schema.md) and the columns lists need.
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY NOT NULL,
    name_vi TEXT NOT NULL,
    name_en TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('draft', 'open', 'closed', 'published')),
    document_id TEXT NOT NULL,           -- the campaign document devices read
    definition TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE campaign_subjects (
    campaign_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    ordinal BIGINT NOT NULL,
    name TEXT NOT NULL,
    position TEXT NOT NULL,
    commune_id TEXT NOT NULL,
    home_hamlet_id TEXT NOT NULL,
    PRIMARY KEY (campaign_id, subject_id)
);

CREATE TABLE campaign_hamlets (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    expected_voters BIGINT NOT NULL,
    document_id TEXT NOT NULL,           -- the hamlet ledger's document id
    PRIMARY KEY (campaign_id, hamlet_id)
);
CREATE INDEX campaign_hamlets_document ON campaign_hamlets (document_id);

-- The high-water mark of the projection: the heads of each ledger its rows reflect.
CREATE TABLE projection_marks (
    document_id TEXT PRIMARY KEY NOT NULL,
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    heads BLOB NOT NULL,
    projected_at BIGINT NOT NULL
);

-- Rows of the projection (sync-core's projection.rs), one ledger = one (campaign, hamlet).
CREATE TABLE responses (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    response_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'submitted', 'voided')),
    form_version BIGINT,
    recorded_on TEXT,
    collector TEXT,
    submitted_on TEXT,
    submitted_by TEXT,
    voided_on TEXT,
    voided_by TEXT,
    void_reason TEXT,
    PRIMARY KEY (campaign_id, hamlet_id, response_id)
);

CREATE TABLE answers (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    response_id TEXT NOT NULL,
    question_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,            -- '' for questions asked once per response
    kind TEXT NOT NULL CHECK (kind IN ('level', 'yes_no', 'number', 'comment')),
    value_text TEXT,                     -- level code, comment
    value_number BIGINT,                 -- number, yes/no as 1/0
    search_text TEXT,                    -- comments, lower case without diacritics
    counted BIGINT NOT NULL,             -- 1 when sealed and not voided
    PRIMARY KEY (campaign_id, hamlet_id, response_id, question_id, subject_id)
);
CREATE INDEX answers_comments ON answers (campaign_id, kind, counted);

CREATE TABLE tallies (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    tally_id TEXT NOT NULL,
    recorded_on TEXT,
    collector TEXT,
    ballots_issued BIGINT NOT NULL,
    ballots_returned BIGINT NOT NULL,
    ballots_valid BIGINT NOT NULL,
    ballots_invalid BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, hamlet_id, tally_id)
);

CREATE TABLE tally_counts (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    tally_id TEXT NOT NULL,
    question_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    level TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, hamlet_id, tally_id, question_id, subject_id, level)
);

-- The same field written on two devices: every value, with the actor (device) that wrote it.
CREATE TABLE conflicts (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    entity_kind TEXT NOT NULL,           -- 'ledger', 'response', 'tally'
    entity_id TEXT NOT NULL,             -- '' for the ledger
    path TEXT NOT NULL,                  -- keys from the root, joined by '/'
    item_key TEXT NOT NULL,              -- what a review refers to
    detail TEXT NOT NULL,                -- JSON: the values
    PRIMARY KEY (campaign_id, hamlet_id, entity_kind, entity_id, path)
);

-- Things to review: edits after the seal, values that do not fit the form, tallies that do not add up.
CREATE TABLE flags (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    entity_kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    ordinal BIGINT NOT NULL,
    kind TEXT NOT NULL,
    item_key TEXT NOT NULL,
    detail TEXT NOT NULL,                -- JSON
    PRIMARY KEY (campaign_id, hamlet_id, entity_kind, entity_id, ordinal)
);

-- Reviews of conflicts and flags, by item key: they survive a reprojection.
CREATE TABLE reviews (
    campaign_id TEXT NOT NULL,
    item_key TEXT NOT NULL,
    reviewed_at BIGINT NOT NULL,
    reviewed_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    PRIMARY KEY (campaign_id, item_key)
);

-- Pre-aggregated counted answers per hamlet, subject and level, kept in step with the rows above
-- in the same transaction; results sum them up the unit tree.
CREATE TABLE level_counts (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    question_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    level TEXT NOT NULL,
    from_responses BIGINT NOT NULL,
    from_tallies BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, hamlet_id, question_id, subject_id, level)
);

-- The same, summed per commune (the hamlet's parent when it was projected; recomputed from
-- level_counts when units are imported), so that results above the hamlets read a few thousand
-- rows whatever the campaign's size.
CREATE TABLE commune_level_counts (
    campaign_id TEXT NOT NULL,
    commune_id TEXT NOT NULL,            -- '' for hamlets missing from the unit tree
    question_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    level TEXT NOT NULL,
    from_responses BIGINT NOT NULL,
    from_tallies BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, commune_id, question_id, subject_id, level)
);

CREATE TABLE hamlet_counts (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    drafts BIGINT NOT NULL,
    submitted BIGINT NOT NULL,
    voided BIGINT NOT NULL,
    tallies BIGINT NOT NULL,
    ballots_issued BIGINT NOT NULL,
    ballots_returned BIGINT NOT NULL,
    ballots_valid BIGINT NOT NULL,
    ballots_invalid BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, hamlet_id)
);

-- Devices seen syncing each ledger (by the peer they sync as), and when each last did. Enrolled
-- devices and their tokens are in `devices` (0003).
CREATE TABLE ledger_devices (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    device_id TEXT NOT NULL,             -- the peer's storage id, or its peer id when it keeps none
    peer_id TEXT NOT NULL,
    first_seen_at BIGINT NOT NULL,
    last_sync_at BIGINT NOT NULL,
    syncs BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, hamlet_id, device_id)
);

-- Every staff action (and security event).
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,                  -- unix milliseconds
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
