-- Deadlines the server acts on (post-incident review reminders, bypass expiry): kept in the
-- store so they survive restarts, and claimed under a lease so one replica acts on each.
CREATE TABLE IF NOT EXISTS deadlines (
    -- What it is about, unique: scheduling the same deadline twice keeps one.
    deadline_key   TEXT   PRIMARY KEY,
    kind           TEXT   NOT NULL,
    due_ms         BIGINT NOT NULL,
    payload        TEXT   NOT NULL,
    -- `pending` until acted on, then `done`.
    state          TEXT   NOT NULL,
    holder         TEXT,
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    done_ms        BIGINT
);
CREATE INDEX IF NOT EXISTS deadlines_due ON deadlines (state, due_ms);
