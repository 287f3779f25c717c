-- Escalation steps may notify users by direct message: a fourth kind of
-- outbox operation. SQLite cannot change a CHECK constraint in place, so the
-- table is rebuilt with the same rows.
CREATE TABLE outbox_v3 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    card_seq    INTEGER NOT NULL REFERENCES cards (seq),
    channel     TEXT NOT NULL,        -- the card's channel (DMs queue there too)
    kind        TEXT NOT NULL CHECK (kind IN ('post', 'update', 'reply', 'dm')),
    state       TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'dead')),
    events      TEXT,                 -- JSON array of thread events (reply, dm)
    recipient   TEXT,                 -- user id of a direct message
    attempts    INTEGER NOT NULL DEFAULT 0,
    reconcile   INTEGER NOT NULL DEFAULT 0,
    not_before  INTEGER NOT NULL,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
INSERT INTO outbox_v3 (id, card_seq, channel, kind, state, events, attempts, reconcile, not_before,
    last_error, created_at, updated_at)
SELECT id, card_seq, channel, kind, state, events, attempts, reconcile, not_before,
    last_error, created_at, updated_at FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v3 RENAME TO outbox;
CREATE INDEX outbox_by_channel ON outbox (channel, state, id);
CREATE INDEX outbox_by_card ON outbox (card_seq, state, kind);
CREATE UNIQUE INDEX outbox_one_post_per_card ON outbox (card_seq) WHERE kind = 'post';
