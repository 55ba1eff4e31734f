//! Deadlines the server acts on at a given time (a post-incident review falling due, a bypass
//! expiring), kept in the store: they survive restarts, and each is acted on by one replica.
//!
//! A deadline is scheduled under a key naming what it is about (scheduling it again keeps one
//! and moves nothing); when it is due, a replica claims it under a lease, acts, and marks it
//! done. A replica that dies after claiming leaves it to be claimed again once the lease ends:
//! the action may run twice only if the process died between acting and marking it done, so
//! actions must themselves be idempotent (e.g. a reminder carries a marker and is not posted
//! again when it is already there).

use sqlx::{AnyPool, Row};

/// A store failure.
pub type ScheduleError = sqlx::Error;

/// A deadline that fell due, claimed by one holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// What it is about.
    pub key: String,
    /// What to do (e.g. `review_reminder`).
    pub kind: String,
    /// When it fell due (epoch ms).
    pub due_ms: i64,
    /// The details, serialised by whoever scheduled it.
    pub payload: String,
}

/// The deadlines in the shared store.
#[derive(Clone)]
pub struct Schedule {
    pool: AnyPool,
}

impl Schedule {
    /// The schedule in the store behind `pool` (its table comes with the ledger's migrations).
    pub fn new(pool: AnyPool) -> Schedule {
        Schedule { pool }
    }

    /// Schedules a deadline. Returns `false` when one with this key already exists (it is
    /// kept as it was: scheduling is idempotent, so a redelivered event schedules nothing new).
    pub async fn schedule(
        &self,
        key: &str,
        kind: &str,
        due_ms: i64,
        payload: &str,
    ) -> Result<bool, ScheduleError> {
        let done = sqlx::query(
            "INSERT INTO deadlines (deadline_key, kind, due_ms, payload, state) VALUES ($1, $2, $3, $4, 'pending') \
             ON CONFLICT (deadline_key) DO NOTHING",
        )
        .bind(key)
        .bind(kind)
        .bind(due_ms)
        .bind(payload)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims up to `limit` deadlines due at `now_ms` that nobody holds (or whose holder's
    /// lease ran out), for `lease_ms`. Each is claimed by exactly one caller.
    pub async fn claim_due(
        &self,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Due>, ScheduleError> {
        self.claim_due_of(holder, now_ms, lease_ms, limit, &[])
            .await
    }

    /// [`Schedule::claim_due`], among the deadlines whose kind starts with one of `kinds` (all
    /// when empty): a replica claims only what it can act on (the forges it has credentials
    /// for), and leaves the rest to replicas that can.
    pub async fn claim_due_of(
        &self,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
        kinds: &[String],
    ) -> Result<Vec<Due>, ScheduleError> {
        // Only placeholders are formatted in; the prefixes are bound.
        let filter = if kinds.is_empty() {
            String::new()
        } else {
            let any = (0..kinds.len())
                .map(|i| format!("kind LIKE ${}", i + 3))
                .collect::<Vec<_>>()
                .join(" OR ");
            format!(" AND ({any})")
        };
        let sql = format!(
            "SELECT deadline_key FROM deadlines WHERE state = 'pending' AND due_ms <= $1 AND lease_until_ms < $1{filter} \
             ORDER BY due_ms LIMIT $2"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms)
            .bind(limit);
        for kind in kinds {
            // A `%` or `_` in a kind would be a wildcard; kinds are tollgate's own (`github:`).
            query = query.bind(format!("{kind}%"));
        }
        let candidates = query.fetch_all(&self.pool).await?;
        let mut claimed = Vec::new();
        for candidate in candidates {
            let key: String = candidate.try_get("deadline_key")?;
            // The lease condition is checked again in the update: of two replicas racing for
            // one deadline, one updates a row and the other none.
            let row = sqlx::query(
                "UPDATE deadlines SET holder = $1, lease_until_ms = $2 \
                 WHERE deadline_key = $3 AND state = 'pending' AND lease_until_ms < $4 \
                 RETURNING deadline_key, kind, due_ms, payload",
            )
            .bind(holder)
            .bind(now_ms + lease_ms)
            .bind(&key)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = row {
                claimed.push(Due {
                    key: row.try_get("deadline_key")?,
                    kind: row.try_get("kind")?,
                    due_ms: row.try_get("due_ms")?,
                    payload: row.try_get("payload")?,
                });
            }
        }
        Ok(claimed)
    }

    /// Marks a claimed deadline done. Returns `false` when `holder` no longer held it.
    pub async fn complete(
        &self,
        key: &str,
        holder: &str,
        now_ms: i64,
    ) -> Result<bool, ScheduleError> {
        let done = sqlx::query(
            "UPDATE deadlines SET state = 'done', done_ms = $1 WHERE deadline_key = $2 AND holder = $3 AND state = 'pending'",
        )
        .bind(now_ms)
        .bind(key)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a claimed deadline back at once (its holder cannot act on it).
    pub async fn release(&self, key: &str, holder: &str) -> Result<bool, ScheduleError> {
        let done = sqlx::query(
            "UPDATE deadlines SET holder = NULL, lease_until_ms = 0 WHERE deadline_key = $1 AND holder = $2 AND state = 'pending'",
        )
        .bind(key)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Cancels a pending deadline (e.g. the review was closed before it fell due). Returns
    /// whether there was one.
    pub async fn cancel(&self, key: &str, now_ms: i64) -> Result<bool, ScheduleError> {
        let done = sqlx::query(
            "UPDATE deadlines SET state = 'done', done_ms = $1 WHERE deadline_key = $2 AND state = 'pending'",
        )
        .bind(now_ms)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Pending deadlines of a kind, soonest first, as (key, due).
    pub async fn pending(&self, kind: &str) -> Result<Vec<(String, i64)>, ScheduleError> {
        let rows = sqlx::query(
            "SELECT deadline_key, due_ms FROM deadlines WHERE kind = $1 AND state = 'pending' ORDER BY due_ms",
        )
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("deadline_key")?, row.try_get("due_ms")?)))
            .collect()
    }
}
