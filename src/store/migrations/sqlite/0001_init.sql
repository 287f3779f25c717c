-- Cards: one row per card. The latest card of a key is the one with the
-- highest seq (see the invariants in src/store/mod.rs).
CREATE TABLE cards (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT NOT NULL UNIQUE,
    card_key           TEXT NOT NULL,
    route              TEXT NOT NULL,
    channel            TEXT NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
    opened_at          INTEGER NOT NULL,      -- unix ms
    resolved_at        INTEGER,               -- unix ms
    ts                 TEXT,                  -- Slack message ts once posted
    group_labels       TEXT NOT NULL,         -- JSON object
    common_labels      TEXT NOT NULL,         -- JSON object
    common_annotations TEXT NOT NULL,         -- JSON object
    external_url       TEXT,
    group_digest       INTEGER NOT NULL,
    firing_count       INTEGER NOT NULL,
    resolved_count     INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX cards_by_key ON cards (card_key, seq);

-- Alerts of a card, keyed by fingerprint (stored as the signed 64-bit
-- reinterpretation of the unsigned fingerprint).
CREATE TABLE alerts (
    card_seq      INTEGER NOT NULL REFERENCES cards (seq),
    fingerprint   INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    digest        INTEGER NOT NULL,
    labels        TEXT NOT NULL,
    annotations   TEXT NOT NULL,
    starts_at     INTEGER NOT NULL,
    ends_at       INTEGER,
    generator_url TEXT,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (card_seq, fingerprint)
) WITHOUT ROWID;

-- The outbox: Slack operations written in the same transaction as the state
-- change that caused them. Rows are deleted when they succeed; dead letters
-- stay.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    card_seq    INTEGER NOT NULL REFERENCES cards (seq),
    channel     TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('post', 'update', 'reply')),
    state       TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'dead')),
    events      TEXT,                 -- JSON array of thread events (reply)
    attempts    INTEGER NOT NULL DEFAULT 0,
    reconcile   INTEGER NOT NULL DEFAULT 0,
    not_before  INTEGER NOT NULL,     -- unix ms
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX outbox_by_channel ON outbox (channel, state, id);
CREATE INDEX outbox_by_card ON outbox (card_seq, state, kind);
-- Invariant 3: a card is posted at most once.
CREATE UNIQUE INDEX outbox_one_post_per_card ON outbox (card_seq) WHERE kind = 'post';
