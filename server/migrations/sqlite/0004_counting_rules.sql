-- Counting by the campaign's rules: a meeting tally counts only when nothing is flagged on it
-- (figures that do not add up, more ballots than voters, a tally entered twice), or once staff
-- reviewed what was flagged. Never edit a migration once committed: add a new one.
ALTER TABLE tallies ADD COLUMN counted BIGINT NOT NULL DEFAULT 1;
