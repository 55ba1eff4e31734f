-- The append-only, hash-chained ledger of signed decision records.
CREATE TABLE IF NOT EXISTS ledger_records (
    seq        BIGSERIAL PRIMARY KEY,
    record_id  TEXT   NOT NULL UNIQUE,
    repo       TEXT   NOT NULL,
    repo_seq   BIGINT NOT NULL,
    number     BIGINT NOT NULL,
    record_key TEXT   NOT NULL,
    created_ms BIGINT NOT NULL,
    body       TEXT   NOT NULL,
    signature  TEXT   NOT NULL,
    hash       TEXT   NOT NULL,
    -- One chain per repository: two writers racing for the same position cannot both win.
    UNIQUE (repo, repo_seq)
);

-- What has been recorded for one change (so a decision is recorded once, not per event).
CREATE INDEX IF NOT EXISTS ledger_records_change ON ledger_records (repo, number);

-- Append-only even for a direct SQL session: UPDATE, DELETE and TRUNCATE are refused.
CREATE OR REPLACE FUNCTION ledger_records_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger records are append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_records_no_update_delete
BEFORE UPDATE OR DELETE ON ledger_records
FOR EACH ROW EXECUTE FUNCTION ledger_records_refuse_change();

CREATE TRIGGER ledger_records_no_truncate
BEFORE TRUNCATE ON ledger_records
FOR EACH STATEMENT EXECUTE FUNCTION ledger_records_refuse_change();
