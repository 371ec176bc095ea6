-- A published campaign's results are frozen: at publication the counts results are read from
-- are copied here, with what was counted, and results of a published campaign are read from
-- these copies. What arrives later is kept in the live tables and flagged, never counted in
-- the published results. Never edit a migration once committed: add a new one.
CREATE TABLE publications (
    campaign_id TEXT PRIMARY KEY NOT NULL,
    published_at BIGINT NOT NULL         -- unix milliseconds
);

-- level_counts at publication (results above the hamlets sum them per commune when read).
CREATE TABLE published_level_counts (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    question_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    level TEXT NOT NULL,
    from_responses BIGINT NOT NULL,
    from_tallies BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, hamlet_id, question_id, subject_id, level)
);

-- Participation (hamlet_counts) at publication.
CREATE TABLE published_hamlet_counts (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    submitted BIGINT NOT NULL,
    ballots_returned BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, hamlet_id)
);

-- The responses (with a counted answer) and tallies counted at publication.
CREATE TABLE published_entities (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    entity_kind TEXT NOT NULL,           -- 'response' or 'tally'
    entity_id TEXT NOT NULL,
    PRIMARY KEY (campaign_id, hamlet_id, entity_kind, entity_id)
);

-- Campaigns published before this migration are frozen as they are now.
INSERT INTO publications (campaign_id, published_at)
    SELECT id, updated_at FROM campaigns WHERE state = 'published';
INSERT INTO published_level_counts
    SELECT lc.campaign_id, lc.hamlet_id, lc.question_id, lc.subject_id, lc.level, lc.from_responses, lc.from_tallies
    FROM level_counts lc JOIN publications p ON p.campaign_id = lc.campaign_id;
INSERT INTO published_hamlet_counts
    SELECT hc.campaign_id, hc.hamlet_id, hc.submitted, hc.ballots_returned
    FROM hamlet_counts hc JOIN publications p ON p.campaign_id = hc.campaign_id;
INSERT INTO published_entities
    SELECT DISTINCT a.campaign_id, a.hamlet_id, 'response', a.response_id
    FROM answers a JOIN publications p ON p.campaign_id = a.campaign_id WHERE a.counted = 1;
INSERT INTO published_entities
    SELECT t.campaign_id, t.hamlet_id, 'tally', t.tally_id
    FROM tallies t JOIN publications p ON p.campaign_id = t.campaign_id WHERE t.counted = 1;
