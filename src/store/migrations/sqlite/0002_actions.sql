-- Acting on cards from Slack: acknowledgement and escalation state.
ALTER TABLE cards ADD COLUMN acked_by TEXT;             -- Slack user id
ALTER TABLE cards ADD COLUMN acked_at INTEGER;          -- unix ms
-- Escalation steps already taken (0 = none yet).
ALTER TABLE cards ADD COLUMN escalation_level INTEGER NOT NULL DEFAULT 0;
-- When the next step of the route's policy is due (unix ms); NULL when
-- nothing is due: no further step, acknowledged, or resolved.
ALTER TABLE cards ADD COLUMN next_escalation_at INTEGER;
CREATE INDEX cards_escalation_due ON cards (next_escalation_at) WHERE next_escalation_at IS NOT NULL;

-- Idempotency keys of requests from Slack already handled (event ids,
-- retried interaction deliveries), pruned after a day.
CREATE TABLE requests_seen (
    key TEXT PRIMARY KEY,
    at  INTEGER NOT NULL
) WITHOUT ROWID;
