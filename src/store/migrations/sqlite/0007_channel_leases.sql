-- Several replicas: each channel's outbox is drained by the holder of its
-- lease (invariant 9 in src/store/mod.rs). A holder that dies stops
-- renewing; once expires_at passes, another takes over.
CREATE TABLE channel_leases (
    channel    TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,     -- a replica's delivery identity
    expires_at INTEGER NOT NULL   -- unix ms
) WITHOUT ROWID;
