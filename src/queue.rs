//! The durable job queue, in the same store as the ledger: accepted deliveries are written here
//! before the forge gets its answer, so nothing accepted is lost; a redelivered delivery is not
//! queued twice; jobs of one change are handed out together (coalesced: the evaluation reads
//! the change's latest state anyway) and to one holder at a time across processes, under a
//! lease that the holder renews while it works and that a crashed holder's jobs are reclaimed
//! from once it runs out.
//!
//! Job states: `queued` (waiting, possibly until a backoff ends) → `running` (under a lease) →
//! `done`, or back to `queued` with one more attempt, or `failed` once a change kept failing
//! past the give-up bound (kept for `tollgate jobs retry`).
//!
//! `serve` uses it when forge credentials are set; `tollgate jobs …` inspects it.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

mod batch;
pub mod runner;

pub use batch::{BatchError, GroupCommit};

/// A store failure.
pub type QueueError = sqlx::Error;

/// A job to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The delivery it comes from (redeliveries share it).
    pub delivery_id: String,
    /// What it is about (e.g. `github:owner/name#7`).
    pub change_key: String,
    /// The job, serialised by its producer.
    pub payload: String,
}

/// One queued job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// Its id (increasing in acceptance order).
    pub id: i64,
    /// The delivery it came from.
    pub delivery_id: String,
    /// What it is about (e.g. `github:owner/name#7`).
    pub change_key: String,
    /// The job, serialised by its producer.
    pub payload: String,
    /// How often it was tried before.
    pub attempts: i64,
    /// When it was accepted (epoch ms).
    pub created_ms: i64,
    /// Since when it has been failing (epoch ms), if it has.
    pub failing_since_ms: Option<i64>,
}

/// A job as `tollgate jobs list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// Its id.
    pub id: i64,
    /// The delivery it came from.
    pub delivery_id: String,
    /// The change.
    pub change_key: String,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    /// Tries so far.
    pub attempts: i64,
    /// When it may run (epoch ms).
    pub available_ms: i64,
    /// When it was accepted (epoch ms).
    pub created_ms: i64,
    /// The last failure.
    pub last_error: Option<String>,
}

/// The jobs of one change, leased to one holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The change.
    pub change_key: String,
    /// Who holds it.
    pub holder: String,
    /// Its ready jobs, oldest first.
    pub jobs: Vec<QueuedJob>,
}

impl Claim {
    /// Most tries any of its jobs had before this one.
    pub fn attempts(&self) -> i64 {
        self.jobs.iter().map(|j| j.attempts).max().unwrap_or(0)
    }

    /// Its jobs' payloads, oldest first; one that cannot be read (written by another version)
    /// is logged and skipped.
    pub fn decode<J: serde::de::DeserializeOwned>(&self) -> Vec<J> {
        self.jobs
            .iter()
            .filter_map(|queued| match serde_json::from_str(&queued.payload) {
                Ok(job) => Some(job),
                Err(error) => {
                    tracing::error!(%error, job = queued.id, "a queued job cannot be read; skipping it");
                    None
                }
            })
            .collect()
    }

    /// Since when the change has been failing, if it has.
    pub fn failing_since_ms(&self) -> Option<i64> {
        self.jobs.iter().filter_map(|j| j.failing_since_ms).min()
    }
}

/// What the queue holds, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Jobs waiting (including those waiting out a backoff).
    pub queued: i64,
    /// Jobs being worked on.
    pub running: i64,
    /// Jobs given up on, waiting for an operator.
    pub failed: i64,
    /// Acceptance time of the oldest job not yet done or failed (epoch ms).
    pub oldest_pending_ms: Option<i64>,
}

/// How many changes with ready jobs one claim looks at before giving up.
const CLAIM_CANDIDATES: i64 = 32;
/// Most jobs of one change handed out in one claim (they coalesce into one evaluation; the
/// rest follow in the next claim).
const CLAIM_JOBS: i64 = 500;

const JOB_COLUMNS: &str =
    "id, delivery_id, change_key, payload, attempts, created_ms, failing_since_ms";

/// The queue.
#[derive(Clone)]
pub struct JobQueue {
    pool: AnyPool,
}

impl JobQueue {
    /// A queue in the store behind `pool` (its schema comes with the ledger's migrations).
    pub fn new(pool: AnyPool) -> JobQueue {
        JobQueue { pool }
    }

    /// The store's pool (for operator commands and tests).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the store is PostgreSQL (several writers help there; SQLite has one).
    pub fn is_postgres(&self) -> bool {
        self.pool
            .connect_options()
            .database_url
            .scheme()
            .starts_with("postgres")
    }

