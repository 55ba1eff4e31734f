-- The durable job queue: accepted deliveries waiting to be evaluated.
CREATE TABLE IF NOT EXISTS jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  TEXT    NOT NULL,
    change_key   TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    available_ms BIGINT  NOT NULL,
    created_ms   BIGINT  NOT NULL,
    last_error   TEXT,
    -- A redelivered delivery is acknowledged and not queued twice.
    UNIQUE (delivery_id, change_key)
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (state, available_ms);

-- Who evaluates a change right now: one holder per change, across processes.
CREATE TABLE IF NOT EXISTS change_leases (
    change_key     TEXT   PRIMARY KEY,
    holder         TEXT   NOT NULL,
    lease_until_ms BIGINT NOT NULL
);
