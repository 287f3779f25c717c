-- The PostgreSQL schema: the same tables and columns, with the same meaning,
-- as the SQLite schema after its migrations 0001-0007 (see those files for
-- what each column is for). Instants are unix milliseconds (BIGINT) and
-- label maps and thread events JSON text, as there, so that one set of
-- decoders (src/store/rows.rs) reads both.

CREATE TABLE cards (
    seq                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                 TEXT NOT NULL UNIQUE,
    card_key           TEXT NOT NULL,
    route              TEXT NOT NULL,
    channel            TEXT NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
    opened_at          BIGINT NOT NULL,
    resolved_at        BIGINT,
    ts                 TEXT,
    group_labels       TEXT NOT NULL,
    common_labels      TEXT NOT NULL,
    common_annotations TEXT NOT NULL,
    external_url       TEXT,
    group_digest       BIGINT NOT NULL,
    firing_count       BIGINT NOT NULL,
    resolved_count     BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    acked_by           TEXT,
    acked_at           BIGINT,
    escalation_level   BIGINT NOT NULL DEFAULT 0,
    next_escalation_at BIGINT,
    manual_resolve     BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX cards_by_key ON cards (card_key, seq);
CREATE INDEX cards_escalation_due ON cards (next_escalation_at) WHERE next_escalation_at IS NOT NULL;
CREATE INDEX cards_by_message ON cards (channel, ts) WHERE ts IS NOT NULL;

CREATE TABLE alerts (
    card_seq      BIGINT NOT NULL REFERENCES cards (seq),
    fingerprint   BIGINT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    digest        BIGINT NOT NULL,
    labels        TEXT NOT NULL,
    annotations   TEXT NOT NULL,
    starts_at     BIGINT NOT NULL,
    ends_at       BIGINT,
    generator_url TEXT,
    updated_at    BIGINT NOT NULL,
    occurrences   BIGINT,
    last_seen_at  BIGINT,
    expires_at    BIGINT,
    PRIMARY KEY (card_seq, fingerprint)
);
CREATE INDEX alerts_expiring ON alerts (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE outbox (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    card_seq    BIGINT NOT NULL REFERENCES cards (seq),
    channel     TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('post', 'update', 'reply', 'dm')),
    state       TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'dead')),
    events      TEXT,
    recipient   TEXT,
    attempts    BIGINT NOT NULL DEFAULT 0,
    reconcile   BOOLEAN NOT NULL DEFAULT FALSE,
    not_before  BIGINT NOT NULL,
    last_error  TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    events_held BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX outbox_by_channel ON outbox (channel, state, id);
CREATE INDEX outbox_by_card ON outbox (card_seq, state, kind);
-- Invariant 3: a card is posted at most once.
CREATE UNIQUE INDEX outbox_one_post_per_card ON outbox (card_seq) WHERE kind = 'post';

CREATE TABLE thread_events (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    op_id  BIGINT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    event  TEXT NOT NULL
);
CREATE INDEX thread_events_by_op ON thread_events (op_id, id);

CREATE TABLE requests_seen (
    key TEXT PRIMARY KEY,
    at  BIGINT NOT NULL
);

CREATE TABLE channel_leases (
    channel    TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
