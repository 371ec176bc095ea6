-- While a campaign is open, results show each hamlet's counts as last *released*: a hamlet's
-- figures are released again only once at least the minimum group (five) of answers were
-- counted there since the last release, so that comparing results before and after a sync
-- never shows a single answer. Kept by a rebuild, like reviews. Never edit a migration once
-- committed: add a new one.
CREATE TABLE released_hamlets (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    answers BIGINT NOT NULL,             -- submitted + ballots_returned (hamlet_counts) when released
    released_at BIGINT NOT NULL,         -- unix milliseconds
    PRIMARY KEY (campaign_id, hamlet_id)
);

-- level_counts of each hamlet as last released.
CREATE TABLE released_level_counts (
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    question_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    level TEXT NOT NULL,
    from_responses BIGINT NOT NULL,
    from_tallies BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, hamlet_id, question_id, subject_id, level)
);

-- The same, summed per commune (the hamlets of an open campaign do not move).
CREATE TABLE released_commune_level_counts (
    campaign_id TEXT NOT NULL,
    commune_id TEXT NOT NULL,
    question_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    level TEXT NOT NULL,
    from_responses BIGINT NOT NULL,
    from_tallies BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, commune_id, question_id, subject_id, level)
);

-- Open campaigns release what they count now.
INSERT INTO released_hamlets
    SELECT hc.campaign_id, hc.hamlet_id, hc.submitted + hc.ballots_returned, c.updated_at
    FROM hamlet_counts hc JOIN campaigns c ON c.id = hc.campaign_id WHERE c.state = 'open';
INSERT INTO released_level_counts
    SELECT lc.campaign_id, lc.hamlet_id, lc.question_id, lc.subject_id, lc.level, lc.from_responses, lc.from_tallies
    FROM level_counts lc JOIN campaigns c ON c.id = lc.campaign_id WHERE c.state = 'open';
INSERT INTO released_commune_level_counts
    SELECT cc.campaign_id, cc.commune_id, cc.question_id, cc.subject_id, cc.level, cc.from_responses, cc.from_tallies
    FROM commune_level_counts cc JOIN campaigns c ON c.id = cc.campaign_id WHERE c.state = 'open';
