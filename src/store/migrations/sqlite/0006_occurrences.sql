-- Event sources (the tracing Layer, OTLP) report occurrences, not state:
-- an alert counts how often it happened in its current episode and resolves
-- by itself once it has been quiet until expires_at (last_seen_at plus the
-- route's quiet_period). All three stay NULL for Alertmanager's alerts.
ALTER TABLE alerts ADD COLUMN occurrences INTEGER;
ALTER TABLE alerts ADD COLUMN last_seen_at INTEGER;   -- unix ms
ALTER TABLE alerts ADD COLUMN expires_at INTEGER;     -- unix ms
CREATE INDEX alerts_expiring ON alerts (expires_at) WHERE expires_at IS NOT NULL;