    /// Queues a job. Returns `false` when this delivery was already queued for this change
    /// (a redelivery): it is acknowledged and not processed twice.
    pub async fn enqueue(
        &self,
        delivery_id: &str,
        change_key: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        let job = NewJob {
            delivery_id: delivery_id.to_owned(),
            change_key: change_key.to_owned(),
            payload: payload.to_owned(),
        };
        Ok(self.enqueue_batch(&[job], now_ms).await?[0])
    }

    /// Queues several jobs in one statement (one round trip, one commit, one disk flush),
    /// which is what makes group commit at intake cheap. Returns, per job, whether it was new
    /// (`false`: a redelivery, or a repeat within `jobs`; acknowledged, not queued twice).
    pub async fn enqueue_batch(
        &self,
        jobs: &[NewJob],
        now_ms: i64,
    ) -> Result<Vec<bool>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        // Rows go in in one global order, so two batches holding the same redelivered jobs
        // (two writers, two processes) wait on each other's unique keys in the same order
        // instead of deadlocking (PostgreSQL would abort one after `deadlock_timeout`). Jobs in
        // one batch arrived together; their order among themselves carries no meaning.
        let mut sorted: Vec<&NewJob> = jobs.iter().collect();
        sorted
            .sort_by(|a, b| (&a.delivery_id, &a.change_key).cmp(&(&b.delivery_id, &b.change_key)));
        let values = (0..sorted.len())
            .map(|i| {
                let p = 3 * i + 2;
                format!("(${p}, ${}, ${}, 'queued', 0, $1, $1)", p + 1, p + 2)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO jobs (delivery_id, change_key, payload, state, attempts, available_ms, created_ms) \
             VALUES {values} ON CONFLICT (delivery_id, change_key) DO NOTHING RETURNING delivery_id, change_key"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_ms);
        for job in sorted {
            query = query
                .bind(&job.delivery_id)
                .bind(&job.change_key)
                .bind(&job.payload);
        }
        let mut inserted = std::collections::HashSet::new();
        for row in query.fetch_all(&self.pool).await? {
            inserted.insert((
                row.try_get::<String, _>("delivery_id")?,
                row.try_get::<String, _>("change_key")?,
            ));
        }
        // The first of repeated (delivery, change) pairs is the one that was written.
        Ok(jobs
            .iter()
            .map(|job| inserted.remove(&(job.delivery_id.clone(), job.change_key.clone())))
            .collect())
    }

    /// Claims the change whose oldest ready job is oldest and that nobody holds, with its ready
    /// jobs, for `lease_ms`. Jobs of a holder whose lease ran out are reclaimed first.
    pub async fn claim(
        &self,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Claim>, QueueError> {
        self.claim_matching(holder, now_ms, lease_ms, &[]).await
    }

    /// [`JobQueue::claim`], among the changes whose key starts with one of `prefixes` (all
    /// changes when empty): a process claims only what it can evaluate (a replica without
    /// GitLab credentials leaves GitLab's changes to one that has them).
    pub async fn claim_matching(
        &self,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
        prefixes: &[String],
    ) -> Result<Option<Claim>, QueueError> {
        self.reclaim_expired(now_ms).await?;
        // Prefixes are tollgate's own (`github:`), never input: no LIKE wildcards in them.
        debug_assert!(prefixes.iter().all(|p| !p.contains(['%', '_', '\\'])));
        let filter = if prefixes.is_empty() {
            String::new()
        } else {
            let alternatives: Vec<String> = (0..prefixes.len())
                .map(|i| format!("change_key LIKE ${}", i + 3))
                .collect();
            format!("AND ({})", alternatives.join(" OR "))
        };
        let sql = format!(
            "SELECT change_key, MIN(id) AS first FROM jobs WHERE state = 'queued' AND available_ms <= $1 {filter} \
             GROUP BY change_key ORDER BY first LIMIT $2"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms)
            .bind(CLAIM_CANDIDATES);
        for prefix in prefixes {
            query = query.bind(format!("{prefix}%"));
        }
        let candidates = query.fetch_all(&self.pool).await?;
        for candidate in candidates {
            let change_key: String = candidate.try_get("change_key")?;
            if !self
                .take_lease(&change_key, holder, now_ms, lease_ms)
                .await?
            {
                continue;
            }
            let jobs = self.take_ready_jobs(&change_key, now_ms).await?;
            if jobs.is_empty() {
                // Someone else finished them between the look and the lease.
                self.release(&change_key, holder).await?;
                continue;
            }
            return Ok(Some(Claim {
                change_key,
                holder: holder.to_owned(),
                jobs,
            }));
        }
        Ok(None)
    }

    /// One holder per change: the lease row's primary key admits one, and an expired lease
    /// may be taken over.
    async fn take_lease(
        &self,
        change_key: &str,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, QueueError> {
        let taken = sqlx::query(
            "INSERT INTO change_leases (change_key, holder, lease_until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (change_key) DO UPDATE SET holder = excluded.holder, lease_until_ms = excluded.lease_until_ms \
             WHERE change_leases.lease_until_ms < $4",
        )
        .bind(change_key)
        .bind(holder)
        .bind(now_ms + lease_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    /// Marks the change's ready jobs running and returns them, oldest first (one statement, so
    /// a crash leaves either all of them queued or all running under the lease).
    async fn take_ready_jobs(
        &self,
        change_key: &str,
        now_ms: i64,
    ) -> Result<Vec<QueuedJob>, QueueError> {
        let sql = format!(
            "UPDATE jobs SET state = 'running' WHERE id IN (SELECT id FROM jobs \
             WHERE change_key = $1 AND state = 'queued' AND available_ms <= $2 ORDER BY id LIMIT $3) \
             RETURNING {JOB_COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(change_key)
            .bind(now_ms)
            .bind(CLAIM_JOBS)
            .fetch_all(&self.pool)
            .await?;
        let mut jobs = rows.iter().map(job).collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    /// Jobs left running by a holder whose lease expired (it crashed) go back to the queue.
    async fn reclaim_expired(&self, now_ms: i64) -> Result<(), QueueError> {
        sqlx::query(
            "UPDATE jobs SET state = 'queued' WHERE state = 'running' AND NOT EXISTS \
             (SELECT 1 FROM change_leases l WHERE l.change_key = jobs.change_key AND l.lease_until_ms >= $1)",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release(&self, change_key: &str, holder: &str) -> Result<(), QueueError> {
        sqlx::query("DELETE FROM change_leases WHERE change_key = $1 AND holder = $2")
            .bind(change_key)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Extends the claim's lease to `until_ms` while its evaluation runs. Returns `false` when
    /// the lease was lost (it ran out and another holder took the change over).
    pub async fn renew(&self, claim: &Claim, until_ms: i64) -> Result<bool, QueueError> {
        let done = sqlx::query(
            "UPDATE change_leases SET lease_until_ms = $1 WHERE change_key = $2 AND holder = $3",
        )
        .bind(until_ms)
        .bind(&claim.change_key)
        .bind(&claim.holder)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The claim's jobs are done. Jobs of the change parked as `failed` earlier are done too:
    /// this evaluation read the change's latest state, which is what they asked for.
    pub async fn complete(&self, claim: &Claim) -> Result<(), QueueError> {
        let sql = format!(
            "UPDATE jobs SET state = 'done', failing_since_ms = NULL WHERE id IN ({}) \
             OR (change_key = $1 AND state = 'failed')",
            id_list(claim, 2)
        );
        let mut tx = self.pool.begin().await?;
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&claim.change_key);
        for job in &claim.jobs {
            query = query.bind(job.id);
        }
        query.execute(&mut *tx).await?;
        release_in(&mut tx, claim).await?;
        tx.commit().await
    }

    /// The claim's jobs go back to the queue, available again at `available_ms`, with one more
    /// attempt counted and the error kept.
    pub async fn retry(
        &self,
        claim: &Claim,
        error: &str,
        available_ms: i64,
    ) -> Result<(), QueueError> {
        self.settle_failure(claim, "queued", error, available_ms)
            .await
    }

    /// The claim's jobs kept failing past the give-up bound: they are parked as `failed` until
    /// an operator retries them (`tollgate jobs retry`) or a later event's evaluation succeeds.
    pub async fn give_up(&self, claim: &Claim, error: &str, now_ms: i64) -> Result<(), QueueError> {
        self.settle_failure(claim, "failed", error, now_ms).await
    }

    async fn settle_failure(
        &self,
        claim: &Claim,
        state: &str,
        error: &str,
        at_ms: i64,
    ) -> Result<(), QueueError> {
        let sql = format!(
            "UPDATE jobs SET state = $1, attempts = attempts + 1, available_ms = $2, last_error = $3, \
             failing_since_ms = COALESCE(failing_since_ms, $4) WHERE id IN ({})",
            id_list(claim, 5)
        );
        let now = chrono::Utc::now().timestamp_millis();
        let mut tx = self.pool.begin().await?;
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state)
            .bind(at_ms)
            .bind(error)
            .bind(now.min(at_ms));
        for job in &claim.jobs {
            query = query.bind(job.id);
        }
        query.execute(&mut *tx).await?;
        release_in(&mut tx, claim).await?;
        tx.commit().await
    }

    /// Hands the claim's jobs back untouched (no attempt counted), e.g. when a draining server
    /// runs out of time: another process takes them at once instead of after the lease.
    pub async fn hand_back(&self, claim: &Claim) -> Result<(), QueueError> {
        let sql = format!(
            "UPDATE jobs SET state = 'queued' WHERE state = 'running' AND id IN ({})",
            id_list(claim, 1)
        );
        let mut tx = self.pool.begin().await?;
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for job in &claim.jobs {
            query = query.bind(job.id);
        }
        query.execute(&mut *tx).await?;
        release_in(&mut tx, claim).await?;
        tx.commit().await
    }

    /// Jobs, newest first (all states, or only those not done).
    pub async fn list(&self, include_done: bool, limit: i64) -> Result<Vec<JobRow>, QueueError> {
        let rows = sqlx::query(
            "SELECT id, delivery_id, change_key, state, attempts, available_ms, created_ms, last_error \
             FROM jobs WHERE state <> 'done' OR $1 = 1 ORDER BY id DESC LIMIT $2",
        )
        .bind(i64::from(include_done))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(JobRow {
                    id: row.try_get("id")?,
                    delivery_id: row.try_get("delivery_id")?,
                    change_key: row.try_get("change_key")?,
                    state: row.try_get("state")?,
                    attempts: row.try_get::<i64, _>("attempts")?,
                    available_ms: row.try_get("available_ms")?,
                    created_ms: row.try_get("created_ms")?,
                    last_error: row.try_get("last_error")?,
                })
            })
            .collect()
    }

    /// Makes waiting and failed jobs (all, or one) available now, e.g. after fixing what made
    /// them fail; their give-up clock starts again. Returns how many.
    pub async fn retry_now(&self, id: Option<i64>, now_ms: i64) -> Result<u64, QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', available_ms = $1, failing_since_ms = NULL \
             WHERE state IN ('queued', 'failed') AND ($2 = 0 OR id = $3)",
        )
        .bind(now_ms)
        .bind(i64::from(id.is_some()))
        .bind(id.unwrap_or(0))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Removes finished jobs created before `before_ms`. Returns how many.
    pub async fn purge_done(&self, before_ms: i64) -> Result<u64, QueueError> {
        let done = sqlx::query("DELETE FROM jobs WHERE state = 'done' AND created_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Jobs waiting or running (what a draining or settling worker still has to do).
    pub async fn depth(&self) -> Result<i64, QueueError> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE state IN ('queued', 'running')")
                .fetch_one(&self.pool)
                .await?;
        row.try_get("n")
    }

    /// Counts by state and the oldest pending job, for `/metrics`.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n, MIN(created_ms) AS oldest FROM jobs \
             WHERE state IN ('queued', 'running', 'failed') GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut stats = QueueStats::default();
        for row in rows {
            let state: String = row.try_get("state")?;
            let n: i64 = row.try_get("n")?;
            let oldest: Option<i64> = row.try_get("oldest")?;
            match state.as_str() {
                "queued" => stats.queued = n,
                "running" => stats.running = n,
                _ => {
                    stats.failed = n;
                    continue;
                }
            }
            stats.oldest_pending_ms = match (stats.oldest_pending_ms, oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(stats)
    }
}

/// `$first, $first+1, …` for the claim's job ids.
fn id_list(claim: &Claim, first: usize) -> String {
    (first..first + claim.jobs.len().max(1))
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn release_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    claim: &Claim,
) -> Result<(), QueueError> {
    sqlx::query("DELETE FROM change_leases WHERE change_key = $1 AND holder = $2")
        .bind(&claim.change_key)
        .bind(&claim.holder)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn job(row: &AnyRow) -> Result<QueuedJob, QueueError> {
    Ok(QueuedJob {
        id: row.try_get("id")?,
        delivery_id: row.try_get("delivery_id")?,
        change_key: row.try_get("change_key")?,
        payload: row.try_get("payload")?,
        attempts: row.try_get::<i64, _>("attempts")?,
        created_ms: row.try_get("created_ms")?,
        failing_since_ms: row.try_get("failing_since_ms")?,
    })
}
