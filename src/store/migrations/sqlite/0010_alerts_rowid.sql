-- Alert rows carry their labels, annotations and generator URL: about a
-- kilobyte each. A WITHOUT ROWID table keeps whole rows in its key's B-tree,
-- which suits small rows only: with rows this large a leaf page holds three
-- or four, and a storm of new alerts splits pages on nearly every insert.
-- As a rowid table, new rows append and only the key (card, fingerprint)
-- lives in a small unique index. Same columns, same rows.
CREATE TABLE alerts_v10 (
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
    occurrences   INTEGER,
    last_seen_at  INTEGER,
    expires_at    INTEGER
);
INSERT INTO alerts_v10 (card_seq, fingerprint, status, digest, labels, annotations, starts_at,
    ends_at, generator_url, updated_at, occurrences, last_seen_at, expires_at)
SELECT card_seq, fingerprint, status, digest, labels, annotations, starts_at,
    ends_at, generator_url, updated_at, occurrences, last_seen_at, expires_at FROM alerts;
DROP TABLE alerts;
ALTER TABLE alerts_v10 RENAME TO alerts;
CREATE UNIQUE INDEX alerts_by_card ON alerts (card_seq, fingerprint);
CREATE INDEX alerts_expiring ON alerts (expires_at) WHERE expires_at IS NOT NULL;
