-- The latest decision of each change, as its page shows it (what the sticky comment shows,
-- plus where the change is). The signed records stay in the ledger; the page verifies them.
CREATE TABLE IF NOT EXISTS decision_pages (
    forge      TEXT   NOT NULL,
    repo       TEXT   NOT NULL,
    number     BIGINT NOT NULL,
    title      TEXT   NOT NULL,
    url        TEXT   NOT NULL,
    head_sha   TEXT   NOT NULL,
    outcome    TEXT   NOT NULL,
    decided_ms BIGINT NOT NULL,
    view       TEXT   NOT NULL,
    PRIMARY KEY (forge, repo, number)
);
CREATE INDEX IF NOT EXISTS decision_pages_recent ON decision_pages (decided_ms);
