-- People, their sign-in, their devices and what they may touch (postgres dialect).
-- Never edit a migration once committed: add a new one.

-- Staff (admin, viewer) sign in with a password; collectors and relays use devices.
CREATE TABLE people (
    id TEXT PRIMARY KEY NOT NULL,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'viewer', 'collector', 'relay')),
    password_hash TEXT, -- argon2id PHC string; staff only
    must_change_password BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL -- unix milliseconds
);

-- Signed-in staff sessions, by the SHA-256 of the cookie's token.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    person_id TEXT NOT NULL REFERENCES people (id),
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Bearer tokens for automation, by the SHA-256 of the token (shown once).
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    person_id TEXT NOT NULL REFERENCES people (id),
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Which hamlets of which campaign a collector (or relay) works in.
CREATE TABLE assignments (
    person_id TEXT NOT NULL REFERENCES people (id),
    campaign_id TEXT NOT NULL,
    hamlet_id TEXT NOT NULL,
    PRIMARY KEY (person_id, campaign_id, hamlet_id)
);
CREATE INDEX assignments_hamlet ON assignments (campaign_id, hamlet_id);

-- One-time enrollment codes, by the SHA-256 of the code.
CREATE TABLE enrollment_codes (
    code_hash TEXT PRIMARY KEY NOT NULL,
    person_id TEXT NOT NULL REFERENCES people (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    device_id TEXT
);

-- Enrolled devices, by the SHA-256 of their token.
CREATE TABLE devices (
    id TEXT PRIMARY KEY NOT NULL,
    person_id TEXT NOT NULL REFERENCES people (id),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_sync_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX devices_person ON devices (person_id);

-- The Automerge actor ids each device writes with.
CREATE TABLE device_actors (
    actor_id TEXT PRIMARY KEY NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices (id)
);

-- Staff actions and security events, append-only.
CREATE TABLE IF NOT EXISTS audit_log (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
