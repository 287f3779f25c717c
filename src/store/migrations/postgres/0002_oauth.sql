-- OAuth v2 installs: the same tables and columns as SQLite's 0008_oauth.sql
-- (see there for what they are for).
CREATE TABLE oauth_states (
    state_hash   TEXT PRIMARY KEY,
    browser_hash TEXT NOT NULL,
    expires_at   BIGINT NOT NULL
);

CREATE TABLE installations (
    team_id      TEXT PRIMARY KEY,
    team_name    TEXT NOT NULL,
    bot_token    TEXT NOT NULL,
    bot_user_id  TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    installed_at BIGINT NOT NULL
);
