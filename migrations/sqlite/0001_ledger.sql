-- The append-only, hash-chained ledger of signed decision records.
CREATE TABLE IF NOT EXISTS ledger_records (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id  TEXT    NOT NULL UNIQUE,
    repo       TEXT    NOT NULL,
    repo_seq   BIGINT  NOT NULL,
    number     BIGINT  NOT NULL,
    record_key TEXT    NOT NULL,
    created_ms BIGINT  NOT NULL,
    body       TEXT    NOT NULL,
    signature  TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    -- One chain per repository: two writers racing for the same position cannot both win.
    UNIQUE (repo, repo_seq)
);

-- What has been recorded for one change (so a decision is recorded once, not per event).
CREATE INDEX IF NOT EXISTS ledger_records_change ON ledger_records (repo, number);

CREATE TRIGGER IF NOT EXISTS ledger_records_no_update
BEFORE UPDATE ON ledger_records
BEGIN
    SELECT RAISE(ABORT, 'ledger records are append-only');
END;

CREATE TRIGGER IF NOT EXISTS ledger_records_no_delete
BEFORE DELETE ON ledger_records
BEGIN
    SELECT RAISE(ABORT, 'ledger records are append-only');
END;
