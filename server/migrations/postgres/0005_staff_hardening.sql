-- The day (days since the epoch, UTC) an API token was last used, so that its first use each
-- day is audited once. Never edit a migration once committed: add a new one.
ALTER TABLE api_tokens ADD COLUMN last_used_day BIGINT;
