-- How far a device's clock is from the server's (device minus server, milliseconds), as the
-- device told it when it last connected to sync (the Hamlet-Device-Time header), so that the
-- devices page can flag a phone whose clock is days off. Never edit a migration once
-- committed: add a new one.
ALTER TABLE devices ADD COLUMN clock_offset_ms BIGINT;
