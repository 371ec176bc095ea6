-- Who stands behind each response: the enrolled device whose actor made it, or that actor (hex)
-- when no device was enrolled with it; the busy-collector alert counts per writer, not per the
-- collector name a device writes. Filled by the projection (`hamlet-server reproject` fills
-- older rows). Never edit a migration once committed: add a new one.
ALTER TABLE responses ADD COLUMN writer TEXT;
