-- The key pair each sealed campaign's answers are sealed for (issue 17): its public key (hex, as
-- the campaign document publishes it) and its private key wrapped under the server's
-- key-encryption key (the --campaign-kek file, never in the database). Losing the private key
-- loses the campaign's answers: back it up with `hamlet-server campaign-key export`.
-- Never edit a migration once committed: add a new one.
CREATE TABLE campaign_keys (
    campaign_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    wrapped BLOB NOT NULL,
    created_ms BIGINT NOT NULL
);
