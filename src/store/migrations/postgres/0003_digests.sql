-- Scheduled digests: the same as SQLite's 0009_digests.sql (see there).
CREATE TABLE digest_runs (
    digest_key   TEXT PRIMARY KEY,
    last_instant BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

ALTER TABLE outbox ALTER COLUMN card_seq DROP NOT NULL;
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('post', 'update', 'reply', 'dm', 'digest'));
ALTER TABLE outbox ADD COLUMN digest TEXT;
ALTER TABLE outbox ADD CONSTRAINT outbox_digest_has_no_card
    CHECK ((kind = 'digest') = (card_seq IS NULL));

CREATE INDEX cards_by_channel ON cards (channel, opened_at);
