-- When a change's jobs started failing (cleared when they succeed or an operator retries
-- them): jobs that keep failing past the give-up bound are parked as `failed`.
ALTER TABLE jobs ADD COLUMN failing_since_ms BIGINT;
-- The jobs of one change are looked up together on every claim and completion.
CREATE INDEX IF NOT EXISTS jobs_change ON jobs (change_key, state);
