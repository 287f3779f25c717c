-- Scheduled digests (invariant 10 in src/store/mod.rs): per digest key, the
-- latest scheduled instant claimed. Retention never prunes it.
CREATE TABLE digest_runs (
    digest_key   TEXT PRIMARY KEY,  -- channel, schedule and time zone
    last_instant INTEGER NOT NULL,  -- unix ms of the scheduled instant
    updated_at   INTEGER NOT NULL
) WITHOUT ROWID;

-- A digest is a channel message about no card: a fifth kind of outbox
-- operation, with a NULL card_seq and its figures in `digest`. SQLite cannot
-- relax NOT NULL or a CHECK in place, so the table is rebuilt with the same
-- rows. Dropping the old table deletes its thread events by cascade
-- (foreign keys are on during migrations), so they are kept aside and put
-- back; their op ids are unchanged.
CREATE TEMP TABLE thread_events_kept AS SELECT id, op_id, event FROM thread_events;
CREATE TABLE outbox_v9 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    card_seq    INTEGER REFERENCES cards (seq),   -- NULL for a digest
    channel     TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('post', 'update', 'reply', 'dm', 'digest')),
    state       TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'dead')),
    events      TEXT,
    recipient   TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    reconcile   INTEGER NOT NULL DEFAULT 0,
    not_before  INTEGER NOT NULL,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    events_held INTEGER NOT NULL DEFAULT 0,
    digest      TEXT,                              -- JSON: what a digest reports
    CHECK ((kind = 'digest') = (card_seq IS NULL))
);
INSERT INTO outbox_v9 (id, card_seq, channel, kind, state, events, recipient, attempts, reconcile,
    not_before, last_error, created_at, updated_at, events_held)
SELECT id, card_seq, channel, kind, state, events, recipient, attempts, reconcile,
    not_before, last_error, created_at, updated_at, events_held FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v9 RENAME TO outbox;
CREATE INDEX outbox_by_channel ON outbox (channel, state, id);
CREATE INDEX outbox_by_card ON outbox (card_seq, state, kind);
CREATE UNIQUE INDEX outbox_one_post_per_card ON outbox (card_seq) WHERE kind = 'post';
INSERT INTO thread_events (id, op_id, event) SELECT id, op_id, event FROM thread_events_kept;
DROP TABLE thread_events_kept;

-- A digest counts one channel's cards by when they opened.
CREATE INDEX cards_by_channel ON cards (channel, opened_at);
