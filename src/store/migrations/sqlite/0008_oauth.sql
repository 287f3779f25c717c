-- OAuth v2 installs (src/slack/oauth.rs). An install's `state` lives here,
-- not in one process's memory, so that the callback may reach another
-- replica than the install page did. Only hashes are kept: a copy of the
-- table cannot complete anyone's install.
CREATE TABLE oauth_states (
    state_hash   TEXT PRIMARY KEY,   -- hex SHA-256 of the state
    browser_hash TEXT NOT NULL,      -- hex SHA-256 of the browser's cookie
    expires_at   INTEGER NOT NULL    -- unix ms
) WITHOUT ROWID;

-- One row per workspace that installed ackbar. The bot token is stored as
-- Slack issued it (not encrypted): protect the database like the token.
CREATE TABLE installations (
    team_id      TEXT PRIMARY KEY,
    team_name    TEXT NOT NULL,
    bot_token    TEXT NOT NULL,
    bot_user_id  TEXT NOT NULL,
    scopes       TEXT NOT NULL,      -- comma-separated, as Slack grants them
    installed_at INTEGER NOT NULL    -- unix ms
) WITHOUT ROWID;
