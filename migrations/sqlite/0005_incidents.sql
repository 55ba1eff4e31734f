-- Post-incident reviews: one per change merged under a bypass. The signed ledger records say
-- what happened; this table is the index tollgate looks them up by (by issue when one is
-- closed, by due time for `tollgate audit show` and the overdue-review switch).
CREATE TABLE IF NOT EXISTS incident_reviews (
    forge         TEXT   NOT NULL,
    repo          TEXT   NOT NULL,
    -- The change merged under the bypass.
    change_number BIGINT NOT NULL,
    ticket        TEXT   NOT NULL,
    bypassed_by   TEXT   NOT NULL,
    merged_ms     BIGINT NOT NULL,
    due_ms        BIGINT NOT NULL,
    -- `opening` until the forge has the issue, then `open`, then `closed`.
    state         TEXT   NOT NULL,
    issue_number  BIGINT,
    issue_url     TEXT,
    reminded_ms   BIGINT,
    closed_ms     BIGINT,
    closed_by     TEXT,
    PRIMARY KEY (forge, repo, change_number)
);
CREATE INDEX IF NOT EXISTS incident_reviews_issue ON incident_reviews (forge, repo, issue_number);

-- Rollbacks requested with `/tollgate rollback`: one per request (who, when), with the revert
-- change once opened. A revert change passes the emergency gate on its request's bypass.
CREATE TABLE IF NOT EXISTS incident_rollbacks (
    forge         TEXT   NOT NULL,
    repo          TEXT   NOT NULL,
    change_number BIGINT NOT NULL,
    requested_by  TEXT   NOT NULL,
    requested_ms  BIGINT NOT NULL,
    ticket        TEXT   NOT NULL,
    reason        TEXT   NOT NULL,
    revert_number BIGINT,
    revert_head   TEXT,
    revert_url    TEXT,
    PRIMARY KEY (forge, repo, change_number, requested_by, requested_ms)
);
CREATE INDEX IF NOT EXISTS incident_rollbacks_revert ON incident_rollbacks (forge, repo, revert_number);
