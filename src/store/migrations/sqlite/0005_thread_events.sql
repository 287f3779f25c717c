-- Thread events of pending replies, one row each: appending to a reply during
-- a storm is one insert instead of rewriting a growing JSON array.
CREATE TABLE thread_events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    op_id  INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    event  TEXT NOT NULL            -- one ThreadEvent as JSON
);
CREATE INDEX thread_events_by_op ON thread_events (op_id, id);
-- How many events a reply holds, for the cap (MAX_EVENTS_PER_REPLY).
ALTER TABLE outbox ADD COLUMN events_held INTEGER NOT NULL DEFAULT 0;
INSERT INTO thread_events (op_id, event)
    SELECT o.id, j.value FROM outbox o, json_each(o.events) j
    WHERE o.kind = 'reply' AND o.events IS NOT NULL ORDER BY o.id, j.key;
UPDATE outbox SET events_held = (SELECT COUNT(*) FROM thread_events t WHERE t.op_id = outbox.id), events = NULL
    WHERE kind = 'reply';
