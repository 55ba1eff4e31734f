//! The durable job queue, in the same store as the ledger: accepted deliveries are written here
//! before the forge gets its answer, so nothing accepted is lost; a redelivered delivery is not
//! queued twice; jobs of one change are handed out together (coalesced: the evaluation reads
//! the change's latest state anyway) and to one holder at a time across processes, under a
//! lease that a crashed holder's jobs are reclaimed from.
//!
//! `serve` uses it when GitHub credentials are set; `tollgate jobs …` inspects it.

use sqlx::{AnyPool, Row};

/// A store failure.
pub type QueueError = sqlx::Error;

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
    /// `queued`, `running` or `done`.
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

/// How many changes with ready jobs one claim looks at before giving up.
const CLAIM_CANDIDATES: i64 = 32;

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

    /// Queues a job. Returns `false` when this delivery was already queued for this change
    /// (a redelivery): it is acknowledged and not processed twice.
    pub async fn enqueue(
        &self,
        delivery_id: &str,
        change_key: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        let done = sqlx::query(
            "INSERT INTO jobs (delivery_id, change_key, payload, state, attempts, available_ms, created_ms) \
             VALUES ($1, $2, $3, 'queued', 0, $4, $4) ON CONFLICT (delivery_id, change_key) DO NOTHING",
        )
        .bind(delivery_id)
        .bind(change_key)
        .bind(payload)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims the change whose oldest ready job is oldest and that nobody holds, with all its
    /// ready jobs, for `lease_ms`. Jobs of a holder whose lease ran out are reclaimed first.
    pub async fn claim(
        &self,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Claim>, QueueError> {
        self.reclaim_expired(now_ms).await?;
        let candidates = sqlx::query(
            "SELECT change_key, MIN(id) AS first FROM jobs WHERE state = 'queued' AND available_ms <= $1 \
             GROUP BY change_key ORDER BY first LIMIT $2",
        )
        .bind(now_ms)
        .bind(CLAIM_CANDIDATES)
        .fetch_all(&self.pool)
        .await?;
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

    async fn take_ready_jobs(
        &self,
        change_key: &str,
        now_ms: i64,
    ) -> Result<Vec<QueuedJob>, QueueError> {
        let rows = sqlx::query(
            "SELECT id, delivery_id, change_key, payload, attempts FROM jobs \
             WHERE change_key = $1 AND state = 'queued' AND available_ms <= $2 ORDER BY id",
        )
        .bind(change_key)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            let job = QueuedJob {
                id: row.try_get("id")?,
                delivery_id: row.try_get("delivery_id")?,
                change_key: row.try_get("change_key")?,
                payload: row.try_get("payload")?,
                attempts: row.try_get::<i64, _>("attempts")?,
            };
            self.set_state(job.id, "running").await?;
            jobs.push(job);
        }
        Ok(jobs)
    }

    async fn set_state(&self, id: i64, state: &str) -> Result<(), QueueError> {
        sqlx::query("UPDATE jobs SET state = $1 WHERE id = $2")
            .bind(state)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
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

    /// The claim's jobs are done.
    pub async fn complete(&self, claim: &Claim) -> Result<(), QueueError> {
        for job in &claim.jobs {
            self.set_state(job.id, "done").await?;
        }
        self.release(&claim.change_key, &claim.holder).await
    }

    /// The claim's jobs go back to the queue, available again at `available_ms`.
    pub async fn retry(
        &self,
        claim: &Claim,
        error: &str,
        available_ms: i64,
    ) -> Result<(), QueueError> {
        for job in &claim.jobs {
            sqlx::query(
                "UPDATE jobs SET state = 'queued', attempts = attempts + 1, available_ms = $1, last_error = $2 \
                 WHERE id = $3",
            )
            .bind(available_ms)
            .bind(error)
            .bind(job.id)
            .execute(&self.pool)
            .await?;
        }
        self.release(&claim.change_key, &claim.holder).await
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

    /// Makes waiting jobs (all, or one) available now, e.g. after fixing what made them fail.
    /// Returns how many.
    pub async fn retry_now(&self, id: Option<i64>, now_ms: i64) -> Result<u64, QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET available_ms = $1 WHERE state = 'queued' AND ($2 = 0 OR id = $3)",
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

    /// Jobs waiting or running (for `/metrics` and `tollgate jobs list`).
    pub async fn depth(&self) -> Result<i64, QueueError> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE state IN ('queued', 'running')")
                .fetch_one(&self.pool)
                .await?;
        row.try_get("n")
    }
}
